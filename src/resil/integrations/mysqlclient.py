"""mysqlclient (``MySQLdb``, Django's default MySQL driver): route connections to the
current primary and move them at transaction boundaries.

mysqlclient's connection is a C type (``MySQLdb._mysql.connection``) under a Python
class (``MySQLdb.connections.Connection``); the address is a C field set once, when
``__init__`` connects. The seams, all on the Python class:

- ``__init__``: when the address in its arguments names a resource, the connection goes
  to the resource's current primary instead (connect timeout bounded by the resource's);
  while the resource is locked, the connect waits for the switch to end; when the
  primary cannot be reached, it waits (at most ``failover_hold``) for a failover to
  publish a new one, as PyMySQL's does.
- ``query`` (every cursor statement) and ``autocommit(False)`` (Django's ``atomic()``):
  when the control state changed since the connection last looked, or something is
  locked, and no transaction is open, this is a transaction boundary, as for PyMySQL
  (:mod:`resil.switching`): a write (or anything with autocommit off) waits while the
  resource is locked, and the connection moves if the primary moved. A move closes the
  connection and runs ``__init__`` again on the same object with the arguments it was
  made with, so Django and pools keep it; its autocommit mode is restored. mysqlclient
  allocates a new internal lock at each ``__init__`` and never frees the old one: a
  move leaves a few dozen bytes behind.
- Whether a transaction is open: mysqlclient does not expose the server's status bits,
  so resil's own record decides: with autocommit off, any statement opens one (a read
  too: its snapshot and locks belong to the server it ran on) until ``commit``,
  ``rollback``, ``autocommit(True)`` or a ``COMMIT``/``ROLLBACK`` statement. An open
  transaction is never moved.
- After an error a switch caused: inside a transaction, the connection is moved and
  :class:`~resil.errors.TransactionInterruptedError` raised (nothing was committed); in
  autocommit mode the statement is sent once more, on the moved connection, when that
  is provably safe (refused as read-only, so not executed; or a read whose connection
  was lost).

Connections over a unix socket or a named pipe, and addresses read from an option file
(``read_default_file``), are left alone. Statements in flight and open transactions are
counted for a switch's drain; a statement still waiting on a demoted primary is cut
(its socket shut down, so it fails at once rather than at its read timeout). An idle
connection the server closed (a killed primary, a fence) is replaced before a statement
is sent on it, outside a transaction.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import counters, registry, spans, switching
from ..errors import LockTimeoutError, TransactionInterruptedError
from ..gate import must_hold
from ..sql import Access, classify
from ..switching import Boundary, ErrorKind
from ..topology import address
from ._mysql import (
    act_after_error,
    after_error,
    alive,
    hold_for_failover,
    kind,
    readable_now,
    unreachable,
)
from ._tracking import ATTRIBUTE, Tracked, Tracker, endpoint_at, reads_unsupported
from .base import Integration, Target, fail_open

if TYPE_CHECKING:
    from ..runtime import Runtime

#: Where a connection is (or is about to be) connected: (host, port). The C type keeps
#: its own copy of the address, which cannot be changed.
_AT = "_resil_at"
#: The arguments the connection was made with (positional ones named): a move runs
#: ``__init__`` again with them.
_ARGS = "_resil_args"

#: The connection's socket: (descriptor, inode), read once it connected (a statement in
#: flight holds mysqlclient's own lock, which ``fileno()`` needs). Forgotten when the
#: connection is closed or lost: the driver closes the socket then, and the number may
#: soon be another socket's (the inode tells them apart).
_FD = "_resil_fd"

#: Set when a statement lost the connection (the driver then closed its socket).
_LOST = "_resil_lost"

#: ``MySQLdb.connect``'s positional parameters, in order (mysqlclient's C signature).
_POSITIONAL = ("host", "user", "password", "database", "port", "unix_socket", "conv",
               "connect_timeout", "compress", "named_pipe", "init_command",
               "read_default_file", "read_default_group", "client_flag", "ssl",
               "ssl_mode", "local_infile", "read_timeout", "write_timeout", "charset")


def _at(conn: Any) -> tuple[str, int] | None:
    at: tuple[str, int] | None = conn.__dict__.get(_AT)
    return at


def _point(conn: Any, host: str, port: int) -> None:
    conn.__dict__[_AT] = (host, port)


TRACKER = Tracker("mysql", point=_point, at=_at)

_END = Access.END


# --------------------------------------------------------------------------- connect

def _named(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The arguments of ``MySQLdb.connect(*args, **kwargs)``, all by name (None when
    there are more positional ones than it takes, or a name is given twice)."""
    if len(args) > len(_POSITIONAL) or any(n in kwargs for n in _POSITIONAL[:len(args)]):
        return None
    return {**dict(zip(_POSITIONAL, args, strict=False)), **kwargs}


