"""pymysql: route connections to the current primary and move them at transaction boundaries.

Seams (all on ``pymysql.connections.Connection``):

- ``connect``: called by ``__init__`` and on every reconnect, after ``host``/``port`` are
  set and before the socket opens. Rewriting them there routes the connection to its
  resource's current primary.
- ``query`` (every cursor statement) and ``begin``: when the control state has changed
  since the connection last looked and the server says no transaction is open
  (``SERVER_STATUS_IN_TRANS`` of the last reply), this is a transaction boundary: the
  statement waits while the resource is locked (:mod:`resil.gate`), and the connection
  reconnects to the new primary if the primary moved (or, if it did not, is checked
  with a ping, since a rolled-back switch may have cut it). The connection object stays
  the same object; ``connect()`` restores everything its arguments set (database,
  charset, sql_mode, init_command, autocommit), and ``select_db()`` is remembered.
- ``autocommit``: ``autocommit(False)`` starts a transaction (Django's ``atomic()``,
  SQLAlchemy's pool): a boundary like ``begin``. It is sent outside ``query``; when a
  switch cut the connection, it is sent again on a new one (nothing was open).
- Whether a transaction is open: the server's ``SERVER_STATUS_IN_TRANS``, which PyMySQL
  refreshes only from OK packets — so also resil's own record: with autocommit off, a
  statement that writes or locks (``SELECT ... FOR UPDATE``, ``INSERT ... RETURNING``
  return rows, not an OK packet) opens one, until ``commit``, ``rollback`` or a
  ``COMMIT``/``ROLLBACK`` statement. An open transaction is never moved.
- ``query``, ``begin``, ``commit`` and ``autocommit``: when a statement fails because a
  switch fenced or cut the old primary, the error is translated. Inside a transaction:
  reconnect and raise :class:`~resil.errors.TransactionInterruptedError`. In autocommit
  mode: replay once, but only when provably safe — the server refused it as read-only
  (not executed), or it is a read-only statement (:mod:`resil.sql`) whose connection was
  lost.

What to do at a boundary and after an error is decided in :mod:`resil.switching`, the
driver-neutral hot-switch protocol; this module only reads PyMySQL's state (status bits,
error numbers, ``host``/``port``) into its questions and applies the answers.

Unix-socket connections are local by definition and never touched. With no control
state change since a connection's last statement, the added cost is a dictionary lookup,
an epoch comparison and two attribute writes per statement: :mod:`resil.switching` is
asked only when the epoch changed or something is locked.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from types import MethodType
from typing import TYPE_CHECKING, Any

from .. import _log, counters, registry, spans, switching
from ..gate import must_hold
from ..sql import Access, classify
from ..switching import AfterError, Boundary
from ..topology import Endpoint, address
from . import _pymysql_reads as _reads
from ._mysql import (
    AUTOCOMMIT,
    IN_TRANS,
    NO_BACKSLASH_ESCAPES,
    act_after_error,
    alive,
    hold_for_failover,
    in_transaction,
    kind,
    note,
    readable_now,
    server_status,
    unreachable,
)
from ._spare import AFTER_MARK_TIMEOUT, CONNECT_TIMEOUT, PREPARE_MAX, PREPARED, Spare
from ._tracking import ATTRIBUTE, Tracked, Tracker, endpoint_of, tracked
from .base import Integration, Target, fail_open

if TYPE_CHECKING:
    from ..runtime import Runtime
    from ..topology import Resource

log = _log.get("resil.integrations")
TRACKER = Tracker("mysql")


def _access(sql: Any, status: int) -> Access:
    return classify(sql, no_backslash_escapes=bool(status & NO_BACKSLASH_ESCAPES))


# --------------------------------------------------------------------------- connect

def _route(conn: Any) -> Tracked | None:
    if getattr(conn, "unix_socket", None):
        return None
    record = TRACKER.route(conn)
    if record is not None:
        _bound_timeouts(conn, record)
        if record.resource.reads == "local":
            _reads.prepare(conn, record)
    return record


def _bound_timeouts(conn: Any, record: Tracked) -> None:
    """No application thread waits on a dead or frozen primary without a bound."""
    resource = record.resource
    if conn.connect_timeout is None or conn.connect_timeout > resource.connect_timeout:
        conn.connect_timeout = resource.connect_timeout
    if resource.io_timeout:
        if conn._read_timeout is None:
            conn._read_timeout = resource.io_timeout
        if conn._write_timeout is None:
            conn._write_timeout = resource.io_timeout


def _always() -> bool:
    return True


def _wait_if_locked(conn: Any, record: Tracked) -> None:
    """A new connection while a switch or failover has the resource locked: the primary
    it would reach is being replaced (or is dead). Wait for the new one, then route."""
    runtime = registry.runtime()
    if runtime is not None and switching.hold_if_locked(runtime, record.resource, _always):
        TRACKER.route(conn)


def _connect(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> Any:
    record = fail_open("pymysql.connect", _route, instance)
    if record is None:
        return wrapped(*args, **kwargs)
    agent = registry.runtime()
    faulty = None
    if agent is not None:   # what is rare (a lock, faults, a witness) is asked for first
        if agent.state.locks:
            fail_open("pymysql.connect", _wait_if_locked, instance, record)
        if agent.state.faults:
            faulty = fail_open("pymysql.chaos", _chaos_connect, agent, instance, record)
    record.connecting = True    # commands sent by connect() itself are not boundaries
    try:
        try:
            if faulty is not None:
                result = _redirected(wrapped, instance, args, kwargs, faulty)
            else:
                result = _handshake(wrapped, instance, args, kwargs)
        except Exception as exc:
            counters.count(f"connect_failures:{instance.host}:{instance.port}")
            if not unreachable(exc):
                raise
            fail_open("pymysql.witness", _witness, instance, record, False)
            return _hold_for_failover(wrapped, instance, record, args, kwargs, exc)
        if agent is not None and record.resource.name in agent.noted_unreachable:
            fail_open("pymysql.witness", _witness, instance, record, True)
        return result
    finally:
        record.connecting = False


def _make_connect(original: Callable[..., Any]) -> Callable[..., Any]:
    """``Connection.connect`` (every connect, and every reconnect): a plain method, as
    wrapt's dispatch would cost each connect ~0.5 µs more."""
    def connect(self: Any, *args: Any, **kwargs: Any) -> Any:
        return _connect(MethodType(original, self), self, args, kwargs)
    return connect


