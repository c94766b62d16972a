"""Django sessions in Redis.

Under ``resil-run`` with ``[sessions] resource`` set, nothing is needed: a project that
uses Django's default ``SESSION_ENGINE`` gets resil's store through the Django
integration. Without ``resil-run``, say so in ``settings.py``::

    INSTALLED_APPS = [..., "resil.contrib.django"]         # starts the agent
    SESSION_ENGINE = "resil.contrib.django.sessions"

The session backend is :mod:`resil.contrib.django.sessions`; the app
(:class:`resil.contrib.django.apps.ResilConfig`) starts the agent when none runs and
checks the configuration at start-up. Importing this package imports nothing of Django.
"""
