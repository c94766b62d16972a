"""PyMySQL: same-unit reads (``reads = "local"``, :mod:`resil.reads`).

A statement goes to the own unit's replica only when all of these hold; otherwise it
runs on the application's connection, at the primary, as always:

- its text is one query that :func:`resil.sql.locality` calls REPLICA (read-only, and
  nothing in it depends on this session or on which server answers);
- the connection is in autocommit mode with no transaction open, no unread result of its
  own, and a buffered cursor;
- nothing sent on the connection since it connected left session state that a second
  connection would lack (user variables, temporary tables, ``SET``, prepared statements,
  locks, ...: :data:`~resil.sql.Locality.PIN`);
- the replica lags the primary by less than ``max_lag`` (:class:`resil.reads.ReplicaWatch`);
- it has applied the connection's own last write (read-your-writes, below), or does so
  within ``read_wait``.

The statement then runs on the connection's *companion*: a second PyMySQL connection
to the replica, made lazily from a copy of the application's one (user, password,
database, charset, sql_mode, init_command), and its result is handed to the
application's connection, where its cursor reads it. The application's connection stays
the object it holds. The companion is closed with it.

Read-your-writes. The connection asks the server (MariaDB) to report ``last_gtid`` in
its OK packets (``CLIENT_SESSION_TRACK`` and ``session_track_system_variables``, set at
connect: one more round trip per connect). The GTID of the connection's newest write is
kept; before a read goes to the replica, ``MASTER_GTID_WAIT(gtid, read_wait)`` there
makes sure the replica has it. If the wait times out, the read goes to the primary:
never a stale read of one's own write. When a write's GTID could not be read (a
statement returning rows, several statements in one text), it is asked for
(``SELECT @@last_gtid``) before the next read.

A failure on the replica (lost connection, error, a replica the watch finds down while a
read is in flight: its socket is shut) sends the read to the primary; the application
sees the primary's answer.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import socket
import threading
import weakref
from collections.abc import Callable
from typing import Any

from .. import _log, context, counters, reads, registry, spans
from ..reads import ReplicaWatch, covers, parse_gtids
from ..sql import Access, Locality, classify, locality
from ..topology import Endpoint, Resource
from ._mysql import AUTOCOMMIT, NO_BACKSLASH_ESCAPES, in_transaction, server_status
from ._tracking import ATTRIBUTE, Tracked

#: The capability flag that makes the server report session state in its OK packets.
SESSION_TRACK = 1 << 23
#: ``SERVER_SESSION_STATE_CHANGED``: an OK packet carries session state.
STATE_CHANGED = 0x4000
#: Adds ``last_gtid`` to the session variables the server reports (keeping the others).
TRACK_LAST_GTID = (
    b"SET SESSION session_track_system_variables = IF(@@session.session_track_system_"
    b"variables = '*' OR FIND_IN_SET('last_gtid', @@session.session_track_system_variables)"
    b", @@session.session_track_system_variables, CONCAT_WS(',', NULLIF(@@session."
    b"session_track_system_variables, ''), 'last_gtid'))")
COM_QUERY = 3
MISS = object()
"""What :func:`read` returns when the statement must run on the primary."""

log = _log.get("resil.integrations")
_REPLICA, _PIN, _READ = Locality.REPLICA, Locality.PIN, Access.READ


class Local:
    """One application connection's same-unit read state."""

    __slots__ = ("companion", "at", "pinned", "gtid", "gtid_text", "seen", "unsure", "busy",
                 "supported", "scope", "last_local", "__weakref__")

    def __init__(self) -> None:
        self.companion: Any = None
        """The connection to the replica, once a read needed it."""
        self.at: Endpoint | None = None
        """The endpoint the companion is connected to."""
        self.pinned = False
        """Session state the replica lacks was created: every statement stays on the
        primary until the connection connects again."""
        self.gtid: dict[int, int] = {}
        """The position of the connection's newest write (its ``last_gtid``): the
        sequence number per replication domain."""
        self.gtid_text: dict[int, str] = {}
        """The same as GTIDs (``domain-server-seq``), as ``MASTER_GTID_WAIT`` takes them."""
        self.seen: dict[int, int] = {}
        """A position the companion's replica is known to have reached."""
        self.unsure = False
        """A statement may have written and its GTID was not reported."""
        self.busy = False
        """A read is running on the companion."""
        self.supported = True
        """The server can report ``last_gtid`` (MariaDB); otherwise no local reads."""
        self.last_local = False
        """The connection's last statement was served by the replica: a statement that
        reads its diagnostics (``FOUND_ROWS()``, ``SHOW WARNINGS``) must go there too."""
        self.scope = ""
        """The resource's name when its reads wait for their request's writes too
        (``read_your_writes = "request"``)."""

    def drop_companion(self) -> None:
        companion, self.companion, self.at, self.seen = self.companion, None, None, {}
        if companion is not None:
            with contextlib.suppress(Exception):
                companion.close()