def _route(conn: Any, named: dict[str, Any]) -> Tracked | None:
    """Track ``conn`` and point it at its resource's primary, when ``named`` (the
    connect arguments) gives a TCP address that names a resource."""
    if named.get("unix_socket") or named.get("named_pipe") \
            or named.get("read_default_file") or named.get("read_default_group"):
        return None
    host = named.get("host")
    if not host or host == "localhost":     # mysqlclient: the local unix socket
        return None
    origin = (str(host), int(named.get("port") or 3306))
    record = TRACKER.route(conn, origin)
    if record is not None and record.resource.reads == "local":
        reads_unsupported(record, "mysqlclient")
    return record


def _arguments(conn: Any, record: Tracked, named: dict[str, Any]) -> dict[str, Any]:
    """``named`` pointed where the connection is routed, its waits bounded."""
    at = _at(conn) or record.origin
    routed = dict(named, host=at[0], port=at[1])
    resource = record.resource
    timeout = routed.get("connect_timeout")
    if not timeout or timeout > resource.connect_timeout:
        routed["connect_timeout"] = max(1, round(resource.connect_timeout))
    if resource.io_timeout:
        for name in ("read_timeout", "write_timeout"):
            if not routed.get(name):
                routed[name] = max(1, round(resource.io_timeout))
    return routed


def _always() -> bool:
    return True


def _wait_if_locked(conn: Any, record: Tracked, origin: tuple[str, int]) -> None:
    """A new connection while a switch or failover has the resource locked: wait for the
    new primary, then route to it."""
    runtime = registry.runtime()
    if runtime is not None and switching.hold_if_locked(runtime, record.resource, _always):
        TRACKER.route(conn, origin)


_INIT: Callable[..., Any] | None = None
"""The wrapped ``Connection.__init__``: a move runs it again."""


def _make_init(original: Callable[..., Any]) -> Callable[..., Any]:
    """``Connection.__init__``: route, and wait out a lock before connecting."""
    global _INIT

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        # Every connect runs this: resil's own faults are caught inline (as fail_open
        # does) rather than through a call each, and the rare paths are asked for first.
        try:
            named = kwargs if not args else _named(args, kwargs)
            record = None if named is None else _route(self, named)
        except Exception as fault:
            counters.record_fault("mysqlclient.connect", fault)
            record = None
        if record is None or named is None:
            original(self, *args, **kwargs)
            return
        attrs = self.__dict__
        attrs[_ARGS] = named
        attrs.pop(_FD, None)
        agent = registry.runtime()
        if agent is not None and agent.state.locks:
            fail_open("mysqlclient.connect", _wait_if_locked, self, record, record.origin)

        def attempt(faults: bool = True) -> None:
            try:
                routed = _arguments(self, record, named)
            except Exception as fault:
                counters.record_fault("mysqlclient.connect", fault)
                routed = named
            runtime = registry._runtime
            if faults and runtime is not None and runtime.state.faults:
                faulty = fail_open("mysqlclient.chaos", _chaos_connect, runtime, self, record)
                if faulty is not None:      # sent to a chaos socket; routed stays as it is
                    routed = dict(routed, host=faulty[0], port=faulty[1])
            original(self, **routed)

        record.connecting = True    # statements __init__ sends itself are not boundaries
        try:
            try:
                attempt()
            except Exception as exc:
                if not unreachable(exc):
                    raise
                fail_open("mysqlclient.witness", _witness, self, record, False)

                def again() -> None:
                    TRACKER.route(self, record.origin)  # the primary now: maybe a new one
                    attempt(faults=False)   # as PyMySQL's held retry: the real server

                hold_for_failover(registry.runtime(), record, exc, again, lambda reached:
                                  fail_open("mysqlclient.witness", _witness, self, record,
                                            reached))
            else:
                if agent is not None and record.resource.name in agent.noted_unreachable:
                    fail_open("mysqlclient.witness", _witness, self, record, True)
            attrs.pop(_LOST, None)
            try:
                fd = self.fileno()
                attrs[_FD] = (fd, os.fstat(fd).st_ino)
            except Exception:   # no socket to know: abandon() leaves this one alone
                pass
        finally:
            record.connecting = False

    _INIT = __init__
    return __init__


