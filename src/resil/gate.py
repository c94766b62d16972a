"""The write gate: holds new writes on a resource while a switch has it locked.

While ``[control state].locks`` names a resource, a statement that writes or opens a
transaction waits here — it is held, not failed — until the lock is gone (the switch
published the new primary, or rolled back), then runs. If the lock outlives the
resource's ``lock_timeout`` the statement is not sent and the application gets
:class:`~resil.errors.LockTimeoutError`, which is safe to retry.

What runs during a lock without waiting: statements proven read-only
(:mod:`resil.sql`) in autocommit mode, session statements (``SET NAMES``, ``USE``) and
``COMMIT``/``ROLLBACK`` at a boundary (no-ops). Everything inside a transaction that was
already open when the lock arrived also runs: it finishes where it started.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import counters, spans
from .errors import LockTimeoutError
from .sql import Access
from .state import ControlState

#: Statements that run at once on a locked resource in autocommit mode.
_PASS_AUTOCOMMIT = frozenset({Access.READ, Access.SESSION, Access.END})
#: With autocommit off any statement but these opens a transaction: it waits.
_PASS_IN_MANUAL_COMMIT = frozenset({Access.SESSION, Access.END})


def must_hold(access: Access, autocommit: bool) -> bool:
    """Whether a statement at a transaction boundary must wait for a lock to clear."""
    return access not in (_PASS_AUTOCOMMIT if autocommit else _PASS_IN_MANUAL_COMMIT)


class Gate:
    """Holds callers until a resource is unlocked (or its lock timeout expires)."""

    def __init__(self, state: Callable[[], ControlState],
                 wait_for_change: Callable[[int, float], ControlState],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._state = state
        self._wait = wait_for_change
        self._clock = clock

    def hold(self, resource: str, timeout: float) -> ControlState:
        """Wait while ``resource`` is locked; return the state that released it.

        Raises :class:`LockTimeoutError` after ``timeout`` seconds.
        """
        state = self._state()
        if resource not in state.locks:
            return state
        started = self._clock()
        started_ns = spans.now_ns()
        counters.count("held_writes")
        counters.holding(+1)
        try:
            return self._wait_out(resource, timeout, state, started, started_ns)
        finally:
            counters.holding(-1)

    def _wait_out(self, resource: str, timeout: float, state: ControlState, started: float,
                  started_ns: int) -> ControlState:
        while resource in state.locks:
            remaining = started + timeout - self._clock()
            if remaining <= 0:
                counters.count("hold_timeouts")
                waited = self._clock() - started
                spans.span("resil.hold", started_ns, spans.now_ns(), {
                    "resil.resource": resource, "resil.held_ms": waited * 1000,
                    "resil.epoch": state.epoch, "resil.outcome": "timeout"})
                raise LockTimeoutError(resource, waited, state.locks[resource].holder)
            changed = self._wait(state.epoch, remaining)
            if changed.epoch == state.epoch:
                # Woken without a new epoch (the agent is stopping): do not spin.
                time.sleep(min(0.05, max(remaining, 0.0)))
            state = changed
        held = self._clock() - started
        counters.observe_hold(held)
        spans.span("resil.hold", started_ns, spans.now_ns(), {
            "resil.resource": resource, "resil.held_ms": held * 1000,
            "resil.epoch": state.epoch, "resil.outcome": "released"})
        return state
