"""Django: request metrics for every project served over WSGI, with no settings change."""

from __future__ import annotations

from ._wsgi import make_wsgi
from .base import Integration, Target


class DjangoIntegration(Integration):
    """Request metrics for Django (WSGI; ASGI is not covered yet)."""

    name = "django"
    distribution = "Django"
    supported = ((4, 0), (6,))
    targets = (Target("django.core.handlers.wsgi", "WSGIHandler.__call__", make_wsgi,
                      method=True),)
