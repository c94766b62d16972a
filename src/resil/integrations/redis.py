"""redis-py: route connections to the current primary and move pooled ones after a switch.

Seams:

- ``Connection._connect`` (sync and asyncio): the one place a TCP socket is opened from
  ``host``/``port`` (``SSLConnection`` reaches it through ``super()``), for every
  connection a pool creates and on every reconnect. Rewriting them there routes it.
- ``ConnectionPool.get_connection``: a connection checked out of a pool is at a command
  boundary. If the primary moved since it last looked, it is disconnected there, and
  redis-py's next send reconnects it — through ``_connect``, to the new primary.
- ``Redis.execute_command`` and ``Pipeline.execute``: while a switch has the resource
  locked, write commands wait (:mod:`resil.gate`); reads run. A ``READONLY`` or
  ``NOREPLICAS`` reply (the command was refused, not executed) from a demoted primary
  is a switch signal: resil re-reads the control state, waits for the new primary and
  retries the command once.

The asyncio client (``redis.asyncio``) gets the same treatment through the same seams
of its own classes; there a held write awaits (polling the control state every 10 ms)
instead of blocking the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .. import context, counters, registry
from ..topology import Resource
from ._tracking import ATTRIBUTE, Tracked, Tracker
from .base import Integration, Target, fail_open

TRACKER = Tracker("redis")

#: Commands that never write. Anything else (including unknown commands) is held.
READ_COMMANDS = frozenset("""
    GET MGET GETRANGE STRLEN EXISTS TTL PTTL EXPIRETIME PEXPIRETIME TYPE KEYS SCAN RANDOMKEY
    DBSIZE HGET HMGET HGETALL HKEYS HVALS HLEN HEXISTS HSTRLEN HSCAN HRANDFIELD LRANGE LLEN
    LINDEX LPOS SMEMBERS SISMEMBER SMISMEMBER SCARD SRANDMEMBER SSCAN SINTER SUNION SDIFF
    SINTERCARD ZRANGE ZRANGEBYSCORE ZREVRANGE ZREVRANGEBYSCORE ZRANGEBYLEX ZREVRANGEBYLEX
    ZSCORE ZMSCORE ZCARD ZCOUNT ZLEXCOUNT ZRANK ZREVRANK ZSCAN ZRANDMEMBER ZINTER ZUNION ZDIFF
    ZINTERCARD XRANGE XREVRANGE XLEN XREAD XINFO XPENDING GETBIT BITCOUNT BITPOS BITFIELD_RO
    PFCOUNT GEOPOS GEODIST GEOHASH GEORADIUS_RO GEORADIUSBYMEMBER_RO GEOSEARCH OBJECT
    DUMP TOUCH LCS SUBSTR PING ECHO INFO TIME CONFIG CLIENT COMMAND HELLO AUTH SELECT
    READONLY READWRITE ROLE LASTSAVE MEMORY SLOWLOG LATENCY DEBUG WAIT QUIT RESET
