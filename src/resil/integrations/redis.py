"""redis-py: new connections to a redis resource go to its current primary.

The seam is ``Connection._connect``, the one place that opens a TCP socket from
``self.host``/``self.port`` (``SSLConnection`` reaches it through ``super()``); it runs
for every connection a pool creates and on every reconnect. The asyncio client has the
same seam; routing happens before the coroutine is created, so one wrapper serves both.
Unix-socket connections are a different class and are not touched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._addresses import route_connection
from .base import Integration, Target, fail_open


def _route(conn: Any) -> None:
    route_connection("redis", conn)


def _connect(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> Any:
    fail_open("redis.connect", _route, instance)
    return wrapped(*args, **kwargs)


class RedisIntegration(Integration):
    """Endpoint rewriting for redis-py (sync and asyncio)."""

    name = "redis"
    distribution = "redis"
    supported = ((5, 0), (9,))
    targets = (
        Target("redis.connection", "Connection._connect", _connect),
        Target("redis.asyncio.connection", "Connection._connect", _connect),
    )
