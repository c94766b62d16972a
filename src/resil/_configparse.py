"""The building blocks of :mod:`resil.config`: tables read against their declarations.

A :class:`Table` reads one TOML table against the settings :mod:`resil.envvars`
declares for it: an absent key takes the declared default, a present one is checked
against the declared type, range and choices. :func:`build_resources` turns the
``[resources.NAME]`` tables into :class:`~resil.topology.Resource` objects the same
way. Nothing in this module knows a default or a range: they live in the declarations.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

from . import envvars
from ._record import dataclass
from .envvars import Setting
from .errors import MISSING, ConfigError
from .topology import KINDS, Alias, Endpoint, HttpPolicy, Resource, ResourceKind

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_-]{1,63})*\.?$")


class Source:
    """Remembers where each key's value came from, for error messages."""

    def __init__(self, path: Path | None) -> None:
        self.file = str(path) if path else "<no file>"
        self.env: dict[str, str] = {}
        """Dotted key → the environment variable that set it."""

    def of(self, key: str) -> str:
        """The file or the environment variable that gave ``key`` its value."""
        var = self.env.get(key)
        return f"environment variable {var}" if var else self.file

    def error(self, key: str, value: object, problem: str) -> ConfigError:
        """A :class:`ConfigError` naming where ``key``'s bad ``value`` came from."""
        return ConfigError(self.of(key), key, value, problem)


class Table:
    """One TOML table (``[control]``, ``[resources.NAME]``, the top level) read against
    the settings declared for it. Every getter returns the declared default for an
    absent key and raises a :class:`ConfigError` naming the key for a bad value."""

    def __init__(self, values: Mapping[str, Any], prefix: str,
                 settings: Mapping[str, Setting], source: Source) -> None:
        self.values = values
        self.prefix = prefix
        self.settings = settings
        self.source = source

    def key(self, name: str) -> str:
        """The dotted key of ``name`` (``resources.cache.lock_timeout``)."""
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, value: object, problem: str) -> ConfigError:
        """An error about key ``name`` of this table."""
        return self.source.error(self.key(name), value, problem)

    def refuse_unknown(self) -> None:
        """A key nobody declared is refused, with the likely one: a typo must not be
        silently ignored."""
        for name, value in self.values.items():
            if name not in self.settings:
                import difflib  # only for a mistake: it costs start-up
                close = difflib.get_close_matches(str(name), sorted(self.settings), n=1)
                raise self.error(name, value, "unknown key" + (
                    f"; did you mean {close[0]!r}?" if close else ""))

    def text(self, name: str) -> str:
        """A string, stripped; empty or absent gives the default (or ``""``)."""
        setting = self.settings[name]
        value = self.values.get(name, MISSING)
        if value is not MISSING and not isinstance(value, str):
            raise self.error(name, value, f"expected a string, got {type(value).__name__}")
        text = value.strip() if isinstance(value, str) else ""
        if not text:
            if setting.required:
                raise self.error(name, value, "required" if value is MISSING
                                 else "must not be empty")
            return setting.default if isinstance(setting.default, str) else ""
        if not setting.choices:
            return text
        # The declared spelling is returned, so that later code compares exactly.
        folded = {choice.lower(): choice for choice in setting.choices}
        if text.lower() not in folded:
            raise self.error(name, text, "expected " + setting.allowed)
        return folded[text.lower()]

    def flag(self, name: str) -> bool:
        """``true`` or ``false``."""
        value = self.values.get(name, self.settings[name].default)
        if not isinstance(value, bool):
            raise self.error(name, value, "expected true or false")
        return value

    def number(self, name: str, scheme: str = "") -> float:
        """A number inside the declared range; ``scheme`` picks a per-scheme default."""
        setting = self.settings[name]
        value = self.values.get(name, MISSING)
        if value is MISSING:
            return _as_number(setting.default_for(scheme))
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(name, value, "expected a number")
        if not setting.admits(value):
            raise self.error(name, value, "must be " + setting.allowed)
        return float(value)

    def integer(self, name: str) -> int:
        """A whole number inside the declared range."""
        return int(self.number(name))

    def strings(self, name: str) -> list[str]:
        """A list of non-empty strings, each stripped."""
        value = self.values.get(name, self.settings[name].default)
        if not isinstance(value, (list, tuple)) \
                or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.error(name, value, "expected a list of non-empty strings")
        return [v.strip() for v in value]

    def whole_numbers(self, name: str) -> tuple[int, ...]:
        """A list of whole numbers, each inside the declared range."""
        setting = self.settings[name]
        value = self.values.get(name, setting.default)
        if isinstance(value, (list, tuple)) and all(_is_whole(v) for v in value):
            numbers = tuple(int(v) for v in value)
            if all(setting.admits(n) for n in numbers):
                return numbers
        raise self.error(name, value, "expected " + setting.allowed)


