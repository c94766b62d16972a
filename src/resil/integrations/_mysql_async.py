"""Shared by the asyncio MySQL integrations (aiomysql, asyncmy): route connections to the
current primary and move them at transaction boundaries, awaiting every hold (the event
loop never blocks).

The same protocol as PyMySQL's (:mod:`resil.integrations.pymysql`, decided in
:mod:`resil.switching`), on aiomysql's own seams (``aiomysql.connection.Connection``):

- ``_connect``: every connect and reconnect, after ``_host``/``_port`` are set. Rewriting
  them there routes the connection to its resource's current primary; while the
  resource is locked, the connect waits for the switch to end (awaited); when the
  primary cannot be reached, it waits (awaited, at most ``failover_hold``) for a
  failover to publish a new one.
- ``query`` (every cursor statement) and ``begin``: when the control state changed since
  the connection last looked, or something is locked, and no transaction is open, this
  is a transaction boundary: a write (or ``BEGIN``, or anything with autocommit off)
  waits while the resource is locked, and the connection reconnects to the new primary
  if the primary moved — the same object, so pools and SQLAlchemy's async engine keep
  it. An open transaction is never moved: it finishes where it started.
- ``commit`` and ``rollback`` end resil's record of an open transaction.
- After an error a switch caused: inside a transaction, reconnect and raise
  :class:`~resil.errors.TransactionInterruptedError` (nothing was committed); in
  autocommit mode, replay once when provably safe (refused as read-only: not executed;
  or a read whose connection was lost).

Statements in flight and open transactions are counted for a switch's drain; a statement
still waiting on a demoted primary is cut (its transport aborted, in its own event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .. import _log, counters, registry, spans, switching
from ..errors import LockTimeoutError, TransactionInterruptedError
from ..gate import must_hold
from ..sql import classify
from ..switching import AfterError, Boundary
from ._mysql import (
    AUTOCOMMIT,
    COUNTED,
    IN_TRANS,
    after_error,
    hold_for_failover_async,
    in_transaction,
    note,
    server_status,
    unreachable,
)
from ._tracking import ATTRIBUTE, Tracked, Tracker, endpoint_at, reads_unsupported, tracked
from .base import Integration, Target, fail_open

if TYPE_CHECKING:
    from ..runtime import Runtime

log = _log.get("resil.integrations")


def _point(conn: Any, host: str, port: int) -> None:
    conn._host, conn._port = host, port


def _address(conn: Any) -> tuple[str, int]:
    return conn._host, conn._port


TRACKER = Tracker("mysql", point=_point, at=_address)
"""The connections of aiomysql and asyncmy (:mod:`resil.integrations.asyncmy`), which
keep their address in the same attributes."""


def _transport(conn: Any) -> Any:
    """The asyncio transport of an open connection (aiomysql's stream writer's, asyncmy's
    own); None when it is closed."""
    writer = getattr(conn, "_writer", None)
    if writer is not None:
        return writer.transport
    return getattr(conn, "_transport", None)


def _autocommit_off(conn: Any) -> bool:
    return getattr(conn, "autocommit_mode", None) is False or \
        not (server_status(conn) & AUTOCOMMIT)


# --------------------------------------------------------------------------- connect

def _route(conn: Any) -> Tracked | None:
    if getattr(conn, "_unix_socket", None):
        return None
    record = TRACKER.route(conn, _address(conn))
    if record is not None:
        resource = record.resource
        if resource.reads == "local":
            reads_unsupported(record, type(conn).__module__.partition(".")[0])
        # aiomysql's attribute, or asyncmy's
        name = "connect_timeout" if hasattr(conn, "connect_timeout") else "_connect_timeout"
        timeout = getattr(conn, name, None)
        if timeout is None or timeout > resource.connect_timeout:
            setattr(conn, name, resource.connect_timeout)
    return record


def _make_connect(original: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """``Connection._connect``: route, and wait out a lock before connecting."""
    async def _connect(self: Any) -> Any:
        record = fail_open("aiomysql.connect", _route, self)
        if record is None:
            return await original(self)
        agent = registry.runtime()
        resource = record.resource
        if agent is not None and switching.must_wait(agent, resource, _always):
            await agent.gate.hold_async(resource.name, resource.lock_timeout)
            fail_open("aiomysql.connect", _route, self)    # the primary may have moved
        faulty = None
        if agent is not None and agent.state.faults:
            faulty = await _chaos_connect(agent, self, record)
        record.connecting = True    # statements connect() sends itself are not boundaries
        try:
            try:
                if faulty is not None:
                    return await _redirected(original, self, faulty)
                return await original(self)
            except Exception as exc:
                if not unreachable(exc):
                    raise

                async def again() -> Any:
                    fail_open("aiomysql.connect", _route, self)     # maybe a new primary
                    return await original(self)

                # The primary cannot be reached: wait (awaited) for a failover.
                return await hold_for_failover_async(registry.runtime(), record, exc, again)
        finally:
            record.connecting = False
    return _connect


def _always() -> bool:
    return True


async def _chaos_connect(runtime: Runtime, conn: Any, record: Tracked) -> tuple[str, int] | None:
    """The chaos faults on a connect, as for PyMySQL (:mod:`resil.chaos`): their latency
    awaited; the address of a chaos socket when one fails it, else None. A held retry
    after a refusal goes to the real server."""
    from .. import chaos
    effect = fail_open("aiomysql.chaos", chaos.draw, runtime.state, record.resource,
                       endpoint_at(record, _address(conn)), runtime.config.unit)
    if effect is None:
        return None
    if effect.delay > 0:
        await asyncio.sleep(effect.delay)
    return fail_open("aiomysql.chaos", chaos.connect_address, effect.kind, "mysql") \
        if effect.kind else None


async def _redirected(original: Callable[..., Awaitable[Any]], conn: Any,
                      faulty: tuple[str, int]) -> Any:
    """The connect sent to a chaos socket; the connection keeps its real address."""
    real = _address(conn)
    _point(conn, *faulty)
    try:
        return await original(conn)
    finally:
        _point(conn, *real)


async def _chaos_statement(runtime: Runtime, conn: Any, record: Tracked) -> None:
    """Chaos faults on a statement about to be sent, as for PyMySQL: the latency awaited;
    when one fails it, the driver's own server error (1105), or the connection's socket
    shut down (at once for refused and reset; after ``io_timeout``, else 30 s, for a
    black hole), so that the driver fails it as it fails a lost server."""
    from .. import chaos
    effect = fail_open("aiomysql.chaos", chaos.draw, runtime.state, record.resource,
                       endpoint_at(record, _address(conn)), runtime.config.unit)
    if effect is None:
        return
    if effect.delay > 0:
        await asyncio.sleep(effect.delay)
    if effect.kind == "error":
        import importlib
        errors: Any = importlib.import_module(
            "asyncmy.errors" if type(conn).__module__.split(".")[0] == "asyncmy"
            else "pymysql.err")     # aiomysql raises PyMySQL's errors
        raise errors.OperationalError(chaos.MYSQL_STATEMENT_ERROR,
                                      "Unknown error (injected by resil chaos)")
    if effect.kind == "timeout":
        await asyncio.sleep(chaos.black_hole_wait(None, record.resource))
    if effect.kind:
        transport = _transport(conn)
        chaos.cut(transport.get_extra_info("socket") if transport is not None else None)


async def _reconnect(conn: Any, record: Tracked) -> None:
    """Close ``conn`` and connect it again: ``_connect`` routes it to the current primary."""
    started = spans.now_ns()
    with contextlib.suppress(Exception):
        conn.close()
    record.tx = False           # a new connection has no transaction
    if hasattr(conn, "_connected"):     # asyncmy: close() leaves it set, connect() skips
        conn._connected = False
    connect = getattr(conn, "_connect", None) or conn.connect      # aiomysql's, asyncmy's
    await connect()             # driver errors (new primary unreachable) reach the app
    fail_open("aiomysql.move", _moved, conn, record, started)


def _moved(conn: Any, record: Tracked, started: int) -> None:
    counters.count("mysql_connections_moved")
    spans.span("resil.move", started, spans.now_ns(), {
        "resil.resource": record.resource.name, "resil.epoch": record.epoch,
        "resil.endpoint": f"{conn._host}:{conn._port}"})


# --------------------------------------------------------------------------- statements

async def _at_boundary(agent: Runtime, conn: Any, record: Tracked, sql: Any) -> None:
    """The control state changed, or something is locked: hold, move or check."""
    try:
        status = server_status(conn)
        autocommit = not _autocommit_off(conn)
        boundary = await switching.at_boundary_async(
            agent, record, (conn._host, conn._port),
            in_transaction=record.tx or bool(status & IN_TRANS),
            must_hold=lambda: must_hold(classify(sql), autocommit))
    except LockTimeoutError:
        raise                           # the documented error: the write was not sent
    except Exception as exc:            # fail-open: the statement runs where it is
        counters.record_fault("aiomysql.boundary", exc)
        return
    finally:
        record.busy = True              # about to be sent, wherever the connection is
    if boundary is Boundary.MOVE or (boundary is Boundary.CHECK and _transport(conn) is None):
        await _reconnect(conn, record)


async def _on_error(original: Callable[..., Awaitable[Any]], conn: Any, record: Tracked,
                    args: tuple[Any, ...], sql: Any, may_replay: bool,
                    exc: Exception) -> Any:
    action = fail_open("aiomysql.error", after_error, conn, record, exc, sql, may_replay)
    if action is None or action is AfterError.RAISE:
        raise exc
    counters.count(COUNTED[action])
    if action is AfterError.INTERRUPT:
        with contextlib.suppress(Exception):
            await _reconnect(conn, record)
        raise TransactionInterruptedError(record.resource.name, exc) from exc
    log.info("resil: replaying a statement on %s after %r", record.resource.name, exc)
    await _reconnect(conn, record)
    return await original(*args)        # once; its errors are the app's


async def _statement(original: Callable[..., Awaitable[Any]], conn: Any,
                     args: tuple[Any, ...], sql: Any, boundary: bool,
                     may_replay: bool, faulted: bool = False) -> Any:
    record: Tracked | None = conn.__dict__.get(ATTRIBUTE)
    if record is None or record.connecting:
        return await original(*args)
    # In flight before the control state is read: a switch that sees no statement in
    # flight after its lock cannot miss this one.
    record.busy = True
    try:
        try:
            if boundary:
                agent = registry._runtime
                if agent is not None:
                    state = agent.state
                    if state.epoch != record.epoch or state.locks:
                        await _at_boundary(agent, conn, record, sql)
                    if faulted and agent.state.faults:
                        await _chaos_statement(agent, conn, record)
            result = await original(*args)
        except (TransactionInterruptedError, LockTimeoutError):
            raise
        except Exception as exc:
            return await _on_error(original, conn, record, args, sql, may_replay, exc)
        if _autocommit_off(conn):
            try:
                note(record, sql)
            except Exception as fault:      # fail-open: the statement succeeded
                counters.record_fault("aiomysql.note", fault)
        return result
    finally:
        record.busy = False


def _make_query(original: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """``Connection.query``: every cursor statement, the hot path.

    The same as ``_statement(original, self, (self, sql, unbuffered), sql, True, True,
    True)``, inlined (``_autocommit_off`` too): one coroutine fewer to make, start and
    await per statement.
    """
    async def query(self: Any, sql: Any, unbuffered: bool = False) -> Any:
        record: Tracked | None = self.__dict__.get(ATTRIBUTE)
        if record is None or record.connecting:
            return await original(self, sql, unbuffered)
        record.busy = True      # in flight before the state is read (see _statement)
        try:
            try:
                agent = registry._runtime
                if agent is not None:
                    state = agent.state
                    if state.epoch != record.epoch or state.locks:
                        await _at_boundary(agent, self, record, sql)
                    if agent.state.faults:
                        await _chaos_statement(agent, self, record)
                result = await original(self, sql, unbuffered)
            except (TransactionInterruptedError, LockTimeoutError):
                raise
            except Exception as exc:
                return await _on_error(original, self, record, (self, sql, unbuffered), sql,
                                       True, exc)
            # _autocommit_off: the driver's own setting, else the last OK packet's bits
            if getattr(self, "autocommit_mode", None) is False or \
                    not (int(getattr(self, "server_status", 0) or 0) & AUTOCOMMIT):
                try:
                    note(record, sql)
                except Exception as fault:      # fail-open: the statement succeeded
                    counters.record_fault("aiomysql.note", fault)
            return result
        finally:
            record.busy = False
    return query


def _make_begin(original: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """``Connection.begin``: opens a transaction, so held while locked and moved first."""
    async def begin(self: Any) -> Any:
        result = await _statement(original, self, (self,), b"BEGIN", True, False)
        record = tracked(self)
        if record is not None:
            record.tx = True
        return result
    return begin


def _make_end(original: Callable[..., Awaitable[Any]], commits: bool) -> Callable[..., Any]:
    """``commit``/``rollback``: the transaction is over (a lost COMMIT is never
    replayed: it may have committed)."""
    async def end(self: Any) -> Any:
        try:
            if commits:
                return await _statement(original, self, (self,), b"COMMIT", False, False)
            return await original(self)
        finally:
            record = tracked(self)
            if record is not None:
                record.tx = False
    return end


def _make_commit(original: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    return _make_end(original, True)


def _make_rollback(original: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    return _make_end(original, False)


def seams(module: str, connect: str) -> tuple[Target, ...]:
    """The targets on ``module``'s ``Connection``: ``connect`` (the method that opens the
    connection: aiomysql's ``_connect``, asyncmy's ``connect``), ``query``, ``begin``,
    ``commit`` and ``rollback``."""
    return (
        Target(module, f"Connection.{connect}", _make_connect, method=True),
        Target(module, "Connection.query", _make_query, method=True),
        Target(module, "Connection.begin", _make_begin, method=True),
        Target(module, "Connection.commit", _make_commit, method=True),
        Target(module, "Connection.rollback", _make_rollback, method=True),
    )


class AsyncMySQLIntegration(Integration):
    """Routing and hot switching for an asyncio MySQL driver of aiomysql's shape (the
    subclasses name the driver and its seams)."""

    def _connections(self) -> list[tuple[Any, Tracked]]:
        """The tracked connections of this integration's driver (aiomysql and asyncmy
        share the tracker)."""
        return [(c, r) for c, r in TRACKER.connections()
                if type(c).__module__.partition(".")[0] == self.distribution]

    def abandon(self, resource: str, address: tuple[str, int]) -> int:
        """Abort, in its own event loop, the transport of every connection with a
        statement in flight on ``address``: the awaiting task gets aiomysql's "lost
        connection" at once instead of its read timeout."""
        cut = 0
        for conn, record in self._connections():
            transport = _transport(conn)
            if record.resource.name != resource or transport is None or not record.busy \
                    or (conn._host, conn._port) != address or record.connecting:
                continue
            loop = getattr(conn, "_loop", None)
            with contextlib.suppress(Exception):
                if loop is not None and not loop.is_closed():
                    loop.call_soon_threadsafe(transport.abort)
                    cut += 1
        return cut

    def in_flight(self) -> dict[str, int]:
        """Connections inside a transaction or a running statement, per resource."""
        counts: dict[str, int] = {}
        for conn, record in self._connections():
            if record.busy or (in_transaction(conn, record) and _transport(conn) is not None):
                counts[record.resource.name] = counts.get(record.resource.name, 0) + 1
        return counts
