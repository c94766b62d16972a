"""The write gate: what waits during a lock, and for how long (injected time, no sleeps)."""

from __future__ import annotations

import pytest

from resil.errors import LockTimeoutError
from resil.gate import Gate, must_hold
from resil.sql import Access
from resil.state import ControlState, Lock

LOCKED = ControlState().evolve(epoch=5, locks={"db": Lock("op@h:1", 0.0, "switch")})
UNLOCKED = LOCKED.evolve(epoch=6, locks={})


@pytest.mark.parametrize("access,autocommit,held", [
    (Access.WRITE, True, True), (Access.BEGIN, True, True), (Access.BEGIN_READ, True, True),
    (Access.READ, True, False), (Access.SESSION, True, False), (Access.END, True, False),
    (Access.READ, False, True),       # with autocommit off a SELECT opens a transaction
    (Access.SESSION, False, False), (Access.END, False, False),
])
def test_what_waits(access, autocommit, held):
    assert must_hold(access, autocommit) is held


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_unlocked_passes_at_once():
    clock = Clock()
    gate = Gate(lambda: UNLOCKED, lambda epoch, timeout: pytest.fail("waited"), clock)
    assert gate.hold("db", 5.0) is UNLOCKED


def test_held_until_the_lock_goes():
    clock = Clock()
    states = iter([LOCKED.evolve(epoch=6), UNLOCKED.evolve(epoch=7)])  # a lock, then none

    def wait(epoch: int, timeout: float) -> ControlState:
        clock.now += 0.2
        return next(states)
    gate = Gate(lambda: LOCKED, wait, clock)
    assert gate.hold("db", 5.0).epoch == 7
    assert clock.now == pytest.approx(100.4)


def test_gives_up_after_lock_timeout_naming_the_holder():
    clock = Clock()
    epochs = iter(range(6, 100))

    def wait(epoch: int, timeout: float) -> ControlState:
        clock.now += timeout                       # nothing changes before the deadline
        return LOCKED.evolve(epoch=next(epochs))
    gate = Gate(lambda: LOCKED, wait, clock)
    with pytest.raises(LockTimeoutError, match="op@h:1") as info:
        gate.hold("db", 0.5)
    assert info.value.resource == "db" and info.value.waited == pytest.approx(0.5)
    assert "safe to retry" in str(info.value)


def test_other_resources_locks_do_not_hold():
    gate = Gate(lambda: LOCKED, lambda e, t: pytest.fail("waited"), Clock())
    assert gate.hold("cache", 5.0) is LOCKED
