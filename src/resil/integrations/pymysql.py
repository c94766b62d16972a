"""pymysql: new connections to a mysql resource go to its current primary.

The seam is ``Connection.connect``: pymysql calls it from ``__init__`` and again on
every reconnect (``ping(reconnect=True)``), after ``host`` and ``port`` are set and
before the socket is opened, so rewriting them there routes both first connects and
reconnects. Unix-socket connections are local by definition and left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._addresses import route_connection
from .base import Integration, Target, fail_open


def _route(conn: Any) -> None:
    if getattr(conn, "unix_socket", None):
        return
    route_connection("mysql", conn)


def _connect(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> Any:
    fail_open("pymysql.connect", _route, instance)
    return wrapped(*args, **kwargs)


class PyMySQLIntegration(Integration):
    """Endpoint rewriting for PyMySQL."""

    name = "pymysql"
    distribution = "PyMySQL"
    supported = ((1, 0), (2,))
    targets = (Target("pymysql.connections", "Connection.connect", _connect),)