def _handshake(wrapped: Callable[..., Any], conn: Any, args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> Any:
    """One connect attempt, with the server's greeting and the login bounded by the
    connect timeout. PyMySQL waits for them as long as its *read* timeout (30 s with
    resil's ``io_timeout``, for ever without): a frozen server's kernel still accepts
    the TCP connection, so a connect to it would outlast its own timeout by far. The
    application's read timeout applies again from the first statement.

    The write timeout is bounded alike for the handshake: PyMySQL sets the socket's
    timeout again (a syscall) whenever it turns from writing to reading with another
    timeout, which would cost the connect one per packet of the login.

    Then, for ``reads = "local"``, the session's read-your-writes set-up
    (:func:`resil.integrations._pymysql_reads.connected`; a fault of its own leaves the
    connection as PyMySQL made it)."""
    read = getattr(conn, "_read_timeout", None)
    bound = getattr(conn, "connect_timeout", None)
    if not bound or (read is not None and read <= bound):
        result = wrapped(*args, **kwargs)
    else:
        write = getattr(conn, "_write_timeout", None)
        conn._read_timeout = conn._write_timeout = bound
        try:
            result = wrapped(*args, **kwargs)
        finally:
            conn._read_timeout, conn._write_timeout = read, write
        sock = getattr(conn, "_sock", None)
        if sock is not None:        # PyMySQL < 2 sets the socket's timeout only here
            try:
                sock.settimeout(read)
            except OSError:
                pass
            conn._current_timeout = read
    record: Tracked | None = conn.__dict__.get(ATTRIBUTE)
    if record is not None and record.local is not None:
        fail_open("pymysql.reads", _reads.connected, conn, record)
    return result


def _chaos_connect(agent: Runtime, conn: Any, record: Tracked) -> tuple[str, int] | None:
    """Where a connect that a chaos fault fails goes instead (:mod:`resil.chaos`)."""
    from .. import chaos
    return chaos.connect_fault(agent, record.resource, endpoint_of(record, conn), "mysql")


def _redirected(wrapped: Callable[..., Any], conn: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any], faulty: tuple[str, int]) -> Any:
    """The connect sent to a chaos socket; the connection keeps its real address."""
    real = conn.host, conn.port
    conn.host, conn.port = faulty
    try:
        return _handshake(wrapped, conn, args, kwargs)
    finally:
        conn.host, conn.port = real


