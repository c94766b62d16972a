"""Starlette and FastAPI (``FastAPI`` is a ``Starlette``): request metrics and wrong-unit
protection for every ASGI application, with no code change (``Starlette.__call__``), and
with ``[sessions] resource``, ``SessionMiddleware``'s sessions in Redis
(:mod:`resil.contrib.starlette`).

Requests are counted like Flask's and Django's: in flight while they run, then by
status class and duration, so utilization and the scale signals see the service's real
load (uncounted, an ASGI service would read idle and be scaled in). Lifespan and
WebSocket scopes pass through untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..serving.wsgi import make_asgi
from .base import Integration, Target


def _make_session_call(original: Callable[..., Any]) -> Callable[..., Any]:
    from ..contrib.starlette import make_session_call
    return make_session_call(original)


class StarletteIntegration(Integration):
    """Request metrics, wrong-unit protection and Redis sessions for Starlette and
    FastAPI."""

    name = "starlette"
    distribution = "starlette"
    supported = ((0, 20), (2,))
    targets = (Target("starlette.applications", "Starlette.__call__", make_asgi,
                      method=True),
               Target("starlette.middleware.sessions", "SessionMiddleware.__call__",
                      _make_session_call, method=True))
