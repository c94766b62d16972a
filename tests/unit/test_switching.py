"""The hot-switch protocol's decision tables, without servers or drivers.

A tiny runtime stands in for the agent: a real :class:`~resil.router.Router` and
:class:`~resil.gate.Gate` over a control state the test sets, on an injected clock
(holding never sleeps: waiting for a change applies the next state the test queued).
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

import pytest

from resil import context, counters
from resil.errors import LockTimeoutError
from resil.gate import Gate
from resil.router import Router
from resil.state import ControlState, Lock
from resil.switching import (
    AfterError,
    Boundary,
    ErrorKind,
    after_error,
    at_boundary,
    await_new_primary,
    hold_if_locked,
    must_wait,
    stale,
    switching,
)
from resil.topology import Endpoint, Resource, Topology

A = ("10.0.1.5", 3306)
B = ("10.0.2.5", 3306)
DB = Resource(name="db", kind="mysql", primary="a", lock_timeout=5.0, endpoints={
    "a": (Endpoint("db", "a", *A),), "b": (Endpoint("db", "b", *B),)})
TOPOLOGY = Topology("a", ("a", "b"), MappingProxyType({"db": DB}))
LOCK = Lock("op@h:1", 0.0, "switch")
START = ControlState.initial(TOPOLOGY).evolve(epoch=5)


class Runtime:
    """What :mod:`resil.switching` may ask of the agent (:class:`resil.runtime.Runtime`)."""

    def __init__(self, state: ControlState) -> None:
        self.state = state
        self.now = 100.0
        self.queued: list[ControlState] = []    # applied one per wait_for_change
        self.refreshed = 0
        self.on_refresh: ControlState | None = None
        self.router = Router(TOPOLOGY, self.current_state)
        self.gate = Gate(self.current_state, self.wait_for_change, lambda: self.now)
        self.config = None

    def current_state(self) -> ControlState:
        return self.state

    def refresh(self) -> None:
        self.refreshed += 1
        if self.on_refresh is not None:
            self.state, self.on_refresh = self.on_refresh, None

    def unreachable(self, resource: str, endpoint: str) -> None:
        pass

    def reachable(self, resource: str, endpoint: str) -> None:
        pass

    def wait_marked(self, resource: str, epoch: int, timeout: float) -> bool:
        return True

    def wait_for_change(self, epoch: int, timeout: float) -> ControlState:
        if self.queued:
            self.now += 0.1
            self.state = self.queued.pop(0)
        else:
            # Nothing comes before the deadline (a lock is re-published: the gate sees
            # a new epoch and does not back off for real).
            self.now += timeout
            self.state = self.state.evolve(epoch=self.state.epoch + bool(self.state.locks))
        return self.state


class Record:
    """A driver connection's record (resil.integrations._tracking.Tracked)."""

    def __init__(self, epoch: int) -> None:
        self.resource, self.epoch, self.busy = DB, epoch, True


def moved(state: ControlState, epoch: int | None = None) -> ControlState:
    return state.evolve(epoch=epoch, primaries={"db": "b"}, locks={})


def locked(state: ControlState) -> ControlState:
    return state.evolve(locks={"db": LOCK})


def asked(answer: bool) -> tuple[list[int], Callable[[], bool]]:
    calls: list[int] = []

    def ask() -> bool:
        calls.append(1)
        return answer
    return calls, ask


# ------------------------------------------------------------------------ at_boundary

def boundary(runtime: Runtime, record: Record, *, in_transaction: bool = False,
             hold: bool = True, at: tuple[str, int] = A) -> Boundary:
    return at_boundary(runtime, record, at, in_transaction=in_transaction,
                       must_hold=lambda: hold)


def test_nothing_changed_runs():
    record = Record(5)
    assert boundary(Runtime(START), record) is Boundary.RUN and record.epoch == 5


def test_primary_moved_moves_and_leaves_the_epoch_to_the_reconnect():
    record = Record(5)
    assert boundary(Runtime(moved(START)), record) is Boundary.MOVE
    assert record.epoch == 5


