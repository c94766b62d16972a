"""Outlier detection (resil.health), the HTTP router and the retry budget, on a fake clock."""

from __future__ import annotations

from collections import Counter
from types import MappingProxyType

import pytest

from resil.health import ResourceHealth
from resil.retry import RetryBudget, repeatable
from resil.router import Router
from resil.state import ControlState
from resil.topology import Endpoint, HttpPolicy, Resource, Topology


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def resource(per_unit: int = 2, **policy: object) -> Resource:
    endpoints = {u: tuple(Endpoint("svc", u, "127.0.0.1", port, f"http://127.0.0.1:{port}")
                          for port in range(base, base + per_unit))
                 for u, base in (("a", 8000), ("b", 9000))}
    return Resource("svc", "http", MappingProxyType(endpoints),
                    http=HttpPolicy(**policy))  # type: ignore[arg-type]


def test_consecutive_failures_eject_and_a_probe_restores():
    clock = Clock()
    svc = resource(eject_after=3, eject_time=10)
    health = ResourceHealth(svc, clock)
    ep = svc.endpoints["a"][0]
    health.failure(ep)
    health.success(ep)              # a success resets the count
    assert not health.failure(ep) and not health.failure(ep)
    assert health.failure(ep), "the third consecutive failure ejects"
    assert not health.take(ep)
    clock.now += 9.9
    assert not health.take(ep)
    clock.now += 0.2
    assert not health.take(ep, probe=False), "a call that cannot be retried never probes"
    assert health.take(ep), "half-open: one probe"
    assert not health.take(ep), "... and only one at a time"
    health.success(ep)
    assert health.snapshot()[str(ep)]["state"] == "healthy"
    assert health.take(ep) and health.take(ep)


def test_repeated_ejections_last_longer_and_a_failed_probe_ejects_again():
    clock = Clock()
    svc = resource(eject_after=1, eject_time=10)
    health = ResourceHealth(svc, clock)
    ep = svc.endpoints["a"][0]
    assert health.failure(ep)
    clock.now += 10
    assert health.take(ep)
    assert health.failure(ep), "a failed probe ejects at once"
    assert health.snapshot()[str(ep)]["ejected_for_s"] == 20, "for twice as long"
    clock.now += 20
    assert health.take(ep)
    health.release(ep)              # the caller's own error: no verdict, slot given back
    assert health.take(ep)


def test_at_most_max_ejected_percent_but_always_one():
    svc = resource(eject_after=1, max_ejected_percent=50)
    health = ResourceHealth(svc, Clock())
    eps = [e for eps in svc.endpoints.values() for e in eps]
    assert [health.failure(e) for e in eps] == [True, True, False, False]
    tiny = ResourceHealth(resource(per_unit=1, eject_after=1, max_ejected_percent=0), Clock())
    assert tiny.failure(tiny.resource.endpoints["a"][0])


def test_panic_below_the_threshold():
    svc = resource(eject_after=1, max_ejected_percent=100, panic_threshold=50)
    health = ResourceHealth(svc, Clock())
    eps = [e for eps in svc.endpoints.values() for e in eps]
    health.failure(eps[0])
    health.failure(eps[1])
    assert not health.panic(), "2 of 4 healthy is not below 50 %"
    health.failure(eps[2])
    assert health.panic()


def router_for(svc: Resource, weights: dict[str, float] | None = None,
               unit: str = "a") -> tuple[Router, Clock]:
    topology = Topology(unit, ("a", "b"), MappingProxyType({"svc": svc}))
    state = ControlState.initial(topology)
    if weights is not None:
        state = state.evolve(weights=weights)
    clock = Clock()
    return Router(topology, lambda: state, clock), clock


def test_own_unit_first_spread_over_its_endpoints():
    svc = resource()
    router, _ = router_for(svc)
    picks = Counter(router.pick(svc) for _ in range(100))
    assert set(picks) == set(svc.endpoints["a"]) and min(picks.values()) >= 40


def test_retries_go_to_another_unit_first():
    svc = resource()
    router, _ = router_for(svc)
    first = router.pick(svc)
    second = router.pick(svc, [first])
    third = router.pick(svc, [first, second])
    assert (first.unit, second.unit, third.unit) == ("a", "b", "a") and third != first
    everything = [e for eps in svc.endpoints.values() for e in eps]
    assert router.pick(svc, everything) is None