def _chaos_statement(agent: Runtime, conn: Any, record: Tracked) -> None:
    """Chaos faults on a statement about to be sent: wait their latency; when one fails
    it, cut the connection (refused, reset; after the read timeout for a black hole)
    so that PyMySQL fails it as it fails a lost server, or raise a server error."""
    from .. import chaos
    effect = fail_open("pymysql.chaos", chaos.draw, agent.state, record.resource,
                       endpoint_of(record, conn), agent.config.unit)
    if effect is None:
        return
    chaos.sleep(effect.delay)
    if effect.kind == "error":
        from pymysql.err import raise_mysql_exception  # type: ignore[import-untyped]
        raise_mysql_exception(b"\xff" + chaos.MYSQL_STATEMENT_ERROR.to_bytes(2, "little")
                              + b"#HY000Unknown error (injected by resil chaos)")
    if effect.kind == "timeout":
        chaos.sleep(chaos.black_hole_wait(conn._read_timeout, record.resource))
    if effect.kind:
        chaos.cut(getattr(conn, "_sock", None))


def _witness(conn: Any, record: Tracked, reached: bool) -> None:
    """Tell the agent whether this connect reached its server (heartbeat witnesses)."""
    runtime = registry.runtime()
    if runtime is not None:
        report = runtime.reachable if reached else runtime.unreachable
        report(record.resource.name, address(conn.host, conn.port))


def _hold_for_failover(wrapped: Callable[..., Any], conn: Any, record: Tracked,
                       args: tuple[Any, ...], kwargs: dict[str, Any],
                       failure: Exception) -> Any:
    """See :func:`resil.integrations._mysql.hold_for_failover`."""
    def attempt() -> Any:
        TRACKER.route(conn)         # the primary now, which may be a new one
        _bound_timeouts(conn, record)
        return _handshake(wrapped, conn, args, kwargs)

    return hold_for_failover(
        registry.runtime(), record, failure, attempt,
        lambda reached: fail_open("pymysql.witness", _witness, conn, record, reached))


def _reconnect(conn: Any, record: Tracked) -> None:
    """Close ``conn`` and open it again: ``connect`` routes it to the current primary."""
    started = spans.now_ns()
    with contextlib.suppress(Exception):
        conn.close()            # COM_QUIT if the socket still works; closes it anyway
    conn._result = None
    record.tx = False           # a new connection has no transaction
    conn.connect()              # driver errors (new primary unreachable) reach the app
    # The connection works now: resil's bookkeeping must not turn that into an error.
    fail_open("pymysql.move", _moved, conn, record, started)


def _moved(conn: Any, record: Tracked, started: int) -> None:
    counters.count("mysql_connections_moved")
    spans.span("resil.move", started, spans.now_ns(), {
        "resil.resource": record.resource.name, "resil.epoch": record.epoch,
        "resil.endpoint": f"{conn.host}:{conn.port}",
        "resil.endpoint.unit": getattr(endpoint_of(record, conn), "unit", "")})
    log.debug("resil: mysql connection moved to %s:%s (%s, epoch %d)", conn.host, conn.port,
              record.resource.name, record.epoch)


# --------------------------------------------------------------------------- prewarm

#: Longest wait for a spare connection's handshake with a switch's target.
SPARE_CONNECT_TIMEOUT = CONNECT_TIMEOUT


def _spare_to(conn: Any, target: Endpoint, after: Callable[[], object] | None = None) -> Spare:
    """A spare (:mod:`resil.integrations._spare`) for ``conn``: a connection to
    ``target`` with the same arguments (user, database, charset, sql_mode,
    init_command, autocommit)."""
    spare = _reads.copy_to(conn, target.host, target.port)
    return Spare(spare, _open_spare, _close_spare, "mysql_spare_failures", after)


#: What a connect sets up from a PyMySQL connection's attributes, and what the
#: application can change afterwards (``select_db``, ``set_character_set``,
#: ``autocommit``): a spare made before such a change is not taken.
_SESSION = ("user", "password", "db", "charset", "collation", "encoding", "sql_mode",
            "init_command", "autocommit_mode", "client_flag")


def _session(conn: Any) -> tuple[Any, ...]:
    # A connect turns a str database into bytes: compared as text.
    return tuple(v.decode("utf-8", "replace") if isinstance(v := getattr(conn, name, None),
                                                            bytes) else v
                 for name in _SESSION)


