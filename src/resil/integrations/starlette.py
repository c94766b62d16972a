"""Starlette and FastAPI (``FastAPI`` is a ``Starlette``): request metrics and wrong-unit
protection for every ASGI application, with no code change (``Starlette.__call__``).

Requests are counted like Flask's and Django's: in flight while they run, then by
status class and duration, so utilization and the scale signals see the service's real
load (uncounted, an ASGI service would read idle and be scaled in). Lifespan and
WebSocket scopes pass through untouched.
"""

from __future__ import annotations

from ..serving.wsgi import make_asgi
from .base import Integration, Target


class StarletteIntegration(Integration):
    """Request metrics and wrong-unit protection for Starlette and FastAPI."""

    name = "starlette"
    distribution = "starlette"
    supported = ((0, 20), (2,))
    targets = (Target("starlette.applications", "Starlette.__call__", make_asgi,
                      method=True),)