def _as_number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"declared default is not a number: {value!r}")
    return float(value)


def _is_whole(value: object) -> bool:
    """An int, or digits (a status written as a string); never a bool."""
    if isinstance(value, str):
        return value.strip().isdigit()
    return isinstance(value, int) and not isinstance(value, bool)


# --------------------------------------------------------------------------- resources

def build_resources(tables: object, source: Source) -> dict[str, Resource]:
    """Every ``[resources.NAME]`` table, read and checked, by name."""
    if not isinstance(tables, dict):
        raise source.error("resources", tables, "must be a table of [resources.NAME] tables")
    return {name: _build_resource(name, table, source) for name, table in tables.items()}


def _build_resource(name: str, values: object, source: Source) -> Resource:
    prefix = f"resources.{name}"
    if not isinstance(values, dict):
        raise source.error(prefix, values, "must be a table")
    table = Table(values, prefix, envvars.resource_keys(), source)
    table.refuse_unknown()
    kind = _kind(table.text("kind"))
    endpoints = _build_endpoints(name, kind, values.get("endpoints", MISSING), source)
    primary = _primary(table, kind, endpoints)
    aliases = tuple(_alias(prefix, a, source) for a in table.strings("aliases"))
    lock_timeout = table.number("lock_timeout")
    failover_hold = table.number("failover_hold")
    auto_rejoin = table.flag("auto_rejoin")
    connect_timeout = table.number("connect_timeout")
    io_timeout = table.number("io_timeout")
    _refuse_other_kinds(table, kind)
    return Resource(
        name=name, kind=kind, endpoints=MappingProxyType(endpoints), primary=primary,
        aliases=aliases, http=_http_policy(table) if kind == "http" else HttpPolicy(),
        lock_timeout=lock_timeout, failover_hold=failover_hold, auto_rejoin=auto_rejoin,
        connect_timeout=connect_timeout, io_timeout=io_timeout,
        reads=table.text("reads"), max_lag=table.number("max_lag"),
        read_wait=table.number("read_wait"),
        read_your_writes=table.text("read_your_writes"),
        admin_user=table.text("admin_user"),
        admin_password_env=table.text("admin_password_env"),
        replication_user=table.text("replication_user"),
        replication_password_env=table.text("replication_password_env"),
    )


def _kind(text: str) -> ResourceKind:
    """The declared choice as the typed literal (the declaration lists exactly KINDS)."""
    for kind in KINDS:
        if kind == text:
            return kind
    raise AssertionError(f"kind {text!r} is declared but not in topology.KINDS")


def _primary(table: Table, kind: ResourceKind,
             endpoints: Mapping[str, tuple[Endpoint, ...]]) -> str | None:
    primary = table.text("primary") or None
    if kind == "http":
        if primary:
            raise table.error("primary", primary,
                              "http resources have no primary (every unit serves)")
        return None
    if primary is None:
        if len(endpoints) > 1:
            raise table.error("primary", MISSING,
                              "required when endpoints are in more than one unit")
        return next(iter(endpoints))
    if primary not in endpoints:
        raise table.error("primary", primary,
                          f"no endpoint in that unit (units: {', '.join(endpoints)})")
    return primary


def _refuse_other_kinds(table: Table, kind: ResourceKind) -> None:
    """A key declared for other kinds (``retries`` on a redis resource) is a mistake."""
    for name, setting in table.settings.items():
        if setting.kinds and kind not in setting.kinds and name in table.values:
            raise table.error(name, table.values[name],
                              f"only for {' and '.join(setting.kinds)} resources")