def test_a_cut_or_unhealthy_own_unit_sends_calls_elsewhere():
    svc = resource(eject_after=1)
    router, _ = router_for(svc, weights={"a": 0, "b": 1})
    assert {router.pick(svc).unit for _ in range(20)} == {"b"}
    router, _ = router_for(svc)
    for ep in svc.endpoints["a"]:
        router.health(svc).failure(ep)
    assert {router.pick(svc).unit for _ in range(20)} == {"b"}
    router, _ = router_for(svc, weights={"a": 0, "b": 0})
    assert router.pick(svc).unit == "a", "everything cut: weights are ignored"


def test_other_units_are_chosen_by_weight():
    endpoints = {u: (Endpoint("svc", u, "127.0.0.1", p, f"http://127.0.0.1:{p}"),)
                 for u, p in (("a", 1), ("b", 2), ("c", 3))}
    svc = Resource("svc", "http", MappingProxyType(endpoints))
    topology = Topology("a", ("a", "b", "c"), MappingProxyType({"svc": svc}))
    state = ControlState.initial(topology).evolve(weights={"a": 0, "b": 1, "c": 3})
    router = Router(topology, lambda: state)
    picks = Counter(router.pick(svc).unit for _ in range(2000))
    assert 0.2 < picks["b"] / 2000 < 0.3


def test_retry_budget_is_a_fraction_of_recent_calls_plus_a_floor():
    clock = Clock()
    budget = RetryBudget(0.2, 0.1, clock)       # floor: 0.1/s over 10 s = 1 retry
    for _ in range(50):
        budget.record_call()
    assert sum(budget.withdraw() for _ in range(20)) == 11
    clock.now += 11                            # the window has passed
    assert budget.withdraw() and not budget.withdraw()


@pytest.mark.parametrize(("method", "headers", "replayable", "expected"), [
    ("GET", {}, True, True), ("DELETE", {}, True, True), ("POST", {}, True, False),
    ("POST", {"Idempotency-Key": "x"}, True, True), ("PATCH", {"idempotency-key": "1"}, True, True),
    ("GET", {}, False, False)])
def test_what_is_safe_to_repeat(method, headers, replayable, expected):
    assert repeatable(method, headers, replayable) is expected


def test_a_lossy_endpoint_is_ejected_by_its_failure_percentage():
    clock = Clock()
    svc = resource(eject_after=5, eject_time=10, eject_failure_percent=40, eject_min_calls=10)
    health = ResourceHealth(svc, clock)
    ep = svc.endpoints["a"][0]
    ejected = []
    for i in range(12):     # one call in two fails: never five in a row
        clock.now += 0.1
        if i % 2:
            ejected.append(health.failure(ep))
        else:
            health.success(ep)
    # The window opens at the first failure (call 2): at call 12 it holds 11 calls, 6 failed.
    assert ejected == [False, False, False, False, False, True]
    assert not health.take(ep)
    assert health.snapshot()[str(ep)]["state"] == "ejected"


def test_the_failure_percentage_needs_enough_calls_in_its_window():
    clock = Clock()
    svc = resource(eject_after=5, eject_failure_percent=40, eject_min_calls=10)
    health = ResourceHealth(svc, clock)
    ep = svc.endpoints["a"][0]
    for _ in range(20):     # one call in two fails, but 11 s apart: every window has 2
        health.failure(ep)
        clock.now += 0.1
        health.success(ep)
        clock.now += 11
    assert health.snapshot()[str(ep)]["state"] == "healthy"
    for _ in range(30):     # one failure in four: below 40 %
        for failed in (True, False, False, False):
            clock.now += 0.05
            health.failure(ep) if failed else health.success(ep)
    assert health.snapshot()[str(ep)]["state"] == "healthy"


def test_without_a_failure_percentage_only_consecutive_failures_eject():
    clock = Clock()
    svc = resource(eject_after=5)
    health = ResourceHealth(svc, clock)
    ep = svc.endpoints["a"][0]
    for _ in range(100):
        health.failure(ep)
        health.success(ep)
    assert health.snapshot()[str(ep)]["state"] == "healthy"
    assert health._state[ep].window_calls == 0, "no window is kept: successes take no lock"
