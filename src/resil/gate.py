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

:meth:`Gate.hold` blocks the calling thread; :meth:`Gate.hold_async` is the same hold
for asyncio callers, awaited without blocking the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from . import counters, spans
from .errors import LockTimeoutError
from .sql import Access
from .state import ControlState

#: Statements that run at once on a locked resource in autocommit mode.
_PASS_AUTOCOMMIT = frozenset({Access.READ, Access.SESSION, Access.END})
#: With autocommit off any statement but these opens a transaction: it waits.
_PASS_IN_MANUAL_COMMIT = frozenset({Access.SESSION, Access.END})
#: Seconds between two looks at the control state while an asyncio caller is held.
ASYNC_POLL_INTERVAL = 0.01


def must_hold(access: Access, autocommit: bool) -> bool:
    """Whether a statement at a transaction boundary must wait for a lock to clear."""
    return access not in (_PASS_AUTOCOMMIT if autocommit else _PASS_IN_MANUAL_COMMIT)


class Gate:
    """Holds callers until a resource is unlocked (or its lock timeout expires)."""

    def __init__(self, state: Callable[[], ControlState],
                 wait_for_change: Callable[[int, float], ControlState],
                 clock: Callable[[], float] = time.monotonic,
                 sleep_async: Callable[[float], Awaitable[object]] | None = None,
                 on_hold: Callable[[], object] | None = None) -> None:
        self._state = state
        self._wait = wait_for_change
        self._clock = clock
        self._sleep_async = sleep_async     # between polls of hold_async; asyncio.sleep
        self._on_hold = on_hold             # a caller just got held: report it soon

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
        if self._on_hold is not None:
            self._on_hold()
        try:
            return self._wait_out(resource, timeout, state, started, started_ns)
        finally:
            counters.holding(-1)

    async def hold_async(self, resource: str, timeout: float) -> ControlState:
        """:meth:`hold` for asyncio: the same waits, counts and spans, but it awaits
        (polling the control state every 10 ms) and never blocks the event loop."""
        state = self._state()
        if resource not in state.locks:
            return state
        sleep = self._sleep_async
        if sleep is None:
            import asyncio  # here, not at the top: asyncio would slow every start-up
            sleep = asyncio.sleep
        started = self._clock()
        started_ns = spans.now_ns()
        counters.count("held_writes")
        counters.holding(+1)
        if self._on_hold is not None:
            self._on_hold()
        try:
            while resource in state.locks:
                remaining = started + timeout - self._clock()
                if remaining <= 0:
                    raise self._timed_out(resource, state, started, started_ns)
                # Polled: the agent signals changes to threads (a Condition), not to loops.
                await sleep(min(ASYNC_POLL_INTERVAL, remaining))
                state = self._state()
            return self._released(resource, state, started, started_ns)
        finally:
            counters.holding(-1)

    def _wait_out(self, resource: str, timeout: float, state: ControlState, started: float,
                  started_ns: int) -> ControlState:
        while resource in state.locks:
            remaining = started + timeout - self._clock()
            if remaining <= 0:
                raise self._timed_out(resource, state, started, started_ns)
            changed = self._wait(state.epoch, remaining)
            if changed.epoch == state.epoch:
                # Woken without a new epoch (the agent is stopping): do not spin.
                time.sleep(min(0.05, max(remaining, 0.0)))
            state = changed
        return self._released(resource, state, started, started_ns)

    def _released(self, resource: str, state: ControlState, started: float,
                  started_ns: int) -> ControlState:
        held = self._clock() - started
        counters.observe_hold(held)
        spans.span("resil.hold", started_ns, spans.now_ns(), {
            "resil.resource": resource, "resil.held_ms": held * 1000,
            "resil.epoch": state.epoch, "resil.outcome": "released"})
        return state

    def _timed_out(self, resource: str, state: ControlState, started: float,
                   started_ns: int) -> LockTimeoutError:
        counters.count("hold_timeouts")
        waited = self._clock() - started
        spans.span("resil.hold", started_ns, spans.now_ns(), {
            "resil.resource": resource, "resil.held_ms": waited * 1000,
            "resil.epoch": state.epoch, "resil.outcome": "timeout"})
        return LockTimeoutError(resource, waited, state.locks[resource].holder)