def _http_policy(table: Table) -> HttpPolicy:
    """The retry and outlier-detection policy of an http resource, each value checked."""
    path = table.text("health_path")
    if path and not path.startswith("/"):
        raise table.error("health_path", path, "must start with /")
    return HttpPolicy(
        retries=table.integer("retries"),
        retry_statuses=frozenset(table.whole_numbers("retry_statuses")),
        retry_budget=table.number("retry_budget"),
        retry_budget_min=table.number("retry_budget_min"),
        eject_after=table.integer("eject_after"),
        eject_failure_percent=table.number("eject_failure_percent"),
        eject_min_calls=table.integer("eject_min_calls"),
        eject_time=table.number("eject_time"),
        max_ejected_percent=table.number("max_ejected_percent"),
        panic_threshold=table.number("panic_threshold"),
        half_open_requests=table.integer("half_open_requests"),
        health_path=path,
        health_interval=table.number("health_interval"),
    )


def _build_endpoints(name: str, kind: ResourceKind, value: object,
                     source: Source) -> dict[str, tuple[Endpoint, ...]]:
    key = f"resources.{name}.endpoints"
    if value is MISSING:
        raise source.error(key, MISSING, "required: one address per unit")
    if not isinstance(value, dict) or not value:
        raise source.error(key, value, "expected a table of unit = address")
    out: dict[str, tuple[Endpoint, ...]] = {}
    for unit, addresses in value.items():
        ukey = f"{key}.{unit}"
        if kind == "http":
            items = [addresses] if isinstance(addresses, str) else addresses
            if not isinstance(items, list) or not items \
                    or not all(isinstance(i, str) for i in items):
                raise source.error(ukey, addresses, "expected a base URL or a list of base URLs")
            out[unit] = tuple(_http_endpoint(name, unit, ukey, u, source) for u in items)
        else:
            if not isinstance(addresses, str):
                raise source.error(ukey, addresses, "expected one address \"host:port\"")
            hp = host_port(addresses)
            if hp is None:
                raise source.error(ukey, addresses, address_problem(addresses))
            out[unit] = (Endpoint(name, unit, hp.host, hp.port),)
    seen: dict[tuple[str, int, str], str] = {}
    for unit, endpoints in out.items():
        for endpoint in endpoints:
            place = (endpoint.host, endpoint.port, endpoint.url or "")
            if place in seen:
                raise source.error(f"{key}.{unit}", str(endpoint.url or endpoint),
                                   f"the same endpoint as unit {seen[place]!r}: each unit "
                                   "needs its own server (a copy-paste slip?)")
            seen[place] = unit
    return out


def address_problem(text: str) -> str:
    """Why ``text`` is not a ``host:port`` (for the error message)."""
    port = text.strip().rpartition(":")[2]
    if port.isdigit() and not 1 <= int(port) < 65536:
        return f"port {int(port)} out of range: expected 1 to 65535"
    return "malformed address: expected host:port"


def _http_endpoint(name: str, unit: str, key: str, url: str, source: Source) -> Endpoint:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 \
            or not _valid_host(parts.hostname):
        raise source.error(key, url, "malformed URL: expected http(s)://host[:port][/path]")
    default = 443 if parts.scheme == "https" else 80
    return Endpoint(name, unit, parts.hostname.lower(), port or default, url=url.rstrip("/"))


def _alias(prefix: str, text: str, source: Source) -> Alias:
    """``host`` (any port) or ``host:port``; IPv6 as ``[::1]`` or ``[::1]:3306``."""
    if text.endswith("]") or ":" not in text:
        host = text.strip("[]")
        if _valid_host(host):
            return Alias(host.lower())
    else:
        hp = host_port(text)
        if hp is not None:
            return Alias(hp.host, hp.port)
    raise source.error(f"{prefix}.aliases", text, "malformed alias: expected host or host:port")


# --------------------------------------------------------------------------- addresses

@dataclass(frozen=True)
class HostPort:
    """A parsed ``host:port``; the host lower-cased."""

    host: str
    port: int


def host_port(text: str, allow_any_port: bool = False) -> HostPort | None:
    """Parse ``host:port`` or ``[v6]:port``; None when malformed (port 0 only if allowed)."""
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    lowest = 0 if allow_any_port else 1
    if not sep or not port.isdigit() or not lowest <= int(port) < 65536 \
            or not _valid_host(host):
        return None
    return HostPort(host.lower(), int(port))


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(host))
