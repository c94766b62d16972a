"""redis-py: same-unit reads (``reads = "local"``, :mod:`resil.reads`).

A command goes to the own unit's replica only when all of these hold; otherwise it is
sent as always, to the primary:

- it is one of :data:`LOCAL_READS`: commands that only read keys, whose answer depends
  neither on the connection nor on the server (no ``SCAN`` cursors, no random picks, no
  server commands, no ``XREAD``, which may block), sent by ``Redis.execute_command``:
  pipelines, transactions (``MULTI``/``EXEC``, ``WATCH``), scripts, pub/sub and
  blocking commands stay on the primary;
- the client is not a single-connection client (``Redis(single_connection_client=True)``);
- the replica lags the primary by less than ``max_lag`` (:class:`resil.reads.ReplicaWatch`,
  here over ``INFO replication``: ``master_repl_offset`` of the primary,
  ``slave_repl_offset`` and ``master_link_status`` of the replica);
- read-your-writes: the replica is known to hold every write the client's connection
  pool (the client, its pipelines) completed, that is, its offset covers a primary
  sample taken after the pool's newest write. Until the watch's next samples show it
  (within about two sampling intervals), the pool's reads go to the primary.

The command then runs on a connection of the pool's *companion*: a connection pool of
the same class and arguments, pointed at the replica; the reply is parsed by the
application's own client (its response callbacks, ``decode_responses``). A failure
there sends the command to the primary.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import context, reads, registry, spans
from ..reads import ReplicaWatch
from ..topology import Endpoint, Resource

ATTRIBUTE = "_resil_reads"
MISS = object()

#: Commands served by a replica: they read keys only, and the answer is the same on any
#: server holding the same data.
LOCAL_READS = frozenset("""
    GET MGET GETRANGE STRLEN EXISTS TTL PTTL EXPIRETIME PEXPIRETIME TYPE
    HGET HMGET HGETALL HKEYS HVALS HLEN HEXISTS HSTRLEN LRANGE LLEN LINDEX LPOS
    SMEMBERS SISMEMBER SMISMEMBER SCARD SINTER SUNION SDIFF SINTERCARD
    ZRANGE ZRANGEBYSCORE ZREVRANGE ZREVRANGEBYSCORE ZRANGEBYLEX ZREVRANGEBYLEX ZSCORE
    ZMSCORE ZCARD ZCOUNT ZLEXCOUNT ZRANK ZREVRANK ZINTER ZUNION ZDIFF ZINTERCARD
    XRANGE XREVRANGE XLEN GETBIT BITCOUNT BITPOS BITFIELD_RO GEOPOS GEODIST GEOHASH
    GEORADIUS_RO GEORADIUSBYMEMBER_RO GEOSEARCH LCS SUBSTR
""".split())


class PoolReads:
    """One connection pool's same-unit read state."""

    __slots__ = ("resource", "companion", "last_write", "lock")

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.companion: tuple[Endpoint, Any] | None = None
        """The replica's endpoint and the pool of connections to it."""
        self.last_write = float("-inf")
        """When the pool's newest write completed (:func:`time.monotonic`)."""
        self.lock = threading.Lock()


def state_of(agent: Any, client: Any, resource_of: Callable[[Any, Any], Resource | None]
             ) -> PoolReads | None:
    """The read state of ``client``'s pool when its resource reads locally (None
    otherwise), kept on the pool for the running agent."""
    pool = client.connection_pool
    cached = pool.__dict__.get(ATTRIBUTE)
    if cached is not None and cached[0] is agent:
        found: PoolReads | None = cached[1]
        return found
    resource = resource_of(agent, client)
    found = PoolReads(resource) if resource is not None and resource.reads == "local" \
        else None
    pool.__dict__[ATTRIBUTE] = (agent, found)
    return found


def command_name(args: tuple[Any, ...]) -> str:
    name = args[0] if args else ""
    return (name.decode() if isinstance(name, bytes) else str(name)).upper()