def test_state_changed_but_primary_did_not_checks_once():
    runtime, record = Runtime(START.evolve()), Record(5)    # e.g. a switch rolled back
    assert boundary(runtime, record) is Boundary.CHECK and record.epoch == 6
    assert boundary(runtime, record) is Boundary.RUN


def test_already_on_the_new_primary_is_checked_not_moved():
    record = Record(5)
    assert boundary(Runtime(moved(START)), record, at=B) is Boundary.CHECK
    assert record.epoch == 6


def test_an_open_transaction_finishes_where_it_started():
    record = Record(5)
    runtime = Runtime(locked(moved(START)))
    calls, ask = asked(True)
    found = at_boundary(runtime, record, A, in_transaction=True, must_hold=ask)
    assert found is Boundary.RUN and record.epoch == 5 and not calls


def test_a_write_while_locked_is_held_then_moved():
    runtime, record = Runtime(locked(START)), Record(5)
    seen: list[bool] = []
    original = runtime.wait_for_change

    def wait(epoch: int, timeout: float) -> ControlState:
        seen.append(record.busy)            # a held statement is not in flight
        return original(epoch, timeout)
    runtime.gate = Gate(runtime.current_state, wait, lambda: runtime.now)
    runtime.queued = [moved(runtime.state)]
    assert boundary(runtime, record) is Boundary.MOVE
    # Still not in flight when it wakes to move: the agent applying the state that woke
    # it cuts what is in flight on the old primary, and must not count this one.
    assert seen == [False] and record.busy is False
    assert counters.stats()["held_writes"] == 1


def test_a_write_held_through_a_rollback_is_in_flight_again_where_it_was():
    runtime, record = Runtime(locked(START)), Record(5)
    runtime.queued = [START.evolve(epoch=START.epoch + 2)]   # unlocked, same primary
    assert boundary(runtime, record) is Boundary.CHECK
    assert record.busy is True


def test_a_move_is_not_in_flight_on_the_old_primary():
    record = Record(5)
    assert boundary(Runtime(moved(START)), record) is Boundary.MOVE
    assert record.busy is False


def test_a_read_while_locked_runs_where_it_is_and_is_looked_at_again():
    runtime, record = Runtime(locked(START)), Record(5)
    assert boundary(runtime, record, hold=False) is Boundary.RUN
    assert record.epoch == 5 and "held_writes" not in counters.stats()


def test_must_hold_is_asked_only_when_this_resource_is_locked():
    runtime = Runtime(START.evolve(locks={"other": LOCK}))
    calls, ask = asked(True)
    assert at_boundary(runtime, Record(5), A, in_transaction=False,
                       must_hold=ask) is Boundary.CHECK
    assert not calls


def test_a_hold_that_times_out_raises_and_restores_busy():
    runtime, record = Runtime(locked(START)), Record(5)
    with pytest.raises(LockTimeoutError):
        boundary(runtime, record)
    assert record.busy is True and counters.stats()["hold_timeouts"] == 1


# ------------------------------------------------------------------------ stale

def test_stale_moves_a_pooled_connection_off_an_old_primary():
    assert stale(Runtime(moved(START)), Record(5), A) is Boundary.MOVE


def test_stale_never_checks_but_catches_up_the_epoch():
    record = Record(5)
    assert stale(Runtime(START.evolve()), record, A) is Boundary.RUN and record.epoch == 6


def test_stale_while_locked_neither_holds_nor_catches_up():
    record = Record(5)
    assert stale(Runtime(locked(START)), record, A) is Boundary.RUN and record.epoch == 5


# ------------------------------------------------------------------------ must_wait

@pytest.mark.parametrize("state,writes,waits", [
    (START, True, False),                           # not locked
    (locked(START), False, False),                  # a read
    (locked(START), True, True),
    (START.evolve(locks={"other": LOCK}), True, False),
])
def test_what_waits_outside_a_transaction(state, writes, waits):
    assert must_wait(Runtime(state), DB, lambda: writes) is waits


