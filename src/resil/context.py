"""The context of the current thread or request that resil's hooks look at.

- :class:`bypass`: resil's own traffic (switch steps, probes, heartbeats) is not routed;
- :data:`route_key`: the routing key of the request being served, carried on outgoing
  calls to http resources as :data:`ROUTE_KEY_HEADER`.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar

ROUTE_KEY_HEADER = "x-resil-route-key"
"""The header that carries a request's routing key to the services it calls."""
ROUTE_KEY_WSGI = "HTTP_" + ROUTE_KEY_HEADER.upper().replace("-", "_")
""":data:`ROUTE_KEY_HEADER` as a WSGI environ key."""
ROUTE_KEY_ASGI = ROUTE_KEY_HEADER.encode()
""":data:`ROUTE_KEY_HEADER` as an ASGI header name (lower-case bytes)."""
UNIT_HEADER = "x-resil-unit"
"""The header that names the caller's unit on every routed call."""


class _Bypass(threading.local):
    depth = 0       # a class default: reading it never raises (fast on every connect)


_bypass = _Bypass()

route_key: ContextVar[str | None] = ContextVar("resil_route_key", default=None)
"""The routing key of the request being served (set by the Flask/Django layer), carried
on outgoing calls to http resources as ``x-resil-route-key``."""


class bypass:
    """Context manager: connections opened inside it are not routed or tracked.

    resil's own traffic (switch steps, probes, heartbeats) uses it, so that an operator
    command run inside an instrumented process talks to exactly the server it names.
    """

    def __enter__(self) -> None:
        _bypass.depth += 1

    def __exit__(self, *exc: object) -> None:
        _bypass.depth -= 1


def bypassed() -> bool:
    """Whether the current thread is inside :class:`bypass`."""
    return _bypass.depth > 0