def _admitted(agent: Any, client: Any, state: PoolReads) -> tuple[Endpoint, int] | None:
    """The replica's endpoint and the span's start when a key read of ``client`` may go
    there now; None (the read counted by where it goes instead) when it must go to the
    primary."""
    resource, unit = state.resource, agent.config.unit
    started = spans.now_ns() if spans.tracing() else 0
    endpoint = reads.local_endpoint(resource, unit, agent.state)
    if endpoint is None:
        reads.count(resource, unit, "primary", started)
        return None
    found = watch(resource, client.connection_pool)
    if not found.usable():
        reads.count(resource, unit, "fallback_lag", started, endpoint)
        return None
    if not found.holds_writes_before(_newest_write(state)):
        found.kick()        # the next reads need not wait for the next interval
        reads.count(resource, unit, "fallback_wait", started, endpoint)
        return None
    return endpoint, started


def read(agent: Any, client: Any, state: PoolReads, args: tuple[Any, ...],
         options: dict[str, Any]) -> Any:
    """Run a read command (one of :data:`LOCAL_READS`) on the replica when it may go
    there: the parsed reply; :data:`MISS` when it must go to the primary."""
    if client.connection is not None or not hasattr(client, "_send_command_parse_response"):
        return MISS
    admitted = _admitted(agent, client, state)
    if admitted is None:
        return MISS
    endpoint, started = admitted
    resource, unit = state.resource, agent.config.unit
    pool = _companion(client.connection_pool, state, endpoint)
    with context.bypass():          # resil routes the replica's address to the primary
        try:
            conn = pool.get_connection()
        except Exception:
            reads.count(resource, unit, "fallback_error", started, endpoint)
            return MISS
        try:
            result = client._send_command_parse_response(conn, args[0], *args, **options)
        except Exception:
            with contextlib.suppress(Exception):
                conn.disconnect()
            reads.count(resource, unit, "fallback_error", started, endpoint)
            return MISS
        finally:
            pool.release(conn)
    reads.count(resource, unit, "local", started, endpoint)
    return result


async def read_async(agent: Any, client: Any, state: PoolReads, args: tuple[Any, ...],
                     options: dict[str, Any]) -> Any:
    """:func:`read` for a ``redis.asyncio`` client."""
    if client.connection is not None or client.single_connection_client \
            or not hasattr(client, "_send_command_parse_response"):
        return MISS
    admitted = _admitted(agent, client, state)
    if admitted is None:
        return MISS
    endpoint, started = admitted
    resource, unit = state.resource, agent.config.unit
    pool = _companion(client.connection_pool, state, endpoint)
    try:
        conn = await pool.get_connection()
    except Exception:
        reads.count(resource, unit, "fallback_error", started, endpoint)
        return MISS
    try:
        result = await client._send_command_parse_response(conn, args[0], *args, **options)
    except Exception:
        with contextlib.suppress(Exception):
            await conn.disconnect()
        reads.count(resource, unit, "fallback_error", started, endpoint)
        return MISS
    finally:
        await pool.release(conn)
    reads.count(resource, unit, "local", started, endpoint)
    return result


def wrote(state: PoolReads) -> None:
    """A write of the pool completed (or ended in an error: it may have been applied);
    also one of the request being served, when the resource reads those."""
    state.last_write = now = time.monotonic()
    if state.resource.read_your_writes == "request":
        writes = reads.request_writes.get()
        if writes is not None:
            writes.times[state.resource.name] = now


def _newest_write(state: PoolReads) -> float:
    """When the newest write a read of this pool must see completed: the pool's, or
    the request's (``read_your_writes = "request"``)."""
    if state.resource.read_your_writes != "request":
        return state.last_write
    writes = reads.request_writes.get()
    if writes is None:
        return state.last_write
    return max(state.last_write, writes.times.get(state.resource.name, float("-inf")))


