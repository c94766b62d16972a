"""Django: request metrics for every project, over WSGI or ASGI, with no settings change."""

from __future__ import annotations

from ._wsgi import make_asgi, make_wsgi
from .base import Integration, Target


class DjangoIntegration(Integration):
    """Request metrics for Django (WSGI and ASGI)."""

    name = "django"
    distribution = "Django"
    supported = ((4, 0), (6,))
    targets = (
        Target("django.core.handlers.wsgi", "WSGIHandler.__call__", make_wsgi, method=True),
        Target("django.core.handlers.asgi", "ASGIHandler.__call__", make_asgi, method=True),
    )
