"""Flask: request metrics for every application, with no code change (``Flask.wsgi_app``)."""

from __future__ import annotations

from ._wsgi import make_wsgi
from .base import Integration, Target


class FlaskIntegration(Integration):
    """Request metrics for Flask."""

    name = "flask"
    distribution = "Flask"
    supported = ((2, 0), (4,))
    targets = (Target("flask.app", "Flask.wsgi_app", make_wsgi, method=True),)
