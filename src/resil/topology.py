"""The static picture: units, resources and each resource's endpoints per unit.

A :class:`Topology` is built once from the configuration and never changes. It answers
the one question integrations ask before anything else: "does this address belong to
a resource?" (:meth:`Topology.match`). Which endpoint is *current* is not its business:
that is control state (:mod:`resil.state`) read through the router.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ._record import dataclass, field
from .envvars import resource_default

TYPE_CHECKING = False
if TYPE_CHECKING:       # typing is not imported at run time: it costs every start-up
    from typing import Literal

    ResourceKind = Literal["mysql", "redis", "http"]
else:
    ResourceKind = str
KINDS: tuple[ResourceKind, ...] = ("mysql", "redis", "http")
DEFAULT_PORTS: Mapping[str, int] = MappingProxyType({"mysql": 3306, "redis": 6379})


def address(host: str, port: int) -> str:
    """``host:port`` as an :class:`Endpoint` of a mysql/redis resource prints it (an IPv6
    host in brackets)."""
    return f"{_bracket(host)}:{port}"


@dataclass(frozen=True)
class Endpoint:
    """One address of a resource in one unit."""

    resource: str
    unit: str
    host: str
    port: int
    url: str | None = None
    """For http resources, the base URL (scheme, host, port and an optional path)."""

    def __str__(self) -> str:
        return self.url or f"{_bracket(self.host)}:{self.port}"

    # Written out (a dataclass's own, without the generic record methods' cost): an
    # endpoint is a dictionary key on the per-call paths (health, retries).
    def __eq__(self, other: object) -> bool:
        if other.__class__ is Endpoint:
            return (self.resource, self.unit, self.host, self.port, self.url) == (
                other.resource, other.unit, other.host, other.port, other.url)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.resource, self.unit, self.host, self.port, self.url))


@dataclass(frozen=True)
class Alias:
    """Another name the application uses for a resource; ``port=None`` matches any port."""

    host: str
    port: int | None = None

    def __str__(self) -> str:
        return self.host if self.port is None else f"{_bracket(self.host)}:{self.port}"


@dataclass(frozen=True)
class HttpPolicy:
    """How calls to an http resource are retried, and when an endpoint is ejected.

    Each field is the resource key of the same name; its default is the one declared in
    :data:`resil.envvars.RESOURCE_KEYS` (see docs/configuration.md for the meanings).
    """

    retries: int = resource_default("retries", int)
    retry_statuses: frozenset[int] = frozenset(resource_default("retry_statuses", tuple))
    retry_budget: float = resource_default("retry_budget", float)
    retry_budget_min: float = resource_default("retry_budget_min", float)
    eject_after: int = resource_default("eject_after", int)
    eject_failure_percent: float = resource_default("eject_failure_percent", float)
    eject_min_calls: int = resource_default("eject_min_calls", int)
    eject_time: float = resource_default("eject_time", float)
    max_ejected_percent: float = resource_default("max_ejected_percent", float)
    panic_threshold: float = resource_default("panic_threshold", float)
    half_open_requests: int = resource_default("half_open_requests", int)
    health_path: str = resource_default("health_path", str)
    health_interval: float = resource_default("health_interval", float)


@dataclass(frozen=True)
class Resource:
    """Something the application talks to, with its endpoints in each unit.

    Defaults are those declared in :data:`resil.envvars.RESOURCE_KEYS`.
    """

    name: str
    kind: ResourceKind
    endpoints: Mapping[str, tuple[Endpoint, ...]]
    primary: str | None = None
    """mysql/redis: the unit of the initial primary (control state overrides it)."""
    aliases: tuple[Alias, ...] = ()
    lock_timeout: float = resource_default("lock_timeout", float)
    """Longest hold of a write while a switch has the resource locked (seconds)."""
    failover_hold: float = resource_default("failover_hold", float)
    auto_rejoin: bool = resource_default("auto_rejoin", bool)
    """Longest hold of a new connection while the primary is unreachable (seconds;
    0: fail at once)."""
    connect_timeout: float = resource_default("connect_timeout", float)
    """Upper bound of the application's connect timeout (seconds)."""
    io_timeout: float = resource_default("io_timeout", float)
    """Read/write timeout for connections that set none (seconds; 0: leave them)."""
    reads: str = resource_default("reads", str)
    """mysql: ``"primary"``, or ``"local"``: reads to the own unit's replica (docs/reads.md)."""
    max_lag: float = resource_default("max_lag", float)
    """``reads = "local"``: the longest replica lag reads tolerate (seconds)."""
    read_wait: float = resource_default("read_wait", float)
    """``reads = "local"``: the longest wait for a connection's own write (seconds)."""
    read_your_writes: str = resource_default("read_your_writes", str)
    """``reads = "local"``: ``"connection"`` or ``"request"`` (whose writes reads wait for)."""
    admin_user: str = resource_default("admin_user", str)
    admin_password_env: str = resource_default("admin_password_env", str)
    replication_user: str = resource_default("replication_user", str)
    replication_password_env: str = resource_default("replication_password_env", str)
    http: HttpPolicy = HttpPolicy()
    """http: retry and outlier-detection policy (defaults for other kinds, unused)."""

    @property
    def units(self) -> tuple[str, ...]:
        """The units this resource has endpoints in, in configuration order."""
        return tuple(self.endpoints)

    def endpoint_in(self, unit: str) -> Endpoint | None:
        """The (first) endpoint of this resource in ``unit``, if it has one there."""
        found = self.endpoints.get(unit)
        return found[0] if found else None


@dataclass(frozen=True)
class Topology:
    """Units and resources, with an index from addresses to resources."""

    unit: str
    units: tuple[str, ...]
    resources: Mapping[str, Resource]
    _exact: Mapping[tuple[str, int], Resource] = field(init=False, repr=False, compare=False)
    _any_port: Mapping[str, Resource] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exact: dict[tuple[str, int], Resource] = {}
        any_port: dict[str, Resource] = {}
        for resource in self.resources.values():
            for key in address_keys(resource):
                if key[1] is None:
                    any_port[key[0]] = resource
                else:
                    exact[(key[0], key[1])] = resource
        object.__setattr__(self, "_exact", MappingProxyType(exact))
        object.__setattr__(self, "_any_port", MappingProxyType(any_port))

    def match(self, kind: ResourceKind, host: str, port: int | None) -> Resource | None:
        """The resource of ``kind`` that ``host:port`` names, or None if it names none.

        An address matches a resource when it equals one of its endpoints or aliases
        (host names compare case-insensitively); an alias without a port matches any port.
        """
        host = host.lower()
        found = None
        if port is not None:
            found = self._exact.get((host, port))
        if found is None:
            found = self._any_port.get(host)
        if found is None or found.kind != kind:
            return None
        return found


def _bracket(host: str) -> str:
    """IPv6 literals are written in brackets when a port follows."""
    return f"[{host}]" if ":" in host else host


def address_keys(resource: Resource) -> list[tuple[str, int | None]]:
    """Every (host, port) under which ``resource`` is known; port None means any."""
    keys: list[tuple[str, int | None]] = []
    if resource.kind == "http":     # http://productservice/... names the resource itself
        keys.append((resource.name.lower(), None))
    for endpoints in resource.endpoints.values():
        keys += [(e.host.lower(), e.port) for e in endpoints]
    keys += [(a.host.lower(), a.port) for a in resource.aliases]
    return keys
