"""``resil.contrib.django`` as a Django app: starts the agent, checks the configuration."""

from __future__ import annotations

from django.apps import AppConfig  # type: ignore[import-untyped]


class ResilConfig(AppConfig):  # type: ignore[misc]
    """Put ``"resil.contrib.django"`` in ``INSTALLED_APPS``.

    :meth:`ready` starts the agent when none runs (``RESIL_CONFIG`` or ``./resil.toml``),
    so the Django integration is installed before the first request, and fails start-up
    with :class:`~django.core.exceptions.ImproperlyConfigured` when ``SESSION_ENGINE`` is
    resil's and the agent has no ``[sessions] resource`` — at start, not on a user's
    first request.
    """

    name = "resil.contrib.django"
    label = "resil"
    verbose_name = "resil"

    def ready(self) -> None:
        from django.conf import settings  # type: ignore[import-untyped]

        from .sessions import ENGINE, shared_store
        if settings.SESSION_ENGINE == ENGINE:
            shared_store()          # starts the agent; ImproperlyConfigured when it cannot
            return
        from .sessions import running_agent
        running_agent()