def _chaos_connect(runtime: Runtime, conn: Any, record: Tracked) -> tuple[str, int] | None:
    """Where a connect that a chaos fault fails goes instead (:mod:`resil.chaos`)."""
    from .. import chaos
    return chaos.connect_fault(runtime, record.resource,
                               endpoint_at(record, _at(conn) or record.origin), "mysql")


def _chaos_statement(runtime: Runtime, conn: Any, record: Tracked) -> None:
    """Chaos faults on a statement about to be sent, as for PyMySQL: wait their latency;
    when one fails it, raise a server error, or cut the connection (at once for refused
    and reset; after the read timeout for a black hole), so that mysqlclient fails it as
    it fails a lost server."""
    from .. import chaos
    effect = fail_open("mysqlclient.chaos", chaos.draw, runtime.state, record.resource,
                       endpoint_at(record, _at(conn) or record.origin), runtime.config.unit)
    if effect is None:
        return
    chaos.sleep(effect.delay)
    if effect.kind == "error":
        import MySQLdb  # type: ignore[import-untyped]
        raise MySQLdb.OperationalError(chaos.MYSQL_STATEMENT_ERROR,
                                       "Unknown error (injected by resil chaos)")
    if effect.kind == "timeout":
        timeout = conn.__dict__.get(_ARGS, {}).get("read_timeout") or None
        chaos.sleep(chaos.black_hole_wait(timeout, record.resource))
    if effect.kind:
        _shut_down(conn)


def _witness(conn: Any, record: Tracked, reached: bool) -> None:
    """Tell the agent whether this connect reached its server (heartbeat witnesses)."""
    runtime = registry.runtime()
    if runtime is not None:
        at = _at(conn) or record.origin
        report = runtime.reachable if reached else runtime.unreachable
        report(record.resource.name, address(*at))


def _reconnect(conn: Any, record: Tracked) -> None:
    """Close ``conn`` and run ``__init__`` on it again: routed to the current primary,
    with the arguments it was made with and its autocommit mode as it was."""
    started = spans.now_ns()
    autocommit: bool | None = None
    with contextlib.suppress(Exception):
        autocommit = bool(conn.get_autocommit())
    with contextlib.suppress(Exception):
        conn.close()            # (which forgets the descriptor)
    record.tx = False           # a new connection has no transaction
    init = _INIT or type(conn).__init__
    init(conn, **conn.__dict__[_ARGS])      # driver errors (primary unreachable) reach the app
    if autocommit is not None and bool(conn.get_autocommit()) != autocommit:
        _set_autocommit(conn, autocommit)
    fail_open("mysqlclient.move", _moved, conn, record, started)


def _set_autocommit(conn: Any, on: bool) -> None:
    """The C method itself: not a boundary of its own."""
    from MySQLdb import _mysql
    _mysql.connection.autocommit(conn, on)


def _moved(conn: Any, record: Tracked, started: int) -> None:
    counters.count("mysql_connections_moved")
    at = _at(conn) or record.origin
    spans.span("resil.move", started, spans.now_ns(), {
        "resil.resource": record.resource.name, "resil.epoch": record.epoch,
        "resil.endpoint": f"{at[0]}:{at[1]}"})


# --------------------------------------------------------------------------- statements

def _autocommit_on(conn: Any) -> bool:
    try:
        return bool(conn.get_autocommit())
    except Exception:
        return True


def _at_boundary(agent: Runtime, conn: Any, record: Tracked, sql: Any) -> None:
    """The control state changed, or something is locked: hold, move or check."""
    try:
        autocommit = _autocommit_on(conn)
        boundary = switching.at_boundary(
            agent, record, _at(conn) or record.origin,
            in_transaction=record.tx,
            must_hold=lambda: must_hold(classify(sql), autocommit))
    except LockTimeoutError:
        raise                           # the documented error: nothing was sent
    except Exception as exc:            # fail-open: the statement runs where it is
        counters.record_fault("mysqlclient.boundary", exc)
        return
    finally:
        record.busy = True              # about to be sent, wherever the connection is
    if boundary is Boundary.MOVE or (boundary is Boundary.CHECK and not alive(conn)):
        _reconnect(conn, record)