def _companion(pool: Any, state: PoolReads, endpoint: Endpoint) -> Any:
    """The pool of connections to ``endpoint`` beside ``pool`` (made on first use)."""
    found = state.companion
    if found is not None and found[0] == endpoint:
        return found[1]
    with state.lock:
        found = state.companion
        if found is None or found[0] != endpoint:
            if found is not None:
                with contextlib.suppress(Exception):
                    found[1].disconnect()
            kwargs = {**pool.connection_kwargs, "host": endpoint.host, "port": endpoint.port}
            companion = type(pool)(connection_class=unrouted(pool.connection_class), **kwargs)
            found = state.companion = (endpoint, companion)
    return found[1]


_UNROUTED: dict[type, type] = {}


def unrouted(connection_class: type) -> type:
    """A subclass of ``connection_class`` whose connections resil does not route: they
    go where they point, the replica (a thread's ``context.bypass`` would not do for
    asyncio, where other tasks of the thread connect meanwhile)."""
    found = _UNROUTED.get(connection_class)
    if found is None:
        found = _UNROUTED[connection_class] = type(
            connection_class.__name__, (connection_class,), {UNROUTED: True})
    return found


UNROUTED = "_resil_unrouted"
"""The class attribute that marks a companion's connections (see :func:`unrouted`)."""


# --------------------------------------------------------------------------- the watch

_WATCHES = reads.Watches()


def watch(resource: Resource, pool: Any) -> ReplicaWatch:
    """The process's :class:`~resil.reads.ReplicaWatch` of ``resource``, probing with
    connections made with ``pool``'s arguments."""
    return _WATCHES.get(resource, lambda: ReplicaWatch(
        resource, reads.applied_state, _Probe(resource, pool)))


class _Probe:
    """Reads replication offsets over connections of its own (one per endpoint), made
    with the application pool's arguments and short timeouts."""

    def __init__(self, resource: Resource, pool: Any) -> None:
        self.resource = resource
        kwargs = dict(pool.connection_kwargs)
        self.connection_class = pool.connection_class
        if self.connection_class.__module__.startswith("redis.asyncio"):
            # The watch is a thread: it probes with redis-py's blocking connection,
            # made from the arguments both kinds share (TLS is not carried over: such
            # a probe fails, and reads stay on the primary).
            from redis.connection import Connection
            self.connection_class = Connection
            kwargs = {k: v for k, v in kwargs.items() if k in _SHARED}
        self.kwargs = {**kwargs, "socket_timeout": reads.PROBE_TIMEOUT,
                       "socket_connect_timeout": reads.PROBE_TIMEOUT}
        self.conns: dict[Endpoint, Any] = {}

    def __call__(self, primary: Endpoint | None) -> dict[int, int] | None:
        agent = registry._runtime
        if agent is None:
            raise LookupError("the agent stopped")
        endpoint = primary or self.resource.endpoint_in(agent.config.unit)
        if endpoint is None:
            return None
        conn = self.conns.pop(endpoint, None)
        try:
            with context.bypass():
                if conn is None:
                    conn = self.connection_class(
                        **{**self.kwargs, "host": endpoint.host, "port": endpoint.port})
                conn.send_command("INFO", "replication")
                info = _fields(conn.read_response())
        except BaseException:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.disconnect()
            raise
        self.conns[endpoint] = conn
        if primary is not None:
            return {0: int(info["master_repl_offset"])}
        if info.get("role") != "slave" or info.get("master_link_status") != "up":
            return None
        return {0: int(info["slave_repl_offset"])}


_SHARED = frozenset({"host", "port", "db", "username", "password", "client_name",
                     "encoding", "encoding_errors", "decode_responses", "protocol"})


def _fields(reply: Any) -> dict[str, str]:
    """``INFO``'s text (or redis-py's parsed dict) as its fields."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    fields = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            fields[name.strip()] = value.strip()
    return fields


def stop_watches() -> None:
    """Stop every watch (the agent stops, or a test ends)."""
    _WATCHES.stop()