def test_resil_own_traffic_never_waits():
    with context.bypass():
        assert must_wait(Runtime(locked(START)), DB, lambda: True) is False


def test_hold_if_locked_says_whether_it_waited():
    runtime = Runtime(locked(START))
    runtime.queued = [moved(runtime.state)]
    assert hold_if_locked(runtime, DB, lambda: True) is True
    assert runtime.state.primaries["db"] == "b"
    assert hold_if_locked(runtime, DB, lambda: True) is False


# ------------------------------------------------------------------------ after_error

RAISE, INTERRUPT, REPLAY = AfterError.RAISE, AfterError.INTERRUPT, AfterError.REPLAY
REFUSED, LOST, OTHER = ErrorKind.REFUSED_READ_ONLY, ErrorKind.CONNECTION_LOST, ErrorKind.OTHER


@pytest.mark.parametrize("kind,switch,in_tx,may_replay,repeatable,expected", [
    (OTHER, True, False, True, True, RAISE),        # the application's own error
    (OTHER, True, True, True, True, RAISE),
    (LOST, False, False, True, True, RAISE),        # no switch: the network's doing
    (LOST, False, True, True, True, RAISE),
    (LOST, True, True, True, True, INTERRUPT),      # a switch cut the transaction
    (LOST, True, False, False, True, RAISE),        # COMMIT, BEGIN: never replayed
    (LOST, True, False, True, False, RAISE),        # a write may have run
    (LOST, True, False, True, True, REPLAY),        # a read: harmless twice
    (REFUSED, False, False, True, False, REPLAY),   # refused: not executed
    (REFUSED, True, True, True, False, INTERRUPT),
    (REFUSED, True, False, False, False, RAISE),
])
def test_after_error(kind, switch, in_tx, may_replay, repeatable, expected):
    runtime = Runtime(START.evolve() if switch else START)
    found = after_error(runtime, Record(5), kind, in_transaction=in_tx,
                        may_replay=may_replay, repeatable=lambda: repeatable)
    assert found is expected
    assert runtime.refreshed == (expected is REPLAY)    # a replay sees the newest state


def test_a_lock_alone_is_a_switch():
    runtime = Runtime(locked(START))
    assert switching(runtime, Record(5)) is True
    assert switching(Runtime(START), Record(5)) is False
    assert after_error(runtime, Record(5), LOST, in_transaction=True, may_replay=False,
                       repeatable=lambda: False) is INTERRUPT


def test_a_refused_statement_is_not_classified():
    calls, ask = asked(True)
    assert after_error(Runtime(START), Record(5), REFUSED, in_transaction=False,
                       may_replay=True, repeatable=ask) is REPLAY
    assert not calls


# ------------------------------------------------------------------------ await_new_primary

def test_a_refusal_replays_when_refresh_finds_the_new_primary():
    runtime = Runtime(START)
    runtime.on_refresh = moved(START)
    assert await_new_primary(runtime, DB, 5) is REPLAY and runtime.now == 100.0


def test_a_refusal_waits_for_the_new_primary_and_its_lock_to_clear():
    runtime = Runtime(START)
    runtime.queued = [locked(START), moved(START, epoch=7)]
    assert await_new_primary(runtime, DB, 5) is REPLAY
    assert runtime.state.epoch == 7 and counters.stats()["held_writes"] == 1


def test_a_refusal_with_no_new_state_in_time_raises():
    runtime = Runtime(START)
    assert await_new_primary(runtime, DB, 5) is RAISE
    assert runtime.now == pytest.approx(105.0)      # waited lock_timeout, no longer


def test_resil_own_refused_command_is_not_replayed():
    runtime = Runtime(START)
    runtime.on_refresh = moved(START)
    with context.bypass():
        assert await_new_primary(runtime, DB, 5) is RAISE
    assert runtime.refreshed == 0