def _on_error(original: Callable[..., Any], conn: Any, record: Tracked,
              args: tuple[Any, ...], sql: Any, may_replay: bool, exc: Exception) -> Any:
    if kind(exc) is ErrorKind.CONNECTION_LOST:
        conn.__dict__.pop(_FD, None)    # the driver closed it: replaced before the next
        conn.__dict__[_LOST] = True     # statement (outside a transaction)
    action = fail_open("mysqlclient.error", after_error, conn, record, exc, sql, may_replay)
    act_after_error(action, record, exc, lambda: _reconnect(conn, record))
    return original(*args)          # once; its errors are the app's


def _closed_by_server(conn: Any, record: Tracked) -> bool:
    """Whether the idle connection has something to read before anything was sent: the
    server closed it (a killed or restarted primary, a fence's KILL). Then the statement
    goes on a new connection (to the primary now, held while a failover is pending),
    where it runs once, instead of failing with "server has gone away" although it never
    left. One ``poll`` with no wait, on a poll object kept per descriptor; any fault of
    this check says "no"."""
    socket_of = conn.__dict__.get(_FD)
    if socket_of is None:
        return False
    if not _open(conn):         # closed by the application: its error, not ours
        return False
    return readable_now(record, socket_of[0])


def _noted(conn: Any, record: Tracked, sql: Any) -> None:
    """After a statement ran: with autocommit off, a transaction is open until it ends."""
    if not conn.get_autocommit():
        record.tx = classify(sql) is not _END


def _statement(original: Callable[..., Any], conn: Any, args: tuple[Any, ...], sql: Any,
               may_replay: bool) -> Any:
    record: Tracked | None = conn.__dict__.get(ATTRIBUTE)
    if record is None or record.connecting:
        return original(*args)
    record.busy = True      # in flight before the state is read: a drain cannot miss it
    try:
        try:
            agent = registry._runtime
            if agent is not None:
                state = agent.state
                if state.epoch != record.epoch or state.locks:
                    _at_boundary(agent, conn, record, sql)
            # (mysqlclient keeps no status bits: resil's record alone says "transaction")
            if not record.tx and (
                    conn.__dict__.get(_LOST) and _open(conn) or _closed_by_server(conn, record)):
                counters.count("mysql_dead_connections_replaced")
                _reconnect(conn, record)
            if agent is not None and agent.state.faults:
                _chaos_statement(agent, conn, record)
            result = original(*args)
        except (TransactionInterruptedError, LockTimeoutError):
            raise
        except Exception as exc:
            return _on_error(original, conn, record, args, sql, may_replay, exc)
        try:
            _noted(conn, record, sql)
        except Exception as fault:      # fail-open: the statement succeeded
            counters.record_fault("mysqlclient.note", fault)
        return result
    finally:
        record.busy = False


def _make_query(original: Callable[..., Any]) -> Callable[..., Any]:
    """``Connection.query``, every cursor statement: the hot path.

    The same as ``_statement(original, self, (self, query), query, True)``, inlined
    (``_closed_by_server``, ``readable_now`` and ``_noted`` too): with nothing changed
    since the connection's last statement, this is one ``poll`` and no call of resil's
    own, where the plain version made six.
    """
    def query(self: Any, query: Any) -> Any:
        attrs = self.__dict__
        record: Tracked | None = attrs.get(ATTRIBUTE)
        if record is None or record.connecting:
            return original(self, query)
        record.busy = True      # in flight before the state is read: a drain cannot miss it
        try:
            try:
                agent = registry._runtime
                faults: tuple[Any, ...] = ()
                if agent is not None:
                    state = agent.state
                    if state.epoch != record.epoch or state.locks:
                        _at_boundary(agent, self, record, query)
                    faults = state.faults
                if not record.tx:
                    if attrs.get(_LOST):
                        dead = _open(self)
                    else:
                        # _closed_by_server: the poll first, ``open`` only when readable
                        # (a connection the application closed has no descriptor here)
                        socket_of = attrs.get(_FD)
                        dead = False
                        if socket_of is not None:
                            watch = record.watch
                            if watch is not None and watch[0] == socket_of[0]:
                                try:
                                    dead = bool(watch[1].poll(0))
                                except Exception:   # as readable_now: a fault says "no"
                                    dead = False
                            else:
                                dead = readable_now(record, socket_of[0])
                            dead = dead and _open(self)
                    if dead:
                        counters.count("mysql_dead_connections_replaced")
                        _reconnect(self, record)
                if faults:
                    _chaos_statement(agent, self, record)   # type: ignore[arg-type]
                result = original(self, query)
            except (TransactionInterruptedError, LockTimeoutError):
                raise
            except Exception as exc:
                return _on_error(original, self, record, (self, query), query, True, exc)
            try:                # _noted: with autocommit off, a transaction is open
                if not self.get_autocommit():
                    record.tx = classify(query) is not _END
            except Exception as fault:      # fail-open: the statement succeeded
                counters.record_fault("mysqlclient.note", fault)
            return result
        finally:
            record.busy = False
    return query


