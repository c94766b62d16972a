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
of its own classes (but for the retry after a refusal); there a held write awaits
(:meth:`resil.gate.Gate.hold_async`) instead of blocking the event loop.

What to do at a boundary, while locked and after a refusal is decided in
:mod:`resil.switching`, the driver-neutral hot-switch protocol; this module only reads
redis-py's state (command names, error replies, ``host``/``port``) into its questions
and applies the answers. With no control-state change, a command costs one epoch
comparison (``get_connection``) and one look at the locks (``execute_command``).
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .. import counters, registry, switching
from ..switching import AfterError, Boundary, ErrorKind
from ..topology import address
from . import _redis_reads as _reads
from ._spare import AFTER_MARK_TIMEOUT, CONNECT_TIMEOUT, PREPARE_MAX, PREPARED, Spare
from ._tracking import ATTRIBUTE, Tracked, Tracker, endpoint_of
from .base import Integration, Target, fail_open

if TYPE_CHECKING:
    from ..runtime import Runtime
    from ..topology import Endpoint, Resource

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
    if getattr(conn, _reads.UNROUTED, False):
        return              # a companion's connection to the own unit's replica
    record = TRACKER.route(conn)
    if record is not None:
        _bound(conn, record.resource)


def _bound(conn: Any, resource: Resource) -> None:
    """No thread waits on a dead or frozen server unbounded: the resource's timeouts
    where the application set none (or a longer connect timeout)."""
    if conn.socket_connect_timeout is None \
            or conn.socket_connect_timeout > resource.connect_timeout:
        conn.socket_connect_timeout = resource.connect_timeout
    if resource.io_timeout and conn.socket_timeout is None:
        conn.socket_timeout = resource.io_timeout


