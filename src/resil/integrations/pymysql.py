"""pymysql: route connections to the current primary and move them at transaction boundaries.

Seams (all on ``pymysql.connections.Connection``):

- ``connect``: called by ``__init__`` and on every reconnect, after ``host``/``port`` are
  set and before the socket opens. Rewriting them there routes the connection to its
  resource's current primary.
- ``_execute_command``: every command the client sends (queries, ``BEGIN``, ``COMMIT``,
  ``autocommit()``, ``ping()``, ``select_db()``) passes here. When the control state has
  changed since the connection last looked and the server says no transaction is open
  (``SERVER_STATUS_IN_TRANS`` of the last reply), this is a transaction boundary: the
  command waits while the resource is locked (:mod:`resil.gate`), and the connection
  reconnects to the new primary if the primary moved. The connection object stays the
  same object; ``connect()`` restores everything its arguments set (database, charset,
  sql_mode, init_command, autocommit).
- ``query`` and ``commit``: when a statement fails because a switch fenced or cut the
  old primary, the error is translated. Inside a transaction: reconnect and raise
  :class:`~resil.errors.TransactionInterruptedError`. In autocommit mode: replay once,
  but only when provably safe — the server refused it as read-only (not executed), or it
  is a read-only statement (:mod:`resil.sql`) whose connection was lost.

Unix-socket connections are local by definition and never touched. With no control
state change since a connection's last command, the added cost is one attribute lookup
and one epoch comparison per command.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from .. import registry
from ..errors import TransactionInterruptedError
from ..gate import must_hold
from ..sql import Access, classify
from ._tracking import Tracked, Tracker, tracked
from .base import Integration, Target, fail_open

log = logging.getLogger("resil.integrations")
TRACKER = Tracker("mysql")

_IN_TRANS = 0x0001          # SERVER_STATUS_IN_TRANS
_AUTOCOMMIT = 0x0002        # SERVER_STATUS_AUTOCOMMIT
_COM_QUERY = 0x03
_SESSION_COMMANDS = frozenset({0x01, 0x02, 0x0E})    # COM_QUIT, COM_INIT_DB, COM_PING
#: The server refused the statement because it is read-only: it was not executed.
_REFUSED_READ_ONLY = frozenset({1290, 1836})
#: The connection was cut (killed by a fence, server gone, network).
_CONNECTION_LOST = frozenset({2006, 2013, 2055, 1927, 1053, 0})


def _server_status(conn: Any) -> int:
    return int(getattr(conn, "server_status", 0) or 0)


def _access(command: int, sql: Any) -> Access:
    if command == _COM_QUERY:
        return classify(sql)
    return Access.SESSION if command in _SESSION_COMMANDS else Access.WRITE


# --------------------------------------------------------------------------- connect

def _route(conn: Any) -> Tracked | None:
    if getattr(conn, "unix_socket", None):
        return None
    return TRACKER.route(conn)


def _connect(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> Any:
    record = fail_open("pymysql.connect", _route, instance)
    if record is None:
        return wrapped(*args, **kwargs)
    record.connecting = True    # commands sent by connect() itself are not boundaries
    try:
        return wrapped(*args, **kwargs)
    finally:
        record.connecting = False


def _reconnect(conn: Any, record: Tracked) -> None:
    """Close ``conn`` and open it again: ``connect`` routes it to the current primary."""
    with contextlib.suppress(Exception):
        conn.close()            # COM_QUIT if the socket still works; closes it anyway
    conn._result = None
    conn.connect()              # driver errors (new primary unreachable) reach the app
    registry.count("mysql_connections_moved")
    log.debug("resil: mysql connection moved to %s:%s (%s, epoch %d)", conn.host, conn.port,
              record.resource.name, record.epoch)


# --------------------------------------------------------------------------- boundary

def _boundary(conn: Any, args: tuple[Any, ...]) -> tuple[Tracked, bool] | None:
    """Hold if needed; say whether the connection must move (True) or be checked (False).

    A check is needed when the control state changed but the primary did not: a switch
    that rolled back may have fenced the primary and cut this connection meanwhile.
    """
    record = tracked(conn)
    if record is None or record.connecting:
        return None
    router = registry.router()
    if router is None:
        return None
    state = router.state()
    name = record.resource.name
    if state.epoch == record.epoch and name not in state.locks:
        return None                             # the hot path: nothing changed
    status = _server_status(conn)
    if status & _IN_TRANS:
        return None                             # finish where it started
    if name in state.locks:
        command, sql = args[0], args[1] if len(args) > 1 else b""
        if must_hold(_access(command, sql), bool(status & _AUTOCOMMIT)):
            agent = registry.agent()
            if agent is not None:
                record.busy = False     # a held statement is not in flight
                try:
                    state = agent.gate.hold(name, record.resource.lock_timeout)
                finally:
                    record.busy = record.in_statement
    endpoint = router.primary_of(record.resource, state)
    if endpoint is None or (conn.host, conn.port) == (endpoint.host, endpoint.port):
        if name in state.locks:
            return None                         # a read while locked: runs where it is
        changed = state.epoch != record.epoch
        record.epoch = state.epoch
        return (record, False) if changed else None
    return record, True


def _execute_command(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> Any:
    record = tracked(instance)
    if record is not None and record.in_statement:
        # Counted as in flight *before* the boundary reads the control state: a switch
        # that sees no in-flight statement after its lock cannot miss this one.
        record.busy = True
    action = fail_open("pymysql.boundary", _boundary, instance, args)
    if action is not None:
        record, move = action
        if move or not _alive(instance, record):
            _reconnect(instance, record)
    return wrapped(*args, **kwargs)


def _alive(conn: Any, record: Tracked) -> bool:
    """One COM_PING, not itself a boundary."""
    record.connecting = True
    try:
        conn.ping()
        return True
    except Exception:
        return False
    finally:
        record.connecting = False


# --------------------------------------------------------------------------- errors

def _switching(record: Tracked) -> bool:
    router = registry.router()
    if router is None:
        return False
    state = router.state()
    return state.epoch != record.epoch or record.resource.name in state.locks


def _after_error(conn: Any, record: Tracked, in_transaction: bool, exc: BaseException,
                 sql: Any, may_replay: bool) -> str | None:
    """What to do about a failed statement: ``interrupted``, ``replay`` or None (raise)."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else -1
    if code not in _REFUSED_READ_ONLY and code not in _CONNECTION_LOST:
        return None
    if not _switching(record) and code not in _REFUSED_READ_ONLY:
        return None
    if in_transaction:
        return "interrupted"
    if not may_replay:
        return None
    if code in _REFUSED_READ_ONLY or classify(sql) is Access.READ:
        agent = registry.agent()
        if agent is not None:
            agent.refresh()     # a demoted primary: make sure we see the newest state
        return "replay"
    return None