def _make_autocommit(original: Callable[..., Any]) -> Callable[..., Any]:
    """``Connection.autocommit``: off opens a transaction (a boundary, held while locked
    and moved first); on ends one."""
    def autocommit(self: Any, on: Any) -> Any:
        record: Tracked | None = self.__dict__.get(ATTRIBUTE)
        if record is None or record.connecting or on:
            try:
                return original(self, on)
            finally:
                if record is not None and on:
                    record.tx = False
        result = _statement(original, self, (self, on), b"BEGIN", False)
        record.tx = True
        return result
    return autocommit


def _make_end(original: Callable[..., Any], commits: bool) -> Callable[..., Any]:
    """``commit``/``rollback``: the transaction is over (a lost COMMIT is never replayed:
    it may have committed)."""
    def end(self: Any) -> Any:
        try:
            if commits:
                return _statement(original, self, (self,), b"COMMIT", False)
            return original(self)
        finally:
            record: Tracked | None = self.__dict__.get(ATTRIBUTE)
            if record is not None:
                record.tx = False
    return end


def _make_close(original: Callable[..., Any]) -> Callable[..., Any]:
    """``close``: its descriptor number is free for the process's next socket."""
    def close(self: Any) -> Any:
        self.__dict__.pop(_FD, None)
        return original(self)
    return close


def _make_commit(original: Callable[..., Any]) -> Callable[..., Any]:
    return _make_end(original, True)


def _make_rollback(original: Callable[..., Any]) -> Callable[..., Any]:
    return _make_end(original, False)


class MysqlclientIntegration(Integration):
    """Routing and hot switching for mysqlclient (``MySQLdb``), and so for Django's
    default MySQL backend."""

    name = "mysqlclient"
    distribution = "mysqlclient"
    supported = ((2, 1), (3,))
    targets = (
        Target("MySQLdb.connections", "Connection.__init__", _make_init, method=True),
        Target("MySQLdb.connections", "Connection.query", _make_query, method=True),
        Target("MySQLdb.connections", "Connection.autocommit", _make_autocommit,
               method=True),
        Target("MySQLdb.connections", "Connection.commit", _make_commit, method=True),
        Target("MySQLdb.connections", "Connection.rollback", _make_rollback, method=True),
        Target("MySQLdb.connections", "Connection.close", _make_close, method=True),
    )

    def abandon(self, resource: str, address: tuple[str, int]) -> int:
        """Shut down the socket of every connection with a statement in flight on
        ``address``: the waiting thread gets mysqlclient's "lost connection" at once
        instead of its read timeout."""
        cut = 0
        for conn, record in TRACKER.connections():
            if record.resource.name != resource or not record.busy or record.connecting \
                    or _at(conn) != address:
                continue
            if _shut_down(conn):
                cut += 1
        return cut

    def in_flight(self) -> dict[str, int]:
        """Connections inside a transaction or a running statement, per resource."""
        counts: dict[str, int] = {}
        for conn, record in TRACKER.connections():
            if record.busy or (record.tx and _open(conn)):
                counts[record.resource.name] = counts.get(record.resource.name, 0) + 1
        return counts


def _shut_down(conn: Any) -> bool:
    """Shut down the socket of an open ``conn`` both ways (its descriptor, read at
    connect, checked to be the same socket still); whether it was done."""
    socket_of = conn.__dict__.get(_FD)
    if socket_of is None or not _open(conn):
        return False
    try:
        if os.fstat(socket_of[0]).st_ino != socket_of[1]:
            return False        # the number is another socket's now
        sock = socket.socket(fileno=socket_of[0])
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.detach()       # the descriptor stays mysqlclient's
    except Exception:
        return False
    return True


def _open(conn: Any) -> bool:
    try:
        return bool(conn.open)
    except Exception:
        return False