_LOCALS: weakref.WeakSet[Local] = weakref.WeakSet()
_LOCALS_LOCK = threading.Lock()
_WATCHES = reads.Watches()


# --------------------------------------------------------------------------- connect

def prepare(conn: Any, record: Tracked) -> None:
    """Before a connect of a ``reads = "local"`` connection: ask for session tracking."""
    if record.local is None:
        record.local = Local()
        if record.resource.read_your_writes == "request":
            record.local.scope = record.resource.name
        with _LOCALS_LOCK:
            _LOCALS.add(record.local)
    conn.client_flag |= SESSION_TRACK


def connected(conn: Any, record: Tracked) -> None:
    """After a connect: a new session has no state of its own, and reports ``last_gtid``.
    A server that cannot (not MariaDB) gets no local reads."""
    local: Local | None = record.local
    if local is None:
        return
    if "MariaDB" not in str(getattr(conn, "server_version", "")):
        local.supported = False
        return
    conn._execute_command(COM_QUERY, TRACK_LAST_GTID)
    conn._read_ok_packet()
    adopted(conn, record)


def adopted(conn: Any, record: Tracked) -> None:
    """``conn`` has a new session (connected, or a spare taken over at a switch, which
    asked for ``last_gtid`` when it opened): nothing pins it yet."""
    local: Local = record.local
    local.pinned = False
    if local.unsure:
        # A write whose GTID was not read, on the session that just ended: the new
        # one cannot tell it. The primary's whole position includes it.
        conn._execute_command(COM_QUERY, b"SELECT @@gtid_binlog_pos")
        conn._read_query_result()
        rows, conn._result = conn._result.rows, None
        noted_gtid(local, _text(rows[0][0]) if rows else "")
        local.unsure = False


# --------------------------------------------------------------------------- statements

def read(conn: Any, record: Tracked, sql: Any, query: Callable[..., Any],
         unbuffered: bool = False) -> Any:
    """Run ``sql`` on the replica when it may go there (the module's rules): PyMySQL's
    ``query`` result, with the result set on ``conn``; :data:`MISS` when it must run on
    the primary. ``query`` is PyMySQL's own ``Connection.query``."""
    local: Local = record.local
    after_local, local.last_local = local.last_local, False
    if unbuffered:
        return MISS
    status = server_status(conn)
    if not status & AUTOCOMMIT or in_transaction(conn, record) or not local.supported:
        return MISS
    pending = conn._result
    if pending is not None and (pending.unbuffered_active or pending.has_next):
        return MISS
    escapes = bool(status & NO_BACKSLASH_ESCAPES)
    where = locality(sql, no_backslash_escapes=escapes)
    if where is not _REPLICA:
        if where is _PIN and not _same_names(conn, sql):
            local.pinned = True     # before it runs: a text that fails half-way pins too
        elif after_local and local.companion is not None \
                and _reads_diagnostics(sql, escapes):
            return _on_companion(conn, local, sql, query)
        return MISS
    agent = registry._runtime
    if agent is None:
        return MISS
    resource, unit = record.resource, agent.config.unit
    started = spans.now_ns() if spans.tracing() else 0
    if local.pinned:
        reads.count(resource, unit, "pinned", started)
        return MISS
    endpoint = reads.local_endpoint(resource, unit, agent.state)
    if endpoint is None:
        if local.companion is not None:
            local.drop_companion()
        reads.count(resource, unit, "primary", started)
        return MISS
    if not watch(resource, conn).usable():
        reads.count(resource, unit, "fallback_lag", started, endpoint)
        return MISS
    local.busy = True
    try:
        if local.unsure:
            _ask_last_gtid(conn, local, query)
        companion = _companion(conn, local, endpoint, query)
        position, texts = _wanted(local)
        if position is None:            # the request wrote something of unknown GTID
            reads.count(resource, unit, "fallback_wait", started, endpoint)
            return MISS
        if position and not covers(local.seen, position):
            if not _wait_for_own_write(companion, local, resource, query, position, texts):
                reads.count(resource, unit, "fallback_wait", started, endpoint)
                return MISS
        affected = query(companion, sql)
    except Exception as exc:
        log.debug("resil: %s read on the replica %s failed, sent to the primary: %r",
                  resource.name, endpoint, exc)
        if local.companion is not None and local.companion._sock is None:
            local.drop_companion()      # the connection was lost (PyMySQL closed it)
        reads.count(resource, unit, "fallback_error", started, endpoint)
        return MISS
    finally:
        local.busy = False
    conn._result = companion._result
    conn._affected_rows = affected
    local.last_local = True
    reads.count(resource, unit, "local", started, endpoint)
    return affected


