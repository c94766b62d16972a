"""Shared by the MySQL driver integrations (PyMySQL, aiomysql, mysqlclient): the
protocol's status bits and error numbers, read into :mod:`resil.switching`'s questions,
and the hold of a connect that cannot reach the primary."""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _log, counters, registry, spans, switching
from ..errors import TransactionInterruptedError
from ..sql import Access, classify
from ..switching import AfterError, ErrorKind
from ._tracking import Tracked

if TYPE_CHECKING:
    from ..runtime import Runtime

T = TypeVar("T")
log = _log.get("resil.integrations")

IN_TRANS = 0x0001           # SERVER_STATUS_IN_TRANS
AUTOCOMMIT = 0x0002         # SERVER_STATUS_AUTOCOMMIT
NO_BACKSLASH_ESCAPES = 0x0200
#: The server refused the statement because it is read-only: it was not executed.
REFUSED_READ_ONLY = frozenset({1290, 1836})
#: The connection was cut (killed by a fence, server gone, network).
CONNECTION_LOST = frozenset({2006, 2013, 2055, 1927, 1053, 0})
#: Counter names of what was done after an error.
COUNTED = {AfterError.INTERRUPT: "mysql_interrupted", AfterError.REPLAY: "mysql_replay"}


def server_status(conn: Any) -> int:
    """The status bits of the connection's last OK packet (0 when unknown)."""
    return int(getattr(conn, "server_status", 0) or 0)