def _open_spare(spare: Any) -> None:
    read = spare._read_timeout
    spare.connect_timeout = min(spare.connect_timeout or SPARE_CONNECT_TIMEOUT,
                                SPARE_CONNECT_TIMEOUT)
    spare._read_timeout = spare.connect_timeout     # the greeting and login too
    spare.connect()
    if spare.client_flag & _reads.SESSION_TRACK and "MariaDB" in str(spare.server_version):
        # reads = "local": as _reads.connected() does
        spare._execute_command(_reads.COM_QUERY, _reads.TRACK_LAST_GTID)
        spare._read_ok_packet()
    spare._read_timeout = read                      # the application's, from now on
    with contextlib.suppress(Exception):
        spare._sock.settimeout(read)


def _close_spare(spare: Any) -> None:
    spare.close()


def _spare_for(runtime: Runtime, conn: Any, record: Tracked, sql: Any) -> Spare | None:
    """A spare connection for a statement about to be held by a planned switch's lock;
    None when nothing is locked, the lock names no target (a failover's), the statement
    would not be held, or ``conn`` is there already."""
    resource = record.resource
    lock = runtime.current_state().locks.get(resource.name)
    target = resource.endpoint_in(lock.target) if lock is not None and lock.target else None
    if target is None or (conn.host, conn.port) == (target.host, target.port):
        return None
    status = server_status(conn)
    if not must_hold(_access(sql, status), bool(status & AUTOCOMMIT)):
        return None
    prepared = PREPARED.take(resource.name, conn, (target.host, target.port))
    if prepared is not None:
        if _session(prepared.conn) == _session(conn):
            return prepared
        prepared.drop()         # conn's session changed since: a spare of it as it is now
    epoch = runtime.current_state().epoch
    return _spare_to(conn, target, lambda: runtime.wait_marked(resource.name, epoch,
                                                                AFTER_MARK_TIMEOUT))


def _adopt(runtime: Runtime, conn: Any, record: Tracked, spare: Spare) -> bool:
    """Move ``conn`` onto the spare when the primary is now where the spare goes and it
    is connected: the same object, the spare's socket and session. False (nothing done,
    the spare dropped) otherwise."""
    taken = spare.take_for(runtime, record.resource)
    if taken is None:
        return False
    ready, state = taken
    started = spans.now_ns()
    with contextlib.suppress(Exception):
        conn.close()
    conn.__dict__.update({k: v for k, v in vars(ready).items() if k != ATTRIBUTE})
    # The socket is conn's now: the spare object's __del__ (PyMySQL closes its socket
    # there) must not reach it.
    ready._sock = ready._rfile = None
    conn._result = None
    record.tx = False
    record.epoch = state.epoch
    counters.count("mysql_spares_taken")
    if record.local is not None:
        fail_open("pymysql.reads", _reads.adopted, conn, record)
    fail_open("pymysql.move", _moved, conn, record, started)
    return True


# --------------------------------------------------------------------------- questions

def _boundary(runtime: Runtime, conn: Any, record: Tracked, sql: Any) -> Boundary:
    """PyMySQL's state as :func:`resil.switching.at_boundary` asks for it."""
    status = server_status(conn)
    return switching.at_boundary(
        runtime, record, (conn.host, conn.port),
        in_transaction=record.tx or bool(status & IN_TRANS),
        must_hold=lambda: must_hold(_access(sql, status), bool(status & AUTOCOMMIT)))


def _after_error(conn: Any, record: Tracked, exc: BaseException, sql: Any, may_replay: bool,
                 repeatable: bool) -> AfterError:
    """PyMySQL's state as :func:`resil.switching.after_error` asks for it."""
    runtime = registry.runtime()
    if runtime is None:
        return AfterError.RAISE
    # pymysql updates server_status only on success: it still says whether the failed
    # statement ran inside a transaction.
    status = server_status(conn)
    return switching.after_error(
        runtime, record, kind(exc),
        in_transaction=in_transaction(conn, record) and not record.connecting,
        may_replay=may_replay,
        repeatable=lambda: repeatable or _access(sql, status) is Access.READ)


# --------------------------------------------------------------------------- wrappers