def _guarded_statement(wrapped: Callable[..., Any], conn: Any, args: tuple[Any, ...],
                       kwargs: dict[str, Any], sql: Any, may_replay: bool) -> Any:
    record = tracked(conn)
    if record is None:
        return wrapped(*args, **kwargs)
    in_transaction = bool(_server_status(conn) & _IN_TRANS)
    record.in_statement = True
    try:
        return wrapped(*args, **kwargs)
    except Exception as exc:
        action = fail_open("pymysql.error", _after_error, conn, record, in_transaction, exc,
                           sql, may_replay)
        if action is None:
            raise
        registry.count(f"mysql_{action}")
        if action == "interrupted":
            with contextlib.suppress(Exception):
                _reconnect(conn, record)
            raise TransactionInterruptedError(record.resource.name, exc) from exc
        log.info("resil: replaying a statement on %s after %r", record.resource.name, exc)
        _reconnect(conn, record)
        return wrapped(*args, **kwargs)         # once; its errors are the app's
    finally:
        record.in_statement = record.busy = False


def _query(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
           kwargs: dict[str, Any]) -> Any:
    sql = args[0] if args else kwargs.get("sql", b"")
    return _guarded_statement(wrapped, instance, args, kwargs, sql, may_replay=True)


def _commit(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
            kwargs: dict[str, Any]) -> Any:
    # A COMMIT whose connection was lost may or may not have committed: never replayed,
    # and translated only when the server said the connection was killed or read-only.
    return _guarded_statement(wrapped, instance, args, kwargs, b"COMMIT", may_replay=False)


def _select_db(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> Any:
    result = wrapped(*args, **kwargs)
    if tracked(instance) is not None:
        instance.db = args[0] if args else kwargs.get("db")   # restored on a move
    return result


class PyMySQLIntegration(Integration):
    """Routing and hot switching for PyMySQL."""

    name = "pymysql"
    distribution = "PyMySQL"
    supported = ((1, 0), (2,))
    targets = (
        Target("pymysql.connections", "Connection.connect", _connect),
        Target("pymysql.connections", "Connection._execute_command", _execute_command),
        Target("pymysql.connections", "Connection.query", _query),
        Target("pymysql.connections", "Connection.commit", _commit),
        Target("pymysql.connections", "Connection.select_db", _select_db),
    )

    def in_flight(self) -> dict[str, int]:
        """Connections inside a transaction or a running statement, per resource."""
        counts: dict[str, int] = {}
        for conn, record in TRACKER.connections():
            if record.busy or (_server_status(conn) & _IN_TRANS and conn._sock is not None):
                counts[record.resource.name] = counts.get(record.resource.name, 0) + 1
        return counts