#: What reads the previous statement's diagnostics: the row count of the last SELECT,
#: the affected rows, its warnings and errors.
_DIAGNOSTICS = re.compile(
    rb"FOUND_ROWS\s*\(|ROW_COUNT\s*\(|\bSHOW\s+(?:COUNT\s*\(\s*\*\s*\)\s+)?"
    rb"(?:WARNINGS|ERRORS)\b|@@(?:SESSION\.)?(?:WARNING_COUNT|ERROR_COUNT)\b", re.IGNORECASE)


def _reads_diagnostics(sql: Any, escapes: bool) -> bool:
    """Whether ``sql`` only reads and asks about the statement before it (which the
    replica ran: the primary's session would answer for another one)."""
    text = sql.encode() if isinstance(sql, str) else sql
    return isinstance(text, bytes) and _DIAGNOSTICS.search(text) is not None \
        and classify(sql, no_backslash_escapes=escapes) is _READ


def _on_companion(conn: Any, local: Local, sql: Any, query: Callable[..., Any]) -> Any:
    """Run ``sql`` on the companion session (which ran the statement before), its
    result handed to ``conn``; :data:`MISS` if the companion fails (the primary then
    answers, as it would have)."""
    companion = local.companion
    local.busy = True
    try:
        affected = query(companion, sql)
    except Exception:
        return MISS
    finally:
        local.busy = False
    conn._result = companion._result
    conn._affected_rows = affected
    local.last_local = True         # still the session a further question is about
    return affected


def after_primary(conn: Any, record: Tracked, sql: Any) -> None:
    """After a statement ran on the primary: keep its GTID (read-your-writes), and pin
    the connection if it created session state."""
    local: Local = record.local
    result = conn._result
    escapes = bool(server_status(conn) & NO_BACKSLASH_ESCAPES)
    if result is None or result.has_next or result.message is None:
        # Rows (INSERT ... RETURNING, CALL) or more results: an OK packet not read here.
        if classify(sql, no_backslash_escapes=escapes) is not _READ:
            _unsure(local)
    elif result.server_status & STATE_CHANGED:
        noted(local, result.message)
    if not local.pinned and locality(sql, no_backslash_escapes=escapes) is _PIN \
            and not _same_names(conn, sql):
        local.pinned = True


#: ``SET NAMES charset``, alone: what SQLAlchemy sends on every new connection.
_SET_NAMES = re.compile(rb"\s*SET\s+NAMES\s+(['\"`]?)(\w+)\1\s*;?\s*", re.IGNORECASE)


def _same_names(conn: Any, sql: Any) -> bool:
    """Whether ``sql`` is ``SET NAMES`` with the character set ``conn`` was made with
    (and no collation of its own): it leaves the session as a companion made with the
    same arguments has it, so it pins nothing."""
    text = sql.encode() if isinstance(sql, str) else sql
    found = _SET_NAMES.fullmatch(text) if isinstance(text, bytes) else None
    return (found is not None and getattr(conn, "collation", None) is None
            and found.group(2).decode().lower() == str(getattr(conn, "charset", "")).lower())


def after_ok(conn: Any, ok: Any) -> None:
    """An OK packet read by PyMySQL itself (``commit()``, ``autocommit()``): its GTID."""
    record: Tracked | None = conn.__dict__.get(ATTRIBUTE)
    if record is None or record.local is None:
        return
    record.local.last_local = False     # a statement of PyMySQL's own, on the primary
    if ok is None or getattr(ok, "message", None) is None:
        _unsure(record.local)
    elif ok.server_status & STATE_CHANGED:
        noted(record.local, ok.message)