def _statement(original: Callable[..., Any], conn: Any, args: tuple[Any, ...],
               kwargs: dict[str, Any], sql: Any, boundary: bool, may_replay: bool,
               repeatable: bool = False) -> Any:
    """Run one application statement (``original(*args, **kwargs)``) under resil's care.

    ``boundary``: it may start a transaction (held while locked, moved to a new primary).
    ``may_replay``: after an error a switch caused, it may be sent again once, when the
    server refused it or it is ``repeatable`` (harmless twice) or a read.
    """
    record: Tracked | None = conn.__dict__.get(ATTRIBUTE)
    if record is None or record.connecting:
        return original(*args, **kwargs)
    # Counted as in flight *before* the control state is read: a switch that sees no
    # statement in flight after its lock cannot miss this one.
    record.busy = True
    try:
        if boundary:
            agent = registry.runtime()
            if agent is not None:
                state = agent.state
                if state.epoch != record.epoch or state.locks:
                    _at_boundary(agent, conn, record, sql)
            if not in_transaction(conn, record) and _closed_by_server(conn, record):
                _replace_dead(conn, record)
        return original(*args, **kwargs)
    except Exception as exc:
        return _on_error(original, conn, record, args, kwargs, sql, may_replay, repeatable,
                         exc)
    finally:
        record.busy = False


def _closed_by_server(conn: Any, record: Tracked) -> bool:
    """Whether an idle connection has something to read before anything was sent: the
    server closed it (a killed or restarted primary, a fence's KILL) or wrote an error
    to it. Not asked while the application left results of its own unread (an
    unbuffered cursor, more result sets): those are what is there. One ``poll`` with no
    wait, on a poll object kept per socket (under a
    microsecond); any fault of this check says "no"."""
    sock = getattr(conn, "_sock", None)
    if sock is None:
        return False
    pending = getattr(conn, "_result", None)
    if pending is not None and (getattr(pending, "unbuffered_active", False)
                                or getattr(pending, "has_next", False)):
        return False        # rows or result sets of its own still unread: PyMySQL reads them
    return readable_now(record, sock)


def _dead_fast(conn: Any, record: Tracked) -> bool:
    """``not in_transaction(conn, record) and _closed_by_server(conn, record)`` for a
    connection whose ``record.tx`` is false, with their calls inlined: with the socket's
    poll object already made (every statement after the first), one ``poll`` and no
    call of resil's own. Raises AttributeError where PyMySQL did not set an attribute
    (the caller then asks the functions, which read them with defaults)."""
    if conn.server_status & IN_TRANS:
        return False
    sock = conn._sock
    if sock is None:
        return False
    watch = record.watch
    if watch is None or watch[0] is not sock:
        return _closed_by_server(conn, record)      # makes the socket's poll object
    pending = conn._result
    if pending is not None and (pending.unbuffered_active or pending.has_next):
        return False        # rows or result sets of its own still unread
    try:
        return bool(watch[1].poll(0))
    except Exception:       # as readable_now: any fault of the check says "no"
        return False


def _replace_dead(conn: Any, record: Tracked) -> None:
    """The server closed this idle connection before the statement was sent: connect
    again (to the primary now, held while a failover is pending) and send it there, where
    it runs once. Without this, the statement fails with "server has gone away"
    although it never left."""
    counters.count("mysql_dead_connections_replaced")
    _reconnect(conn, record)


def _at_boundary(agent: Runtime, conn: Any, record: Tracked, sql: Any) -> None:
    """The control state changed, or something is locked: hold, move or check."""
    spare = fail_open("pymysql.spare", _spare_for, agent, conn, record, sql)
    try:
        boundary = fail_open("pymysql.boundary", _boundary, agent, conn, record, sql)
        if boundary is Boundary.MOVE and spare is not None \
                and fail_open("pymysql.adopt", _adopt, agent, conn, record, spare):
            spare = None
        elif boundary is Boundary.MOVE or (boundary is Boundary.CHECK and not alive(conn)):
            _reconnect(conn, record)
    finally:
        # Busy again (a move left it idle, see switching.at_boundary): the statement
        # is about to be sent, to wherever the connection now is.
        record.busy = True
        if spare is not None:       # not taken: rolled back, timed out, or not ready
            spare.drop()


def _on_error(original: Callable[..., Any], conn: Any, record: Tracked,
              args: tuple[Any, ...], kwargs: dict[str, Any], sql: Any, may_replay: bool,
              repeatable: bool, exc: Exception) -> Any:
    action = fail_open("pymysql.error", _after_error, conn, record, exc, sql, may_replay,
                       repeatable)
    act_after_error(action, record, exc, lambda: _reconnect(conn, record))
    return original(*args, **kwargs)        # once; its errors are the app's