""".split())


def _is_write(command: Any) -> bool:
    name = command.decode() if isinstance(command, bytes) else str(command)
    return name.upper() not in READ_COMMANDS


def _route(conn: Any) -> None:
    record = TRACKER.route(conn)
    if record is None:
        return
    resource = record.resource     # no thread waits on a dead or frozen primary unbounded
    if conn.socket_connect_timeout is None \
            or conn.socket_connect_timeout > resource.connect_timeout:
        conn.socket_connect_timeout = resource.connect_timeout
    if resource.io_timeout and conn.socket_timeout is None:
        conn.socket_timeout = resource.io_timeout


def _connect(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> Any:
    fail_open("redis.connect", _route, instance)
    return wrapped(*args, **kwargs)


# --------------------------------------------------------------------------- boundary

def _stale(conn: Any, record: Tracked) -> bool:
    """Whether a checked-out connection points at a primary that is no longer current."""
    router = registry.router()
    if router is None:
        return False
    state = router.state()
    endpoint = router.primary_of(record.resource, state)
    if endpoint is None or (conn.host, conn.port) == (endpoint.host, endpoint.port):
        if record.resource.name not in state.locks:
            record.epoch = state.epoch
        return False
    return True


def _make_get_connection(original: Callable[..., Any]) -> Callable[..., Any]:
    """``ConnectionPool.get_connection``: per command, so a plain method."""
    def get_connection(self: Any, *args: Any, **kwargs: Any) -> Any:
        conn = original(self, *args, **kwargs)
        record: Tracked | None = conn.__dict__.get(ATTRIBUTE)
        if record is None:
            return conn
        agent = registry.runtime()
        if agent is not None and agent.state.epoch != record.epoch \
                and fail_open("redis.boundary", _stale, conn, record):
            conn.disconnect()   # redis-py reconnects on the next send, through _connect
            counters.count("redis_connections_moved")
        return conn
    return get_connection


# --------------------------------------------------------------------------- gate

def _resource_of(client: Any) -> Resource | None:
    router = registry.router()
    if router is None:
        return None
    kwargs = client.connection_pool.connection_kwargs
    if "host" not in kwargs:
        return None             # unix socket
    return router.resource("redis", str(kwargs["host"]), int(kwargs.get("port", 6379)))


def _hold_if_locked(client: Any, commands: tuple[Any, ...]) -> None:
    if context.bypassed():
        return                  # resil's own commands (a switch in this process)
    resource = _resource_of(client)
    agent = registry.runtime()
    if resource is None or agent is None or resource.name not in agent.state.locks:
        return
    if any(_is_write(c) for c in commands):
        agent.gate.hold(resource.name, resource.lock_timeout)


def _refused_by_demoted_primary(exc: Exception) -> bool:
    import redis.exceptions
    return isinstance(exc, redis.exceptions.ReadOnlyError) or (
        isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith("NOREPLICAS"))


def _await_new_primary(client: Any, epoch: int) -> bool:
    """After a refused write: wait (bounded) for a newer state; True to retry once."""
    if context.bypassed():
        return False
    resource = _resource_of(client)
    agent = registry.runtime()
    if resource is None or agent is None:
        return False
    agent.refresh()
    state = agent.current_state()
    if state.epoch == epoch:
        state = agent.wait_for_change(epoch, resource.lock_timeout)
    if resource.name in state.locks:
        state = agent.gate.hold(resource.name, resource.lock_timeout)
    return state.epoch != epoch


def _guarded(wrapped: Callable[..., Any], client: Any, args: tuple[Any, ...],
             kwargs: dict[str, Any], commands: tuple[Any, ...]) -> Any:
    agent = registry.runtime()
    if agent is None:
        return wrapped(*args, **kwargs)
    state = agent.state
    if state.locks:             # a switch somewhere: is it this client's resource?
        fail_open("redis.gate", _hold_if_locked, client, commands)
    try:
        return wrapped(*args, **kwargs)
    except Exception as exc:
        return _on_error(wrapped, client, args, kwargs, state.epoch, exc)


def _on_error(wrapped: Callable[..., Any], client: Any, args: tuple[Any, ...],
              kwargs: dict[str, Any], epoch: int, exc: Exception) -> Any:
    if not _refused_by_demoted_primary(exc):
        raise exc
    if not fail_open("redis.readonly", _await_new_primary, client, epoch):
        raise exc
    counters.count("redis_replayed")
    return wrapped(*args, **kwargs)     # once; the command was refused, not executed


def _make_execute_command(original: Callable[..., Any]) -> Callable[..., Any]:
    """``Redis.execute_command``: per command, so a plain method."""
    def execute_command(self: Any, *args: Any, **options: Any) -> Any:
        agent = registry.runtime()
        if agent is None:
            return original(self, *args, **options)
        state = agent.state
        if state.locks:         # a switch somewhere: is it this client's resource?
            fail_open("redis.gate", _hold_if_locked, self, args[:1])
        try:
            return original(self, *args, **options)
        except Exception as exc:
            return _on_error(original, self, (self, *args), options, state.epoch, exc)
    return execute_command


def _pipeline_execute(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Any:
    commands = tuple(e[0][0] for e in getattr(instance, "command_stack", ()) if e[0])
    return _guarded(wrapped, instance, args, kwargs, commands)


# --------------------------------------------------------------------------- asyncio

def _make_async_get_connection(original: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """``redis.asyncio`` ``ConnectionPool.get_connection``: move a stale connection."""
    async def get_connection(self: Any, *args: Any, **kwargs: Any) -> Any:
        conn = await original(self, *args, **kwargs)
        record: Tracked | None = conn.__dict__.get(ATTRIBUTE)
        if record is None:
            return conn
        agent = registry.runtime()
        if agent is not None and agent.state.epoch != record.epoch \
                and fail_open("redis.boundary", _stale, conn, record):
            await conn.disconnect()
            counters.count("redis_connections_moved")
        return conn
    return get_connection


def _async_lock_of(client: Any, commands: tuple[Any, ...]) -> tuple[str, float] | None:
    """(resource, lock_timeout) when these commands must wait for a lock to clear."""
    if context.bypassed():
        return None
    resource = _resource_of(client)
    agent = registry.runtime()
    if resource is None or agent is None or resource.name not in agent.state.locks:
        return None
    if not any(_is_write(c) for c in commands):
        return None
    return resource.name, resource.lock_timeout


async def _async_hold(name: str, timeout: float) -> None:
    """Await (never block the loop) until ``name`` is unlocked; LockTimeoutError after."""
    started = time.monotonic()
    counters.count("held_writes")
    counters.holding(+1)
    try:
        await _async_wait_out(name, timeout, started)
    finally:
        counters.holding(-1)


async def _async_wait_out(name: str, timeout: float, started: float) -> None:
    from ..errors import LockTimeoutError
    while True:
        agent = registry.runtime()
        state = agent.state if agent is not None else None
        if state is None or name not in state.locks:
            counters.observe_hold(time.monotonic() - started)
            return
        if time.monotonic() - started >= timeout:
            counters.count("hold_timeouts")
            raise LockTimeoutError(name, time.monotonic() - started, state.locks[name].holder)
        await asyncio.sleep(0.01)


def _make_async_execute_command(original: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """``redis.asyncio`` ``Redis.execute_command``: hold writes while locked."""
    async def execute_command(self: Any, *args: Any, **options: Any) -> Any:
        agent = registry.runtime()
        if agent is not None and agent.state.locks:
            lock = fail_open("redis.gate", _async_lock_of, self, args[:1])
            if lock is not None:
                await _async_hold(*lock)
        return await original(self, *args, **options)
    return execute_command


class RedisIntegration(Integration):
    """Routing and hot switching for redis-py."""

    name = "redis"
    distribution = "redis"
    supported = ((5, 0), (9,))
    targets = (
        Target("redis.connection", "Connection._connect", _connect),
        Target("redis.connection", "ConnectionPool.get_connection", _make_get_connection,
               method=True),
        Target("redis.connection", "BlockingConnectionPool.get_connection",
               _make_get_connection, method=True),
        Target("redis.client", "Redis.execute_command", _make_execute_command, method=True),
        Target("redis.client", "Pipeline.execute", _pipeline_execute),
        Target("redis.asyncio.connection", "Connection._connect", _connect),
        Target("redis.asyncio.connection", "ConnectionPool.get_connection",
               _make_async_get_connection, method=True),
        Target("redis.asyncio.connection", "BlockingConnectionPool.get_connection",
               _make_async_get_connection, method=True),
        Target("redis.asyncio.client", "Redis.execute_command", _make_async_execute_command,
               method=True),
    )