def _unsure(local: Local) -> None:
    """A statement may have written, and its GTID was not reported."""
    local.unsure = True
    writes = reads.request_writes.get() if local.scope else None
    if writes is not None:
        writes.unsure.add(local.scope)


def noted(local: Local, message: bytes) -> None:
    """Keep the ``last_gtid`` an OK packet's session state reports."""
    gtid = last_gtid(message)
    if gtid:
        noted_gtid(local, gtid)


def noted_gtid(local: Local, gtid: str) -> None:
    """Keep ``gtid`` (one, or a position) as the connection's newest write where it is
    newer than what is kept; and as a write of the request being served, when the
    resource reads those (``read_your_writes = "request"``)."""
    writes = reads.request_writes.get() if local.scope else None
    for part in gtid.split(","):
        for domain, seq in parse_gtids(part).items():
            if seq > local.gtid.get(domain, -1):
                local.gtid = {**local.gtid, domain: seq}
                local.gtid_text = {**local.gtid_text, domain: part.strip()}
        if writes is not None and part.strip():
            writes.note(local.scope, part)


def last_gtid(message: bytes) -> str | None:
    """The ``last_gtid`` value in the rest of an OK packet (after its warning count)
    when the client asked for session tracking: the info string, then the session state
    changes (each a type byte and its data; type 0, a system variable, holds a name and
    a value). None if it is not there or the bytes do not parse."""
    try:
        info, i = _lenenc_bytes(message, 0)
        state, _ = _lenenc_bytes(message, i)
        j = 0
        while j < len(state):
            kind = state[j]
            data, j = _lenenc_bytes(state, j + 1)
            if kind == 0:
                name, k = _lenenc_bytes(data, 0)
                if name == b"last_gtid":
                    value, _ = _lenenc_bytes(data, k)
                    return value.decode("ascii")
    except (IndexError, ValueError, UnicodeDecodeError):
        return None
    return None


def _lenenc_bytes(data: bytes, i: int) -> tuple[bytes, int]:
    """A length-encoded string at ``data[i]``, and the index after it."""
    first = data[i]
    if first < 0xFB:
        size, i = first, i + 1
    elif first == 0xFC:
        size, i = int.from_bytes(data[i + 1:i + 3], "little"), i + 3
    elif first == 0xFD:
        size, i = int.from_bytes(data[i + 1:i + 4], "little"), i + 4
    elif first == 0xFE:
        size, i = int.from_bytes(data[i + 1:i + 9], "little"), i + 9
    else:
        raise ValueError("NULL where a string was expected")
    if i + size > len(data):
        raise IndexError("length beyond the packet")
    return data[i:i + size], i + size


def _ask_last_gtid(conn: Any, local: Local, query: Callable[..., Any]) -> None:
    """The connection's last GTID, asked of the primary (a write's report was not read)."""
    query(conn, b"SELECT @@last_gtid")
    rows = conn._result.rows
    conn._result = None
    local.unsure = False
    value = rows[0][0] if rows else None
    if value:
        noted_gtid(local, _text(value))


def _wanted(local: Local) -> tuple[dict[int, int] | None, dict[int, str]]:
    """What a read must find on the replica: the connection's newest write, and the
    request's when the resource reads those (the newer of the two per domain). None
    when the request wrote with a GTID that was not reported: only the primary has
    it for sure."""
    writes = reads.request_writes.get() if local.scope else None
    if writes is not None and local.scope in writes.unsure:
        return None, {}
    if writes is None or local.scope not in writes.positions:
        return local.gtid, local.gtid_text
    position, texts = dict(local.gtid), dict(local.gtid_text)
    for domain, seq in writes.positions[local.scope].items():
        if seq > position.get(domain, -1):
            position[domain] = seq
            texts[domain] = writes.texts[local.scope][domain]
    return position, texts


def _wait_for_own_write(companion: Any, local: Local, resource: Resource,
                        query: Callable[..., Any], position: dict[int, int],
                        texts: dict[int, str]) -> bool:
    """Whether the replica has applied ``position`` (the newest writes a read must see),
    waiting for it up to ``read_wait``."""
    want = ",".join(text for _, text in sorted(texts.items()))
    if resource.read_wait <= 0:
        query(companion, b"SELECT @@gtid_slave_pos")
        reached = parse_gtids(_text(companion._result.rows[0][0]))
    else:
        query(companion, f"SELECT MASTER_GTID_WAIT('{want}', {resource.read_wait:.3f}), "
                         "@@gtid_slave_pos".encode())
        row = companion._result.rows[0]
        if row[0] != 0:
            return False
        reached = parse_gtids(_text(row[1]))
    if not covers(reached, position):
        return False
    local.seen = reached
    return True


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