def _make_query(original: Callable[..., Any]) -> Callable[..., Any]:
    """``Connection.query``, every cursor statement: the hot path, a plain method.

    The same as ``_statement(..., boundary=True, may_replay=True)``, inlined: this runs
    for every statement the application sends (about 200 ns here with nothing changed).
    """
    def query(self: Any, sql: Any, unbuffered: bool = False) -> Any:
        record: Tracked | None = self.__dict__.get(ATTRIBUTE)
        if record is None or record.connecting:
            return original(self, sql, unbuffered)
        if record.local is not None:
            try:
                done = _reads.read(self, record, sql, original, unbuffered)
            except Exception as fault:  # fail-open: the statement goes to the primary
                counters.record_fault("pymysql.reads", fault)
                done = _reads.MISS
            if done is not _reads.MISS:
                return done
        record.busy = True      # before the state is read: see _statement
        try:
            try:
                agent = registry._runtime
                faults: tuple[Any, ...] = ()
                if agent is not None:
                    state = agent.state
                    if state.epoch != record.epoch or state.locks:
                        _at_boundary(agent, self, record, sql)
                    faults = state.faults
                if not record.tx:
                    try:
                        dead = _dead_fast(self, record)
                    except Exception:   # an attribute PyMySQL did not set: the long way
                        dead = not in_transaction(self, record) \
                            and _closed_by_server(self, record)
                    if dead:
                        _replace_dead(self, record)
                if faults:
                    _chaos_statement(agent, self, record)   # type: ignore[arg-type]
                result = original(self, sql, unbuffered)
            except Exception as exc:
                return _on_error(original, self, record, (self, sql, unbuffered), {}, sql,
                                 True, False, exc)
            # The statement succeeded: from here on a fault of resil's own is counted,
            # never raised (nor taken for the statement's failure and replayed). The
            # guard is inlined (free in CPython 3.11+ when nothing raises); the record
            # is still busy, so a switch cannot miss the transaction it notes.
            if not self.autocommit_mode:
                try:
                    note(record, sql)
                except Exception as fault:  # fail-open, as resil.guard.fail_open
                    counters.record_fault("pymysql.note", fault)
            if record.local is not None:
                try:
                    _reads.after_primary(self, record, sql)
                except Exception as fault:
                    counters.record_fault("pymysql.reads", fault)
            return result
        finally:
            record.busy = False
    return query


def _begin(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
           kwargs: dict[str, Any]) -> Any:
    # BEGIN opens a transaction: held while locked, and it must start on the primary.
    result = _statement(wrapped, instance, args, kwargs, b"BEGIN", True, False)
    record = tracked(instance)
    if record is not None:
        record.tx = True
    return result


def _ended(instance: Any) -> None:
    record = tracked(instance)
    if record is not None:
        record.tx = False


def _commit(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
            kwargs: dict[str, Any]) -> Any:
    # A COMMIT whose connection was lost may or may not have committed: never replayed,
    # and translated only when the server said the connection was killed or read-only.
    try:
        return _statement(wrapped, instance, args, kwargs, b"COMMIT", False, False)
    finally:
        _ended(instance)        # committed, or the connection (and its transaction) is gone


