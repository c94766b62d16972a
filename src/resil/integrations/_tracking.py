"""Shared by the driver integrations: which connections belong to which resource.

A connection is re-pointed by rewriting its ``host``/``port`` just before it connects.
The first time that happens for a connection whose address names a resource, a
:class:`Tracked` record is attached to it: the address the application asked for
(every later reconnect is routed from it, not from the endpoint chosen last time), the
resource, and the epoch the connection was last checked against. Driver wrappers read
the record on the hot path with one attribute lookup.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from .. import _log, context, registry
from ..topology import Endpoint, Resource, ResourceKind

log = _log.get("resil.integrations")
ATTRIBUTE = "_resil_tracked"


class Tracked:
    """resil's record of one driver connection: the :class:`resil.switching.Record` that
    the hot-switch protocol reads and updates."""

    __slots__ = ("resource", "origin", "epoch", "connecting", "busy", "tx", "watch", "owner",
                 "local")

    def __init__(self, resource: Resource, origin: tuple[str, int], epoch: int) -> None:
        self.resource = resource
        self.origin = origin
        self.epoch = epoch
        self.connecting = False
        """Inside ``connect()``: the statements it sends itself are not boundaries."""
        self.busy = False
        """A statement passed (or is passing) the gate and is on its way to the server."""
        self.tx = False
        """A transaction that wrote (or locked) is open, as resil saw the statements: the
        driver's own status is not refreshed by statements that return rows."""
        self.watch: tuple[Any, Any] | None = None
        """(socket, ``select.poll`` object watching it): asks, without a wait, whether
        the server closed an idle connection (see the PyMySQL integration)."""
        self.owner: weakref.ref[Any] | None = None
        """The pool the connection belongs to (redis-py), once it was checked out: the
        arguments of the spares opened ahead of a switch."""
        self.local: Any = None
        """``reads = "local"``: the connection's same-unit read state (its companion
        connection to the replica, pinning, its last write's GTID), made by the driver."""


def endpoint_of(record: Tracked, conn: Any) -> Endpoint | None:
    """The endpoint of ``record``'s resource that ``conn`` is pointed at now (None when
    it is pointed at an address that is no endpoint)."""
    return endpoint_at(record, (conn.host, conn.port))


def endpoint_at(record: Tracked, address: tuple[str, int]) -> Endpoint | None:
    """The endpoint of ``record``'s resource at ``address``, if any."""
    for endpoints in record.resource.endpoints.values():
        for endpoint in endpoints:
            if (endpoint.host, endpoint.port) == address:
                return endpoint
    return None


class Tracker:
    """The tracked connections of one driver."""

    def __init__(self, kind: ResourceKind,
                 point: Callable[[Any, str, int], None] | None = None,
                 at: Callable[[Any], tuple[str, int] | None] | None = None) -> None:
        self.kind = kind
        self._point = point or _point
        """Re-points a connection (``host``/``port`` by default; aiomysql's are read-only
        properties over ``_host``/``_port``)."""
        self._at = at or _address
        """Where a connection points now (mysqlclient's address is fixed in C: it is
        kept beside it, and given to its ``__init__``)."""
        self._refs: set[weakref.ref[Any]] = set()
        """Weak references to the tracked connections. Each removes itself when its
        connection is gone (its callback is the set's own ``discard``): adding and
        removing run no Python code and take no lock (a ``WeakSet`` cost each connect
        about 40 bytecodes and a lock)."""
        self._last: tuple[Any, tuple[str, int], Resource, Endpoint | None] | None = None
        """The last new connection's control state, origin, resource and primary
        endpoint: the next one to the same address in the same state needs neither the
        match nor the lookup of the primary."""

    def route(self, conn: Any, origin: tuple[str, int] | None = None) -> Tracked | None:
        """Point ``conn`` at its resource's current primary; track it. None if unmatched.
        ``origin``: the address the application asked for, when ``conn`` does not say
        it (by default its ``host`` and ``port``)."""
        # Every connect passes here: Router.resource and Router.primary_of are inlined
        # (a call saved is ~100 ns).
        router = registry.router()
        if router is None or context.bypassed():
            return None
        record: Tracked | None = conn.__dict__.get(ATTRIBUTE)
        state = router.state()
        if record is None:
            if origin is None:
                origin = (str(conn.host), int(conn.port))
            last = self._last
            if last is not None and last[0] is state and last[1] == origin:
                resource, endpoint = last[2], last[3]
            else:
                found = router.topology.match(self.kind, *origin)
                if found is None:
                    return None
                resource, endpoint = found, _primary(state, found)
                self._last = (state, origin, resource, endpoint)
            record = Tracked(resource, origin, state.epoch)
            conn.__dict__[ATTRIBUTE] = record
            refs = self._refs
            refs.add(weakref.ref(conn, refs.discard))
        else:
            endpoint = _primary(state, record.resource)
        record.epoch = state.epoch
        if endpoint is not None and self._at(conn) != (endpoint.host, endpoint.port):
            log.debug("resil: %s %s:%s -> %s (unit %s, epoch %d)", self.kind, *record.origin,
                      endpoint, endpoint.unit, state.epoch)
            self._point(conn, endpoint.host, endpoint.port)
        return record

    def connections(self) -> list[tuple[Any, Tracked]]:
        """A snapshot of the live tracked connections and their records."""
        while True:
            try:
                # A C-level copy: a connection freed meanwhile (its reference leaves the
                # set from its callback) cannot change the set while it is read here
                refs = self._refs.copy()
                break
            except RuntimeError:    # changed size during the copy: take it again
                continue
        found = []
        for ref in refs:
            conn = ref()
            if conn is not None:
                found.append((conn, conn.__dict__[ATTRIBUTE]))
        return found


def _primary(state: Any, resource: Resource) -> Endpoint | None:
    """The endpoint of ``resource``'s primary in ``state`` (None: none in a unit)."""
    unit = state.primary_unit(resource)
    return resource.endpoint_in(unit) if unit else None


def _point(conn: Any, host: str, port: int) -> None:
    conn.host, conn.port = host, port


def _address(conn: Any) -> tuple[str, int] | None:
    return conn.host, conn.port


def tracked(conn: Any) -> Tracked | None:
    """The record of ``conn``, if resil routes it."""
    record: Tracked | None = conn.__dict__.get(ATTRIBUTE)
    return record


_WARNED_READS: set[tuple[str, str]] = set()


def reads_unsupported(record: Tracked, driver: str) -> None:
    """A connection of a ``reads = "local"`` resource made with a driver that does not
    split reads: say so once per resource and driver (its statements all go to the
    primary, as with ``reads = "primary"``)."""
    if record.resource.reads != "local" or (record.resource.name, driver) in _WARNED_READS:
        return
    _WARNED_READS.add((record.resource.name, driver))
    log.warning('resil: %s has reads = "local", which %s does not support yet: all it '
                "sends goes to the primary (docs/reads.md)", record.resource.name, driver)
