"""``resil.contrib.django`` as a Django app: starts the agent, checks the configuration."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.apps import AppConfig  # type: ignore[import-untyped]
from django.core import checks  # type: ignore[import-untyped]

_problem: Exception | None = None
"""What :meth:`ResilConfig.ready` found wrong, for the system check to report."""


class ResilConfig(AppConfig):  # type: ignore[misc]
    """Put ``"resil.contrib.django"`` in ``INSTALLED_APPS``.

    :meth:`ready` starts the agent when none runs (``RESIL_CONFIG`` or ``./resil.toml``),
    so the Django integration is installed before the first request. A configuration
    that cannot work (a bad ``resil.toml``; ``SESSION_ENGINE`` resil's with no
    ``[sessions] resource``) is reported by Django's system checks as ``resil.E001``
    (``manage.py check``, and before ``runserver`` or ``migrate`` run). A server that
    runs no checks (gunicorn, uWSGI, an ASGI server loading the application) fails
    start-up with :class:`~django.core.exceptions.ImproperlyConfigured` instead: never
    on a user's first request.
    """

    name = "resil.contrib.django"
    label = "resil"
    verbose_name = "resil"

    def ready(self) -> None:
        global _problem
        checks.register(check_configuration, "resil")
        try:
            _start()
            _problem = None
        except Exception as exc:    # ImproperlyConfigured (ConfigError inside)
            _problem = exc
            if not _management_command():
                raise


def _start() -> None:
    from django.conf import settings  # type: ignore[import-untyped]

    from .sessions import ENGINE, running_agent, shared_store
    if settings.SESSION_ENGINE == ENGINE:
        shared_store()          # starts the agent; ImproperlyConfigured when it cannot
        return
    running_agent()


def _management_command() -> bool:
    """Whether this process runs a management command (``manage.py``, ``django-admin``,
    ``python -m django``): those report problems through the system checks."""
    program = sys.argv[0] if sys.argv and sys.argv[0] else ""
    return os.path.basename(program) in ("manage.py", "django-admin") or \
        program.replace(os.sep, "/").endswith("django/__main__.py")


def check_configuration(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``resil.E001``: the agent could not start with this configuration."""
    if _problem is None:
        return []
    return [checks.Error(str(_problem).removeprefix("resil: "),
                         hint="fix resil.toml (or the RESIL_* variable named); `resil "
                              "config check` checks it alone",
                         obj="resil", id="resil.E001")]