def _rollback(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> Any:
    try:
        return wrapped(*args, **kwargs)
    finally:
        _ended(instance)


def _autocommit(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
    """``autocommit(False)`` opens a transaction: a boundary (held while locked, moved to
    a new primary). ``autocommit(True)`` commits an open one, like ``COMMIT``."""
    record = tracked(instance)
    if record is None or record.connecting:
        return wrapped(*args, **kwargs)
    value = bool(args[0] if args else kwargs.get("value"))
    if value:
        try:
            return _statement(wrapped, instance, args, kwargs, b"COMMIT", False, False)
        finally:
            _ended(instance)
    # A session setting: when a switch cut the connection while nothing was open, it is
    # sent again on a new one (repeatable); with a transaction open it is interrupted.
    was_open = in_transaction(instance, record)
    return _statement(wrapped, instance, args, kwargs, b"BEGIN", not was_open, not was_open,
                      repeatable=True)


def _make_autocommit(original: Callable[..., Any]) -> Callable[..., Any]:
    """``Connection.autocommit``, which every connect calls: a plain method."""
    def autocommit(self: Any, *args: Any, **kwargs: Any) -> Any:
        record: Tracked | None = self.__dict__.get(ATTRIBUTE)
        if record is None or record.connecting:
            return original(self, *args, **kwargs)
        return _autocommit(MethodType(original, self), self, args, kwargs)
    return autocommit


def _select_db(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> Any:
    result = wrapped(*args, **kwargs)
    if tracked(instance) is not None:
        instance.db = args[0] if args else kwargs.get("db")   # restored on a move
    return result


def _make_read_ok(original: Callable[..., Any]) -> Callable[..., Any]:
    """``Connection._read_ok_packet`` (``commit()``, ``autocommit()``, ``select_db()``):
    the GTID a ``reads = "local"`` connection's commit reports."""
    def read_ok_packet(self: Any) -> Any:
        ok = original(self)
        record: Tracked | None = self.__dict__.get(ATTRIBUTE)
        if record is not None and record.local is not None:
            fail_open("pymysql.reads", _reads.after_ok, self, ok)
        return ok
    return read_ok_packet


def _make_close(original: Callable[..., Any]) -> Callable[..., Any]:
    """``Connection.close``: a ``reads = "local"`` connection's companion is closed
    with it (a plain method: every connect of a short-lived connection pays it)."""
    def close(self: Any) -> Any:
        try:
            return original(self)
        finally:
            record: Tracked | None = self.__dict__.get(ATTRIBUTE)
            if record is not None and record.local is not None:
                fail_open("pymysql.reads", _reads.close, self)
    return close


class PyMySQLIntegration(Integration):
    """Routing and hot switching for PyMySQL."""

    name = "pymysql"
    distribution = "PyMySQL"
    supported = ((1, 0), (2,))
    targets = (
        Target("pymysql.connections", "Connection.connect", _make_connect, method=True),
        Target("pymysql.connections", "Connection.query", _make_query, method=True),
        Target("pymysql.connections", "Connection.begin", _begin),
        Target("pymysql.connections", "Connection.commit", _commit),
        Target("pymysql.connections", "Connection.rollback", _rollback),
        Target("pymysql.connections", "Connection.autocommit", _make_autocommit,
               method=True),
        Target("pymysql.connections", "Connection.select_db", _select_db),
        Target("pymysql.connections", "Connection._read_ok_packet", _make_read_ok,
               method=True),
        Target("pymysql.connections", "Connection.close", _make_close, method=True),
    )

    def abandon(self, resource: str, address: tuple[str, int]) -> int:
        """Shut the socket of every connection with a statement in flight on ``address``:
        the waiting thread gets PyMySQL's "lost connection" at once, which resil raises
        as it is (autocommit: the write's outcome is unknown) or as
        :class:`~resil.errors.TransactionInterruptedError`. A connect still waiting for
        the server's greeting there is cut too: nothing was sent, and the connect is
        held and made again on the new primary (not counted). Idle connections are left
        to move at their next statement."""
        cut = 0
        for conn, record in TRACKER.connections():
            sock = conn._sock
            if record.resource.name != resource or sock is None \
                    or (conn.host, conn.port) != address:
                continue
            if record.connecting:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                continue
            if not record.busy:
                continue
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                cut += 1
        return cut

    def prepare(self, resource: Resource, target: Endpoint) -> int:
        """A spare to ``target`` for each open connection of ``resource`` pointed
        elsewhere (at most :data:`~resil.integrations._spare.PREPARE_MAX`): a statement
        the lock holds on that connection takes its own (see :func:`_spare_for`)."""
        opened = 0
        for conn, record in TRACKER.connections():
            if opened >= PREPARE_MAX:
                break
            if record.resource.name != resource.name or conn._sock is None \
                    or record.connecting or (conn.host, conn.port) == (target.host, target.port):
                continue
            PREPARED.add(resource.name, conn, _spare_to(conn, target))
            opened += 1
        return opened

    def in_flight(self) -> dict[str, int]:
        """Connections inside a transaction or a running statement, per resource."""
        counts: dict[str, int] = {}
        for conn, record in TRACKER.connections():
            if record.busy or (in_transaction(conn, record) and conn._sock is not None):
                counts[record.resource.name] = counts.get(record.resource.name, 0) + 1
        return counts