# --------------------------------------------------------------------------- companions

def copy_to(conn: Any, host: str, port: int) -> Any:
    """A new, unconnected PyMySQL connection with ``conn``'s arguments, pointed at
    ``host:port`` and not routed by resil."""
    other = copy.copy(conn)
    other.__dict__.pop(ATTRIBUTE, None)
    other._sock = other._rfile = other._result = None
    other.host, other.port = host, port
    return other


def _companion(conn: Any, local: Local, endpoint: Endpoint, query: Callable[..., Any]) -> Any:
    """The connection's companion to ``endpoint``, connected now if it is not."""
    companion = local.companion
    if companion is not None and local.at == endpoint and companion._sock is not None:
        return companion
    local.drop_companion()
    companion = copy_to(conn, endpoint.host, endpoint.port)
    companion.client_flag &= ~SESSION_TRACK
    with context.bypass():
        companion.connect()
    local.companion, local.at = companion, endpoint
    counters.count("mysql_read_companions_opened")
    return companion


def close(conn: Any) -> None:
    """The application closed ``conn``: close its companion too."""
    record: Tracked | None = conn.__dict__.get(ATTRIBUTE)
    if record is not None and record.local is not None:
        record.local.drop_companion()


def _cut_busy(resource: str) -> None:
    """The replica of ``resource`` went down or fell behind while reads may be in flight
    there: shut their sockets so that they fail at once and go to the primary."""
    with _LOCALS_LOCK:
        locals_ = list(_LOCALS)
    for local in locals_:
        companion = local.companion
        if local.busy and companion is not None and local.at is not None \
                and local.at.resource == resource and companion._sock is not None:
            with contextlib.suppress(OSError):
                companion._sock.shutdown(socket.SHUT_RDWR)


# --------------------------------------------------------------------------- the watch

def watch(resource: Resource, conn: Any) -> ReplicaWatch:
    """The process's :class:`~resil.reads.ReplicaWatch` of ``resource``, probing with
    connections made like ``conn``."""
    return _WATCHES.get(resource, lambda: ReplicaWatch(
        resource, reads.applied_state, _Probe(resource, conn),
        on_down=lambda: _cut_busy(resource.name)))


class _Probe:
    """Reads positions over connections of its own (one per endpoint), made like the
    application's first connection, with short timeouts."""

    def __init__(self, resource: Resource, template: Any) -> None:
        self.resource = resource
        self.template = copy_to(template, template.host, template.port)
        self.template.client_flag &= ~SESSION_TRACK
        self.template.connect_timeout = reads.PROBE_TIMEOUT
        self.template._read_timeout = self.template._write_timeout = reads.PROBE_TIMEOUT
        self.conns: dict[Endpoint, Any] = {}
        self.pid = os.getpid()

    def __call__(self, primary: Endpoint | None) -> dict[int, int] | None:
        agent = registry._runtime
        if agent is None:
            raise LookupError("the agent stopped")
        if self.pid != os.getpid():
            # A forked child: the connections are its parent's (left alone, not closed).
            self.conns, self.pid = {}, os.getpid()
        endpoint = primary or self.resource.endpoint_in(agent.config.unit)
        if endpoint is None:
            return None
        conn = self.conns.pop(endpoint, None)
        try:
            with context.bypass():
                if conn is None:
                    conn = copy_to(self.template, endpoint.host, endpoint.port)
                    conn.connect()
                if primary is not None:
                    conn.query(b"SELECT @@gtid_binlog_pos")
                    row = conn._result.rows[0]
                    position: dict[int, int] | None = parse_gtids(_text(row[0]))
                else:
                    conn.query(b"SELECT @@gtid_slave_pos, (SELECT VARIABLE_VALUE FROM "
                               b"information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = "
                               b"'SLAVE_RUNNING')")
                    row = conn._result.rows[0]
                    running = _text(row[1]).upper() == "ON"
                    position = parse_gtids(_text(row[0])) if running else None
        except BaseException:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            raise
        self.conns[endpoint] = conn
        return position


def stop_watches() -> None:
    """Stop every watch (the agent stops, or a test ends)."""
    _WATCHES.stop()
