"""Flask: request metrics, wrong-unit protection and (with ``[sessions] resource``)
sessions in Redis for every application, with no code change (``Flask.wsgi_app``)."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from .. import registry
from ..serving.wsgi import make_wsgi
from .base import Integration, Target, fail_open

_seen: weakref.WeakSet[Any] = weakref.WeakSet()


def _first_request(app: Any) -> bool:
    """Whether this is the application's first request (an app object that cannot be
    remembered, say one with ``__slots__``, is a fault: it just gets no sessions)."""
    if app in _seen:
        return False
    _seen.add(app)
    return True


def _sessions(app: Any) -> None:
    agent = registry.runtime()
    if agent is not None and agent.config.sessions_resource:
        from ..contrib.flask import install_default
        install_default(app)


def make_flask_wsgi(original: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`resil.serving.wsgi.make_wsgi`, and on an application's first request, its sessions."""
    counted = make_wsgi(original)

    def wsgi_app(self: Any, environ: Any, start_response: Callable[..., Any]) -> Any:
        if fail_open("flask.sessions", _first_request, self):
            fail_open("flask.sessions", _sessions, self)
        return counted(self, environ, start_response)
    return wsgi_app


class FlaskIntegration(Integration):
    """Request metrics, wrong-unit protection and Redis sessions for Flask."""

    name = "flask"
    distribution = "Flask"
    supported = ((2, 0), (4,))
    targets = (Target("flask.app", "Flask.wsgi_app", make_flask_wsgi, method=True),)
