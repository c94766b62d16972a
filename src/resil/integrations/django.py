"""Django: request metrics for every project, over WSGI or ASGI, and sessions in Redis,
with no settings change.

Seams:

- ``WSGIHandler.__call__`` and ``ASGIHandler.__call__``: request metrics and wrong-unit
  protection (:mod:`resil.serving.wsgi`).
- ``SessionMiddleware.__init__``: with ``[sessions] resource`` set, a middleware whose
  project kept Django's default ``SESSION_ENGINE`` (the database) gets resil's engine
  (:mod:`resil.contrib.django.sessions`) as its ``SessionStore``. A project that chose
  its own engine is left alone (said once, at INFO).
- ``django.core.handlers.exception.response_for_exception``: the one place where Django
  turns an exception raised by any middleware layer or view into a response. A
  :class:`resil.sessions.SessionUnavailable` becomes a 503 there instead of a 500 with a
  traceback (see :mod:`resil.contrib.django.sessions` for when it is raised).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from .. import _log, registry
from ..serving.wsgi import make_asgi, make_wsgi
from .base import Integration, Target, fail_open

log = _log.get("resil")
_DEFAULT_ENGINE = "django.contrib.sessions.backends.db"
# What each agent has already said about SESSION_ENGINE (said once per agent, not per
# middleware instance: ASGI and test clients build many).
_told: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def _adopt_sessions(middleware: Any) -> None:
    agent = registry.runtime()
    if agent is None or not agent.config.sessions_resource:
        return
    from django.conf import settings  # type: ignore[import-untyped]

    from ..contrib.django import sessions
    engine = settings.SESSION_ENGINE
    told = _told.setdefault(agent, set())
    if engine == _DEFAULT_ENGINE:
        middleware.SessionStore = sessions.SessionStore
        if engine not in told:
            told.add(engine)
            log.info("resil: Django sessions are stored in redis resource %s",
                     agent.config.sessions_resource)
    elif engine != sessions.ENGINE and engine not in told:
        told.add(engine)
        log.info("resil: the project chose SESSION_ENGINE = %r; its sessions are left "
                 "alone (not stored in %s)", engine, agent.config.sessions_resource)


def _session_middleware_init(wrapped: Callable[..., Any], instance: Any,
                             args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = wrapped(*args, **kwargs)
    fail_open("django.sessions", _adopt_sessions, instance)
    return result


def _session_error(request: Any, exc: BaseException) -> Any:
    from ..sessions import SessionUnavailable
    if not isinstance(exc, SessionUnavailable):
        return None
    from ..contrib.django.sessions import unavailable_response
    return unavailable_response(request, exc)


def _response_for_exception(wrapped: Callable[..., Any], instance: Any,
                            args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    response = None
    if len(args) == 2:
        response = fail_open("django.session_error", _session_error, *args)
    return response if response is not None else wrapped(*args, **kwargs)


class DjangoIntegration(Integration):
    """Request metrics for Django (WSGI and ASGI) and sessions in Redis."""

    name = "django"
    distribution = "Django"
    supported = ((4, 0), (6,))
    targets = (
        Target("django.core.handlers.wsgi", "WSGIHandler.__call__", make_wsgi, method=True),
        Target("django.core.handlers.asgi", "ASGIHandler.__call__", make_asgi, method=True),
        Target("django.contrib.sessions.middleware", "SessionMiddleware.__init__",
               _session_middleware_init),
        Target("django.core.handlers.exception", "response_for_exception",
               _response_for_exception),
    )
