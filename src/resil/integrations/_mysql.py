"""Shared by the MySQL driver integrations (PyMySQL, aiomysql): the protocol's status
bits and error numbers, read into :mod:`resil.switching`'s questions."""

from __future__ import annotations

from typing import Any

from ..sql import Access, classify
from ..switching import AfterError, ErrorKind
from ._tracking import Tracked

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
