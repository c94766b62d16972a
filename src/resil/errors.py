"""resil's exceptions: one root, a few documented errors.

Errors that reach the application are few and designed. Driver errors (pymysql's
``OperationalError``, redis-py's ``ConnectionError``) are never wrapped or replaced:
they pass through untouched, so an application's existing error handling keeps working.
"""

from __future__ import annotations


class ResilError(Exception):
    """Root of every exception resil raises."""


class ConfigError(ResilError):
    """The configuration is invalid.

    The message names where the bad value came from (a file or an environment
    variable), the key and the value, so that it can be fixed without reading code.
    """

    def __init__(self, source: str, key: str, value: object, problem: str) -> None:
        self.source = source
        self.key = key
        self.value = value
        self.problem = problem
        shown = "" if value is _MISSING else f" = {value!r}"
        super().__init__(f"{source}: {key}{shown}: {problem}")


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: object = _Missing()
MISSING = _MISSING
"""Marker for a key that is absent (the error message then shows no value)."""


class SignalError(ResilError):
    """A signal was rejected: malformed, unsigned, forged or stale.

    Raised by :func:`resil.state.verify_signal` and by ``publish``; the agent logs it
    and keeps its last good control state.
    """


class ControlPlaneError(ResilError):
    """The control plane could not be read or written (I/O, unsupported URL)."""