def kind(exc: BaseException) -> ErrorKind:
    """A driver exception as :mod:`resil.switching` sees it, from its MySQL error number."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else -1
    if code in REFUSED_READ_ONLY:
        return ErrorKind.REFUSED_READ_ONLY
    if code in CONNECTION_LOST:
        return ErrorKind.CONNECTION_LOST
    return ErrorKind.OTHER


def in_transaction(conn: Any, record: Tracked) -> bool:
    """The server said a transaction is open, or resil saw one start that wrote."""
    return record.tx or bool(server_status(conn) & IN_TRANS)


# Enum members as plain names: ``Access.END`` is a class attribute lookup through the
# enum's metaclass, ~80 ns each on CPython 3.11, and note() runs after every statement.
_END, _WRITE, _BEGIN = Access.END, Access.WRITE, Access.BEGIN


def note(record: Tracked, sql: Any) -> None:
    """After a statement ran with autocommit off: did it open or end a transaction?"""
    access = classify(sql)
    if access is _END:
        record.tx = False
    elif access is _WRITE or access is _BEGIN:
        record.tx = True


def unreachable(exc: BaseException) -> bool:
    """A connect that did not reach a server at all (2003: refused, timed out,
    unreachable; 2002 from MariaDB's client library, which mysqlclient is built on) or
    lost it before the handshake ended (2013): no statement was sent."""
    # By name, not by the driver's class: an application that imports ``MySQLdb.err``
    # after ``pymysql.install_as_MySQLdb()`` (Django does) loads that module a second
    # time, and ``pymysql.err`` then names a copy whose classes are not the raised ones.
    return any(c.__name__ == "OperationalError" for c in type(exc).__mro__) \
        and bool(exc.args) and exc.args[0] in (2002, 2003, 2013)


#: Seconds between two connect attempts while the primary is unreachable (sooner when a
#: new control state arrives).
FAILOVER_RETRY = 0.5


def hold_for_failover(runtime: Runtime | None, record: Tracked, failure: Exception,
                      attempt: Callable[[], T],
                      witness: Callable[[bool], object] = lambda reached: None) -> T:
    """The primary cannot be reached: hold this connect, as a write is held during a
    switch, until a failover publishes a new primary (then connect there) or the old
    one answers again, for at most the resource's ``failover_hold``. ``attempt()``
    routes the connection to the primary now and connects it. Nothing was sent, so
    nothing can be done twice. Past the hold, the driver's last error is raised."""
    hold = record.resource.failover_hold
    if runtime is None or hold <= 0:
        raise failure
    started, started_ns = time.monotonic(), spans.now_ns()
    deadline = started + hold
    counters.count("failover_holds")
    # The epoch this connect was routed at: when a new primary was published since (the
    # connect was cut for it), the first retry goes there at once.
    epoch = record.epoch
    outcome = "timeout"
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                counters.count("failover_hold_timeouts")
                raise failure
            state = runtime.wait_for_change(epoch, min(FAILOVER_RETRY, remaining))
            epoch = state.epoch
            if record.resource.name in state.locks:     # a failover is under way
                runtime.gate.hold(record.resource.name, record.resource.lock_timeout)
            try:
                result = attempt()
            except Exception as exc:
                if not unreachable(exc):
                    raise
                failure = exc
                witness(False)
                continue
            witness(True)
            outcome = "connected"
            counters.count("failover_holds_released")
            return result
    finally:
        _held(record, started, started_ns, outcome)


#: Seconds between two looks at the control state while an asyncio connect is held.
ASYNC_POLL = 0.02


async def hold_for_failover_async(runtime: Runtime | None, record: Tracked,
                                  failure: Exception,
                                  attempt: Callable[[], Awaitable[T]]) -> T:
    """:func:`hold_for_failover` for the asyncio drivers: every wait is awaited (the
    event loop never blocks), the decisions are the same."""
    import asyncio  # here: asyncio would slow every start-up
    hold = record.resource.failover_hold
    if runtime is None or hold <= 0:
        raise failure
    started, started_ns = time.monotonic(), spans.now_ns()
    deadline = started + hold
    counters.count("failover_holds")
    epoch = record.epoch
    outcome = "timeout"
    try:
        while True:
            retry = min(deadline, time.monotonic() + FAILOVER_RETRY)
            while runtime.current_state().epoch == epoch and time.monotonic() < retry:
                await asyncio.sleep(ASYNC_POLL)
            if time.monotonic() >= deadline:
                counters.count("failover_hold_timeouts")
                raise failure
            state = runtime.current_state()
            epoch = state.epoch
            if record.resource.name in state.locks:     # a failover is under way
                await runtime.gate.hold_async(record.resource.name,
                                              record.resource.lock_timeout)
            try:
                result = await attempt()
            except Exception as exc:
                if not unreachable(exc):
                    raise
                failure = exc
                continue
            outcome = "connected"
            counters.count("failover_holds_released")
            return result
    finally:
        _held(record, started, started_ns, outcome)


def _held(record: Tracked, started: float, started_ns: int, outcome: str) -> None:
    spans.span("resil.hold", started_ns, spans.now_ns(), {
        "resil.resource": record.resource.name, "resil.reason": "primary unreachable",
        "resil.held_ms": (time.monotonic() - started) * 1000, "resil.outcome": outcome})


def after_error(conn: Any, record: Tracked, exc: BaseException, sql: Any,
                may_replay: bool) -> AfterError:
    """What to do after ``exc`` failed ``sql``, for the drivers that keep no status bits
    of a failed statement (aiomysql, mysqlclient): resil's record says whether a
    transaction was open; a read may be replayed."""
    runtime = registry.runtime()
    if runtime is None:
        return AfterError.RAISE
    return switching.after_error(
        runtime, record, kind(exc),
        in_transaction=in_transaction(conn, record) and not record.connecting,
        may_replay=may_replay, repeatable=lambda: classify(sql) is Access.READ)


def readable_now(record: Tracked, handle: Any) -> bool:
    """Whether the socket ``handle`` (a socket object or a descriptor) has something to
    read, without a wait: one ``poll`` on a poll object kept in ``record`` (under a
    microsecond). Any fault of this check says "no"."""
    try:
        watch = record.watch
        if watch is None or watch[0] != handle:
            poller = select.poll()
            poller.register(handle, select.POLLIN)
            watch = record.watch = (handle, poller)
        return bool(watch[1].poll(0))
    except Exception:       # no poll() on this platform, a closed socket: say "no"
        return False


def act_after_error(action: AfterError | None, record: Tracked, exc: Exception,
                    reconnect: Callable[[], object]) -> None:
    """Carry out, for a sync driver, what :mod:`resil.switching` decided after ``exc``:
    raise it (or when no decision could be made); interrupt (reconnect, then raise
    :class:`~resil.errors.TransactionInterruptedError`); or replay (reconnect and
    return: the caller sends the statement once more, and its errors are the app's)."""
    if action is None or action is AfterError.RAISE:
        raise exc
    counters.count(COUNTED[action])
    if action is AfterError.INTERRUPT:
        with contextlib.suppress(Exception):
            reconnect()
        raise TransactionInterruptedError(record.resource.name, exc) from exc
    log.info("resil: replaying a statement on %s after %r", record.resource.name, exc)
    reconnect()


def alive(conn: Any) -> bool:
    """One ping on a sync driver's connection (its ``ping`` passes through no wrapper of
    resil's): whether the server still answers it."""
    try:
        conn.ping()
        return True
    except Exception:
        return False