def _connect(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> Any:
    fail_open("redis.connect", _route, instance)
    agent = registry.runtime()
    if agent is not None and agent.state.faults:
        faulty = fail_open("redis.chaos", _chaos_connect, agent, instance)
        if faulty is not None:
            real = instance.host, instance.port
            instance.host, instance.port = faulty
            try:
                return wrapped(*args, **kwargs)
            finally:
                instance.host, instance.port = real
    try:
        result = wrapped(*args, **kwargs)
    except OSError:             # refused, timed out, unreachable: nothing was sent
        fail_open("redis.witness", _witness, instance, False)
        raise
    if hasattr(result, "__await__"):        # redis.asyncio: the socket opens when awaited
        return _witnessed(result, instance)
    fail_open("redis.witness", _witness, instance, True)
    return result


async def _witnessed(pending: Awaitable[Any], conn: Any) -> Any:
    try:
        result = await pending
    except OSError:             # asyncio's TimeoutError is one too
        fail_open("redis.witness", _witness, conn, False)
        raise
    fail_open("redis.witness", _witness, conn, True)
    return result


def _witness(conn: Any, reached: bool) -> None:
    """Tell the agent whether this connect reached its server (heartbeat witnesses)."""
    record: Tracked | None = conn.__dict__.get(ATTRIBUTE)
    runtime = registry.runtime()
    if record is not None and runtime is not None:
        report = runtime.reachable if reached else runtime.unreachable
        report(record.resource.name, address(conn.host, conn.port))


# --------------------------------------------------------------------------- chaos

#: A chaos fault drawn for the command under way, applied to the connection it checks
#: out (``get_connection``): ``(kind, seconds to wait first)``.
_PENDING: contextvars.ContextVar[tuple[str, float] | None] = contextvars.ContextVar(
    "resil_redis_chaos", default=None)


def _chaos_connect(agent: Runtime, conn: Any) -> tuple[str, int] | None:
    """Chaos faults on a sync connect: wait their latency; when one fails it, the
    address of a socket that fails it as the real fault would. An asyncio connect is
    left alone (its command's faults apply)."""
    record: Tracked | None = conn.__dict__.get(ATTRIBUTE)
    if record is None or type(conn).__module__.startswith("redis.asyncio"):
        return None
    from .. import chaos
    return chaos.connect_fault(agent, record.resource, endpoint_of(record, conn), "redis")


def _chaos_command(agent: Runtime, client: Any) -> tuple[Any, float] | None:
    """The chaos effect on one command of ``client``, counted, and how long a black hole
    waits (the client's socket timeout, else the resource's); None: no effect."""
    from .. import chaos
    resource = _resource_of(agent, client)
    if resource is None:
        return None
    effect = chaos.draw(agent.state, resource, agent.router.primary_of(resource),
                        agent.config.unit)
    if effect is None:
        return None
    timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    return effect, chaos.black_hole_wait(timeout, resource)


def _chaos_apply(drawn: tuple[Any, float]) -> tuple[str, float] | None:
    """A sync command's effect: wait; raise an error reply; or return what to do to the
    connection it checks out (see :func:`_pending_call`)."""
    from .. import chaos
    effect, wait = drawn
    chaos.sleep(effect.delay)
    return _fail(effect, wait) if effect.kind else None


def _fail(effect: Any, wait: float) -> tuple[str, float]:
    """Raise an ``error`` effect's reply; for a transport effect, ``(kind, seconds to
    wait first)`` (only a black hole waits)."""
    if effect.kind == "error":
        import redis.exceptions
        raise redis.exceptions.ResponseError("ERR injected by resil chaos")
    return effect.kind, wait if effect.kind == "timeout" else 0.0


def _pending_call(pending: tuple[str, float], call: Callable[..., Any], *args: Any,
                  **kwargs: Any) -> Any:
    """``call(*args, **kwargs)`` with ``pending`` applied to the connection it checks out
    (and forgotten after it, even when the checkout itself failed)."""
    token = _PENDING.set(pending)
    try:
        return call(*args, **kwargs)
    finally:
        _PENDING.reset(token)


async def _pending_call_async(pending: tuple[str, float], call: Callable[..., Any],
                              *args: Any, **kwargs: Any) -> Any:
    token = _PENDING.set(pending)
    try:
        return await call(*args, **kwargs)
    finally:
        _PENDING.reset(token)


def _take_pending() -> tuple[str, float] | None:
    """The effect pending for this command's connection, once (a retry of redis-py's
    own checks out a connection again: it is not cut again)."""
    pending = _PENDING.get()
    if pending is not None:
        _PENDING.set(None)
    return pending


def _chaos_cut(conn: Any) -> None:
    """Cut the connection a faulted sync command checked out (after its black hole)."""
    pending = _take_pending()
    if pending is None:
        return
    from .. import chaos
    chaos.sleep(pending[1])
    chaos.cut(getattr(conn, "_sock", None))


# --------------------------------------------------------------------------- spares

#: The spare opened for the sync command under way while a planned switch held it
#: (:mod:`resil.integrations._spare`): the connection it checks out takes it over if
#: that connection must connect again, to where the spare goes (moved at the checkout,
#: or cut by the switch's fence).
_SPARE: contextvars.ContextVar[Spare | None] = contextvars.ContextVar(
    "resil_redis_spare", default=None)


def _spare_for(agent: Runtime, client: Any, resource: Resource) -> Spare | None:
    """A connection to the target a planned switch's lock names, made by the client's
    pool class with the pool's own arguments (password, database, client name,
    timeouts, TLS); None when the lock names no target (a failover's) or the pool's
    connections cannot take one over (see :func:`_adoptable`)."""
    state = agent.current_state()
    lock = state.locks.get(resource.name)
    target = resource.endpoint_in(lock.target) if lock is not None and lock.target else None
    pool = getattr(client, "connection_pool", None)
    if target is None or pool is None or getattr(pool, "cache", None) is not None:
        return None
    prepared = PREPARED.take(resource.name, pool, (target.host, target.port))
    if prepared is not None:
        return prepared
    return _spare_of(pool, resource, target,
                     after=lambda: agent.wait_marked(resource.name, state.epoch,
                                                     AFTER_MARK_TIMEOUT))


def _spare_of(pool: Any, resource: Resource, target: Endpoint,
              after: Callable[[], object] | None = None) -> Spare:
    """A spare made by ``pool``'s connection class with the pool's own arguments."""
    kwargs = dict(pool.connection_kwargs, host=target.host, port=target.port)
    conn = pool.connection_class(**kwargs)
    _bound(conn, resource)
    # Its connect and handshake within the spare's bound (a frozen target must not keep
    # the opener); the adopting connection sets its own timeout on the socket.
    conn.socket_connect_timeout = min(conn.socket_connect_timeout or CONNECT_TIMEOUT,
                                      CONNECT_TIMEOUT)
    conn.socket_timeout = min(conn.socket_timeout or CONNECT_TIMEOUT, CONNECT_TIMEOUT)
    return Spare(conn, _open_spare, _close_spare, "redis_spare_failures", after=after)


def _open_spare(conn: Any) -> None:
    conn.connect()


def _close_spare(conn: Any) -> None:
    conn.disconnect()
    _dismantle(conn)


def _dismantle(spare: Any) -> None:
    """Take apart a spare connection that is done with (closed, or its socket taken
    over), so that reference counting frees it at once. A redis-py connection is a
    reference cycle of about 46 objects (its parser, event dispatcher and maintenance
    handlers point back at it): left whole, every spare a switch discards (about as
    many per process as its pool has connections) waited for the cyclic collector, and
    on a busy machine the discards of one switch made every process's full collection
    fall due at once. The spare is resil's own object: nothing else refers to it. Only
    its own parts are cleared: objects it shares with its pool (a retry policy, an
    event dispatcher given in the pool's arguments) are left alone."""
    parser = spare.__dict__.get("_parser")
    if parser is not None and hasattr(parser, "__dict__"):
        parser.__dict__.clear()
    spare.__dict__.clear()


def _adoptable(conn: Any, spare: Any) -> bool:
    """Whether ``conn`` can take over ``spare``'s socket, the server session on it set
    up as ``conn``'s own handshake would have: the same connection class, protocol and
    reply parser, and no callbacks of its own to run on a connect (a pub/sub
    resubscription)."""
    return type(conn) is type(spare) and type(conn._parser) is type(spare._parser) \
        and getattr(conn, "protocol", None) == getattr(spare, "protocol", None) \
        and not getattr(conn, "_connect_callbacks", None)


def _make_connect(original: Callable[..., Any]) -> Callable[..., Any]:
    """``Connection.connect`` (sync): a connection about to open a socket while its
    command was held by a planned switch takes over the spare opened meanwhile."""
    def connect(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self._sock is None:
            spare = _SPARE.get()
            if spare is not None and fail_open("redis.adopt", _adopt, self, spare):
                return None
        elif not args and not kwargs:
            # Connected: what connect() does then (nothing; redis-py 5 returns at once),
            # without the retry wrapper redis-py 8 puts around that. The pool calls it
            # at every checkout.
            return None
        return original(self, *args, **kwargs)
    return connect


def _adopt(conn: Any, spare: Spare) -> bool:
    """Give ``conn`` (not connected) the spare's socket, its server session set up by
    the same arguments, when the primary is now where the spare goes: the same object,
    connected with no round trip. False (nothing done, the spare closed) otherwise."""
    record: Tracked | None = conn.__dict__.get(ATTRIBUTE)
    agent = registry.runtime()
    if record is None or agent is None:
        return False
    taken = spare.take_for(agent, record.resource)
    if taken is None:
        return False
    ready, state = taken
    if not _adoptable(conn, ready):
        _close_spare(ready)
        return False
    conn._sock, ready._sock = ready._sock, None
    conn._sock.settimeout(conn.socket_timeout)
    conn._parser.on_connect(conn)       # conn's own parser (and push handlers), re-bound
    if getattr(ready, "_handshake_metadata", None) is not None:     # RESP3's HELLO reply
        conn._handshake_metadata = ready._handshake_metadata
    conn.host, conn.port = ready.host, ready.port
    _dismantle(ready)
    record.epoch = state.epoch
    counters.count("redis_spares_taken")
    fail_open("redis.witness", _witness, conn, True)
    return True


# --------------------------------------------------------------------------- boundary

def _stale(agent: Runtime, conn: Any, record: Tracked) -> Boundary:
    """redis-py's state as :func:`resil.switching.stale` asks for it."""
    return switching.stale(agent, record, (conn.host, conn.port))


def _make_get_connection(original: Callable[..., Any]) -> Callable[..., Any]:
    """``ConnectionPool.get_connection``: per command, so a plain method."""
    def get_connection(self: Any, *args: Any, **kwargs: Any) -> Any:
        conn = original(self, *args, **kwargs)
        record: Tracked | None = conn.__dict__.get(ATTRIBUTE)
        if record is None:
            return conn
        agent = registry._runtime
        if agent is None:
            return conn
        state = agent.state
        if state.epoch != record.epoch \
                and fail_open("redis.boundary", _stale, agent, conn, record) is Boundary.MOVE:
            conn.disconnect()   # redis-py reconnects on the next send (see _make_connect)
            counters.count("redis_connections_moved")
        if state.faults:
            fail_open("redis.chaos", _chaos_cut, conn)
        if record.owner is None:
            record.owner = weakref.ref(self)    # the pool of its spares (see prepare)
        record.busy = True      # checked out until released (see abandon)
        return conn
    return get_connection


def _make_release(original: Callable[..., Any]) -> Callable[..., Any]:
    """``ConnectionPool.release``: the connection is idle again (see abandon)."""
    def release(self: Any, connection: Any, *args: Any, **kwargs: Any) -> Any:
        record: Tracked | None = connection.__dict__.get(ATTRIBUTE)
        if record is not None:
            record.busy = False
        return original(self, connection, *args, **kwargs)
    return release


# --------------------------------------------------------------------------- gate

def _resource_of(agent: Runtime, client: Any) -> Resource | None:
    kwargs = client.connection_pool.connection_kwargs
    if "host" not in kwargs:
        return None             # unix socket
    return agent.router.resource("redis", str(kwargs["host"]), int(kwargs.get("port", 6379)))


def _writes(commands: tuple[Any, ...]) -> Callable[[], bool]:
    """Asked only while the resource is locked: whether any of ``commands`` may write."""
    return lambda: any(_is_write(c) for c in commands)


def _hold_if_locked(agent: Runtime, client: Any, commands: tuple[Any, ...]) -> Spare | None:
    """Hold a write while its resource is locked; the spare opened meanwhile, if any."""
    resource = _resource_of(agent, client)
    if resource is None or not switching.must_wait(agent, resource, _writes(commands)):
        return None
    spare = fail_open("redis.spare", _spare_for, agent, client, resource)
    try:
        switching.hold_if_locked(agent, resource, _writes(commands))
    except BaseException:
        if spare is not None:
            spare.drop()
        raise
    return spare


def _call(spare: Spare, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)`` with ``spare`` offered to the connection it checks out;
    closed after it unless taken."""
    token = _SPARE.set(spare)
    try:
        return call(*args, **kwargs)
    finally:
        _SPARE.reset(token)
        spare.drop()


def _to_hold(agent: Runtime, client: Any, commands: tuple[Any, ...]) -> Resource | None:
    """The resource these commands must wait on (asyncio: the caller awaits the hold)."""
    resource = _resource_of(agent, client)
    if resource is None or not switching.must_wait(agent, resource, _writes(commands)):
        return None
    return resource


def _kind(exc: Exception) -> ErrorKind:
    """``READONLY`` (a demoted primary) and ``NOREPLICAS`` (too few replicas to accept a
    write) replies: the command was refused, not executed."""
    import redis.exceptions
    if isinstance(exc, redis.exceptions.ReadOnlyError) or (
            isinstance(exc, redis.exceptions.ResponseError)
            and str(exc).startswith("NOREPLICAS")):
        return ErrorKind.REFUSED_READ_ONLY
    return ErrorKind.OTHER


def _after_error(client: Any, epoch: int, exc: Exception) -> AfterError:
    """A refused command waits for the new primary (:func:`resil.switching.await_new_primary`)
    and is replayed once; any other error reaches the application untouched."""
    agent = registry.runtime()
    if agent is None or _kind(exc) is not ErrorKind.REFUSED_READ_ONLY:
        return AfterError.RAISE
    resource = _resource_of(agent, client)
    return AfterError.RAISE if resource is None else switching.await_new_primary(
        agent, resource, epoch)


def _guarded(wrapped: Callable[..., Any], client: Any, args: tuple[Any, ...],
             kwargs: dict[str, Any], commands: tuple[Any, ...]) -> Any:
    agent = registry.runtime()
    if agent is None:
        return wrapped(*args, **kwargs)
    state = agent.state
    if not state.locks and not state.faults:
        try:
            return wrapped(*args, **kwargs)
        except Exception as exc:
            return _on_error(wrapped, client, args, kwargs, state.epoch, exc)
    return _eventful(agent, wrapped, client, args, kwargs, commands)


def _eventful(agent: Runtime, wrapped: Callable[..., Any], client: Any,
              args: tuple[Any, ...], kwargs: dict[str, Any], commands: tuple[Any, ...]) -> Any:
    """A command sent while something is locked or a chaos fault is active: held if it
    writes to a locked resource (with a spare opened meanwhile), faulted if drawn."""
    state = agent.state
    spare = None
    if state.locks:             # a switch somewhere: is it this client's resource?
        spare = fail_open("redis.gate", _hold_if_locked, agent, client, commands)
    pending = None
    try:
        if state.faults:
            drawn = fail_open("redis.chaos", _chaos_command, agent, client)
            if drawn is not None:
                pending = _chaos_apply(drawn)
    except BaseException:
        if spare is not None:
            spare.drop()
        raise
    try:
        if pending is not None:
            if spare is not None:
                spare.drop()
            return _pending_call(pending, wrapped, *args, **kwargs)
        if spare is not None:
            return _call(spare, wrapped, *args, **kwargs)
        return wrapped(*args, **kwargs)
    except Exception as exc:
        return _on_error(wrapped, client, args, kwargs, state.epoch, exc)


def _on_error(wrapped: Callable[..., Any], client: Any, args: tuple[Any, ...],
              kwargs: dict[str, Any], epoch: int, exc: Exception) -> Any:
    if fail_open("redis.readonly", _after_error, client, epoch, exc) is not AfterError.REPLAY:
        raise exc
    counters.count("redis_replayed")
    return wrapped(*args, **kwargs)     # once; the command was refused, not executed


def _local_reads(agent: Runtime) -> bool:
    """Whether a redis resource of ``agent`` reads from its own unit's replica."""
    if _LOCAL[0] is not agent:
        _LOCAL[:] = [agent, any(r.kind == "redis" and r.reads == "local"
                                for r in agent.config.resources.values())]
    return bool(_LOCAL[1])


_LOCAL: list[Any] = [None, False]
"""The agent last asked about, and whether it has redis resources that read locally."""


def _split(agent: Runtime, original: Callable[..., Any], client: Any,
           args: tuple[Any, ...], options: dict[str, Any]) -> Any:
    """A command of a client whose resource may read locally
    (:mod:`resil.integrations._redis_reads`): a read may go to the replica; a write
    notes when it completed (read-your-writes)."""
    state = fail_open("redis.reads", _reads.state_of, agent, client, _resource_of)
    if state is None:
        return _command(agent, original, client, args, options)
    name = fail_open("redis.reads", _reads.command_name, args) or ""
    if name in _reads.LOCAL_READS:
        try:        # not fail_open: None is a reply (a missing key), not a fault
            result = _reads.read(agent, client, state, args, options)
        except Exception as fault:
            counters.record_fault("redis.reads", fault)
            result = _reads.MISS
        if result is not _reads.MISS:
            return result
        return _command(agent, original, client, args, options)
    if name in READ_COMMANDS:
        return _command(agent, original, client, args, options)
    try:
        return _command(agent, original, client, args, options)
    finally:
        _reads.wrote(state)


def _make_execute_command(original: Callable[..., Any]) -> Callable[..., Any]:
    """``Redis.execute_command``: per command, so a plain method."""
    def execute_command(self: Any, *args: Any, **options: Any) -> Any:
        agent = registry._runtime
        if agent is None:
            return original(self, *args, **options)
        if _LOCAL[1] or _LOCAL[0] is not agent:
            if _local_reads(agent):
                return _split(agent, original, self, args, options)
        state = agent.state
        if state.locks or state.faults:
            return _eventful(agent, original, self, (self, *args), options, args[:1])
        try:
            return original(self, *args, **options)
        except Exception as exc:
            return _on_error(original, self, (self, *args), options, state.epoch, exc)
    return execute_command


def _command(agent: Runtime, original: Callable[..., Any], client: Any,
             args: tuple[Any, ...], options: dict[str, Any]) -> Any:
    """What ``execute_command`` does with a command sent to the primary."""
    state = agent.state
    if state.locks or state.faults:
        return _eventful(agent, original, client, (client, *args), options, args[:1])
    try:
        return original(client, *args, **options)
    except Exception as exc:
        return _on_error(original, client, (client, *args), options, state.epoch, exc)


def _pipeline_execute(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Any:
    commands = tuple(e[0][0] for e in getattr(instance, "command_stack", ()) if e[0])
    agent = registry._runtime
    if agent is None or not _local_reads(agent):
        return _guarded(wrapped, instance, args, kwargs, commands)
    try:
        return _guarded(wrapped, instance, args, kwargs, commands)
    finally:            # its writes, for the reads of its pool that follow
        state = fail_open("redis.reads", _reads.state_of, agent, instance, _resource_of)
        if state is not None and any(_is_write(c) for c in commands):
            _reads.wrote(state)


# --------------------------------------------------------------------------- asyncio

def _make_async_get_connection(original: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """``redis.asyncio`` ``ConnectionPool.get_connection``: move a stale connection."""
    async def get_connection(self: Any, *args: Any, **kwargs: Any) -> Any:
        conn = await original(self, *args, **kwargs)
        record: Tracked | None = conn.__dict__.get(ATTRIBUTE)
        if record is None:
            return conn
        agent = registry._runtime
        if agent is None:
            return conn
        state = agent.state
        if state.epoch != record.epoch \
                and fail_open("redis.boundary", _stale, agent, conn, record) is Boundary.MOVE:
            await conn.disconnect()
            counters.count("redis_connections_moved")
        if state.faults:
            pending = _take_pending()
            if pending is not None:
                if pending[1] > 0:
                    import asyncio
                    await asyncio.sleep(pending[1])
                fail_open("redis.chaos", _abort, conn)
        return conn
    return get_connection


def _abort(conn: Any) -> None:
    """Cut an asyncio connection's transport: its next send fails as on a lost server."""
    writer = getattr(conn, "_writer", None)
    transport = getattr(writer, "transport", None)
    if transport is not None:
        transport.abort()


def _make_async_execute_command(original: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """``redis.asyncio`` ``Redis.execute_command``: hold writes while locked."""
    async def execute_command(self: Any, *args: Any, **options: Any) -> Any:
        agent = registry._runtime
        if agent is not None and (_LOCAL[1] or _LOCAL[0] is not agent) \
                and _local_reads(agent):
            return await _split_async(agent, original, self, args, options)
        return await _command_async(agent, original, self, args, options)
    return execute_command


async def _split_async(agent: Runtime, original: Callable[..., Awaitable[Any]], client: Any,
                       args: tuple[Any, ...], options: dict[str, Any]) -> Any:
    """:func:`_split` for a ``redis.asyncio`` client."""
    state = fail_open("redis.reads", _reads.state_of, agent, client, _resource_of)
    if state is None:
        return await _command_async(agent, original, client, args, options)
    name = fail_open("redis.reads", _reads.command_name, args) or ""
    if name in _reads.LOCAL_READS:
        try:
            result = await _reads.read_async(agent, client, state, args, options)
        except Exception as fault:
            counters.record_fault("redis.reads", fault)
            result = _reads.MISS
        if result is not _reads.MISS:
            return result
        return await _command_async(agent, original, client, args, options)
    if name in READ_COMMANDS:
        return await _command_async(agent, original, client, args, options)
    try:
        return await _command_async(agent, original, client, args, options)
    finally:
        _reads.wrote(state)


def _make_async_pipeline_execute(original: Callable[..., Awaitable[Any]]
                                 ) -> Callable[..., Any]:
    """``redis.asyncio`` ``Pipeline.execute``: its writes, for the reads of its pool
    that follow (``reads = "local"`` only)."""
    async def execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        agent = registry._runtime
        if agent is None or not (_LOCAL[1] or _LOCAL[0] is not agent) \
                or not _local_reads(agent):
            return await original(self, *args, **kwargs)
        commands = tuple(e[0][0] for e in getattr(self, "command_stack", ()) if e[0])
        try:
            return await original(self, *args, **kwargs)
        finally:
            state = fail_open("redis.reads", _reads.state_of, agent, self, _resource_of)
            if state is not None and any(_is_write(c) for c in commands):
                _reads.wrote(state)
    return execute


async def _command_async(agent: Runtime | None, original: Callable[..., Awaitable[Any]],
                         client: Any, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
    """What the asyncio ``execute_command`` does with a command sent to the primary:
    a write waits while its resource is locked; chaos faults apply."""
    if agent is not None and agent.state.locks:
        resource = fail_open("redis.gate", _to_hold, agent, client, args[:1])
        if resource is not None:
            await agent.gate.hold_async(resource.name, resource.lock_timeout)
    if agent is not None and agent.state.faults:
        drawn = fail_open("redis.chaos", _chaos_command, agent, client)
        if drawn is not None:
            effect, wait = drawn
            if effect.delay > 0:
                import asyncio
                await asyncio.sleep(effect.delay)
            if effect.kind:
                pending = _fail(effect, wait)
                return await _pending_call_async(pending, original, client, *args, **options)
    return await original(client, *args, **options)


class RedisIntegration(Integration):
    """Routing and hot switching for redis-py."""

    def abandon(self, resource: str, address: tuple[str, int]) -> int:
        """Shut the socket of every sync connection checked out of its pool (or held by
        a client of its own, or by a pub/sub) while open to ``address``. A command
        waiting there gets "connection closed" at once instead of its socket timeout;
        redis-py's own retries (3 by default since redis-py 6) send it again, to the new
        primary. Idle pooled connections are left alone: they move when next checked
        out, where a held write's spare can take their place. asyncio connections are
        left to move at their next command (their streams belong to their event loop)."""
        cut = 0
        for conn, record in TRACKER.connections():
            sock = getattr(conn, "_sock", None)
            if record.resource.name != resource or sock is None or not record.busy \
                    or (conn.host, conn.port) != address:
                continue
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                cut += 1
        return cut

    def prepare(self, resource: Resource, target: Endpoint) -> int:
        """Per pool of ``resource`` (sync), as many spares to ``target`` as the pool has
        connections now (at most :data:`~resil.integrations._spare.PREPARE_MAX` in all):
        a held write takes one of its pool's (see :func:`_spare_for`)."""
        pools: dict[int, tuple[Any, int]] = {}
        for _, record in TRACKER.connections():
            pool = record.owner() if record.owner is not None \
                and record.resource.name == resource.name else None
            if pool is None or getattr(pool, "cache", None) is not None:
                continue
            pools[id(pool)] = (pool, pools.get(id(pool), (pool, 0))[1] + 1)
        opened = 0
        for pool, count in pools.values():
            for _ in range(min(count, PREPARE_MAX - opened)):
                PREPARED.add(resource.name, pool, _spare_of(pool, resource, target))
                opened += 1
        return opened

    name = "redis"
    distribution = "redis"
    supported = ((5, 0), (9,))
    targets = (
        Target("redis.connection", "Connection._connect", _connect),
        Target("redis.connection", "AbstractConnection.connect", _make_connect, method=True),
        Target("redis.connection", "ConnectionPool.get_connection", _make_get_connection,
               method=True),
        Target("redis.connection", "BlockingConnectionPool.get_connection",
               _make_get_connection, method=True),
        Target("redis.connection", "ConnectionPool.release", _make_release, method=True),
        Target("redis.connection", "BlockingConnectionPool.release", _make_release,
               method=True),
        Target("redis.client", "Redis.execute_command", _make_execute_command, method=True),
        Target("redis.client", "Pipeline.execute", _pipeline_execute),
        Target("redis.asyncio.connection", "Connection._connect", _connect),
        Target("redis.asyncio.connection", "ConnectionPool.get_connection",
               _make_async_get_connection, method=True),
        Target("redis.asyncio.connection", "BlockingConnectionPool.get_connection",
               _make_async_get_connection, method=True),
        Target("redis.asyncio.client", "Redis.execute_command", _make_async_execute_command,
               method=True),
        Target("redis.asyncio.client", "Pipeline.execute", _make_async_pipeline_execute,
               method=True),
    )
