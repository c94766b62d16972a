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


class TransactionInterruptedError(ResilError):
    """A transaction was interrupted by a switch of its database's primary.

    Raised to the application, in place of the driver's connection error, when a
    transaction that was open when the switch began could not finish where it started
    (the old primary was fenced or went away under it). Nothing of the transaction was
    committed: it is safe to retry it from the start. The connection object is already
    usable again and points at the current primary; roll back (a no-op) and retry.

    It deliberately does not subclass the driver's ``OperationalError``: pools and ORMs
    treat that as "this connection is broken, discard it", while this connection is fine.
    """

    def __init__(self, resource: str, cause: BaseException) -> None:
        self.resource = resource
        self.cause = cause
        super().__init__(f"transaction on {resource!r} interrupted by a primary switch "
                         f"({cause}); nothing was committed, safe to retry")


class LockTimeoutError(ResilError):
    """A write (or a new connection) waited longer than the resource's ``lock_timeout``
    for a switch or failover to finish.

    Nothing was sent: it is safe to retry.
    """

    def __init__(self, resource: str, waited: float, holder: str) -> None:
        self.resource = resource
        self.waited = waited
        self.holder = holder
        super().__init__(f"write to {resource!r} held {waited:.2f} s while it is locked by "
                         f"{holder}; gave up (nothing was sent, safe to retry)")


class SwitchError(ResilError):
    """A planned switch failed; the message says at which step and why."""


class SwitchInputError(SwitchError):
    """The operator named something that does not exist (a resource, a unit): nothing was
    done. Commands exit 2 for it, as for any bad input."""


class SwitchInterrupted(SwitchError):
    """The operator's process was told to stop (SIGTERM, SIGINT, SIGHUP) before the new
    primary was promoted: the switch rolls back."""
