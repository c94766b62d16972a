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


class Loop:
    """An injected asyncio sleep: advances the clock and shows the state after each poll."""

    def __init__(self, clock: Clock, states: list[ControlState]) -> None:
        self.clock, self.states, self.state, self.slept = clock, states, LOCKED, []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.now += seconds
        if self.states:
            self.state = self.states.pop(0)


def test_async_hold_awaits_until_the_lock_goes():
    import asyncio

    from resil import counters
    clock = Clock()
    loop = Loop(clock, [LOCKED.evolve(epoch=6), UNLOCKED.evolve(epoch=7)])
    gate = Gate(lambda: loop.state, lambda e, t: pytest.fail("blocked the loop"), clock,
                sleep_async=loop.sleep)
    assert asyncio.run(gate.hold_async("db", 5.0)).epoch == 7
    assert loop.slept == [0.01, 0.01]                  # polled every 10 ms
    stats = counters.stats()
    assert stats["held_writes"] == 1 and stats["max_hold_s"] == pytest.approx(0.02)
    assert counters.holding() == 0


def test_async_hold_gives_up_after_lock_timeout():
    import asyncio

    from resil import counters
    clock = Clock()
    loop = Loop(clock, [])
    gate = Gate(lambda: loop.state, lambda e, t: pytest.fail("blocked the loop"), clock,
                sleep_async=loop.sleep)
    with pytest.raises(LockTimeoutError, match="op@h:1") as info:
        asyncio.run(gate.hold_async("db", 0.05))
    assert info.value.waited == pytest.approx(0.05)
    assert counters.stats()["hold_timeouts"] == 1 and counters.holding() == 0


def test_async_hold_of_an_unlocked_resource_does_not_wait():
    import asyncio
    gate = Gate(lambda: UNLOCKED, lambda e, t: pytest.fail("waited"), Clock(),
                sleep_async=lambda s: pytest.fail("slept"))
    assert asyncio.run(gate.hold_async("db", 5.0)) is UNLOCKED


def test_async_hold_sleeps_for_real_without_blocking_the_loop():
    import asyncio
    state = [LOCKED]
    gate = Gate(lambda: state[0], lambda e, t: pytest.fail("blocked the loop"))

    async def main() -> int:
        async def release() -> None:
            await asyncio.sleep(0.03)
            state[0] = UNLOCKED
        task = asyncio.create_task(release())       # runs only if the hold awaits
        held = await gate.hold_async("db", 2.0)
        await task
        return held.epoch
    assert asyncio.run(main()) == 6


def test_a_held_caller_is_announced_so_the_drain_sees_it_at_once():
    """The agent's heartbeat goes out when a write gets held (the switch's drain waits
    for the last one), not at its next 20 ms tick; nothing is announced when unlocked."""
    held = []
    states = iter([UNLOCKED])
    gate = Gate(lambda: LOCKED, lambda e, t: next(states), Clock(),
                on_hold=lambda: held.append(1))
    gate.hold("db", 5.0)
    assert held == [1]
    Gate(lambda: UNLOCKED, lambda e, t: pytest.fail("waited"), Clock(),
         on_hold=lambda: held.append(1)).hold("db", 5.0)
    assert held == [1]
