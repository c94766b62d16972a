"""Chaos faults as control state: their codec, their checks, signing, expiry and draws."""

from __future__ import annotations

import json
import time
from types import MappingProxyType

import pytest

from resil import chaos, counters
from resil.config import load_config
from resil.errors import SignalError
from resil.faults import MAX_TTL, Fault, check
from resil.state import ControlState, decode_signal, encode_signal, make_signal

CONFIG = """
unit = "a"
[control]
url = "file:///tmp/unused-state.json"
[resources.products]
kind = "http"
endpoints = { a = "http://127.0.0.1:8001", b = "http://127.0.0.1:8002" }
[resources.orders-db]
kind = "mysql"
endpoints = { a = "127.0.0.1:3306", b = "127.0.0.1:3307" }
primary = "a"
"""


@pytest.fixture
def topology(write_config):
    return load_config(write_config(CONFIG), env={}).topology


def fault(ttl: float = 60.0, **fields) -> Fault:
    now = time.time()
    values = {"id": "f1", "resource": "products", "until": now + ttl, "created": now,
              "error_rate": 0.5}
    values.update(fields)
    return Fault(**values)


def signal_of(topology, *faults, key=None, epoch=3):
    state = ControlState.initial(topology).evolve(epoch=epoch, faults=faults)
    return encode_signal(make_signal(state, issuer="test", issued_at=time.time(), key=key))


def test_faults_travel_in_the_signal_and_come_back_equal(topology):
    sent = (fault(unit="b", caller="a", latency=0.2, jitter=0.05, kind="error", status=502,
                  seed=7, by="ops@host:1"),
            fault(id="f2", resource="orders-db", loss=0.3, error_rate=0.0))
    state = decode_signal(signal_of(topology, *sent), topology, None).state
    assert state.faults == sent
    assert "faults" not in ControlState.initial(topology).to_dict(), \
        "a state without faults reads as before to an older agent"


def test_signed_unsigned_and_forged_fault_signals(topology):
    key = b"k" * 32
    signed = signal_of(topology, fault(), key=key)
    assert decode_signal(signed, topology, key).state.faults[0].id == "f1"
    with pytest.raises(SignalError, match="unsigned"):
        decode_signal(signal_of(topology, fault()), topology, key)
    body = json.loads(signed)
    body["state"]["faults"][0]["error_rate"] = 1.0      # a tampered rate
    with pytest.raises(SignalError, match="forged"):
        decode_signal(json.dumps(body).encode(), topology, key)


@pytest.mark.parametrize(("fields", "problem"), [
    ({"error_rate": 1.5}, "error rate"),
    ({"error_rate": -0.1}, "error rate"),
    ({"loss": float("nan")}, "loss"),
    ({"error_rate": 0.7, "loss": 0.5}, "more than 1"),
    ({"latency": -1.0}, "latency"),
    ({"kind": "explode"}, "kind"),
    ({"status": 404}, "5xx"),
    ({"error_rate": 0.0}, "no effect"),
    ({"until": 0.0}, "no expiry"),
    ({"ttl": MAX_TTL + 600}, "limit"),
    ({"unit": "mars"}, "not one of the units"),
])
def test_nonsense_faults_are_refused_naming_the_problem(topology, fields, problem):
    bad = fault(**fields)
    assert problem in check(bad, topology.units)
    if any(v != v for v in fields.values()):
        return                  # NaN has no JSON form: no signal can carry it
    with pytest.raises(SignalError, match="fault 1 \\(f1\\)"):
        decode_signal(signal_of(topology, bad), topology, None)


def test_a_fault_dated_ahead_cannot_outlive_its_ttl(topology):
    ahead = time.time() + 30 * 24 * 3600       # a creation time far in the future
    bad = fault(created=ahead, until=ahead + 3600)
    assert check(bad, topology.units) is None, "its own span is one hour"
    with pytest.raises(SignalError, match="more than the limit"):
        decode_signal(signal_of(topology, bad), topology, None)


def test_a_fault_on_an_unknown_resource_is_dropped_like_an_unknown_primary(topology):
    state = decode_signal(signal_of(topology, fault(resource="newer-service")), topology,
                          None).state
    assert state.faults == ()


def test_matching_by_resource_unit_endpoint_caller_and_expiry(topology):
    now = time.time()
    state = ControlState(faults=(
        fault(id="to-b", unit="b"), fault(id="from-a", caller="a"),
        fault(id="one", endpoint="http://127.0.0.1:8001"),
        fault(id="old", until=now - 1, created=now - 10), fault(id="db", resource="orders-db")))

    def ids(unit, endpoint, caller, at=now):
        return {f.id for f in chaos.matching(state, "products", unit, endpoint, caller, at)}
    assert ids("a", "http://127.0.0.1:8001", "a") == {"from-a", "one"}
    assert ids("b", "http://127.0.0.1:8002", "a") == {"to-b", "from-a"}
    assert ids("b", "http://127.0.0.1:8002", "b") == {"to-b"}
    assert ids("a", "http://127.0.0.1:8009", "b") == set()
    assert ids("b", "x", "a", at=now + 120) == set(), "every fault expired, no one cleared it"


def test_rates_hold_and_a_seed_repeats_the_draws(topology):
    resource = topology.resources["products"]
    endpoint = resource.endpoint_in("a")
    counters.reset()

    def run(seed):
        chaos.reset_generators()
        state = ControlState(faults=(fault(error_rate=0.3, loss=0.2, kind="refused",
                                           seed=seed),))
        outcomes = []
        for _ in range(2000):
            effect = chaos.draw(state, resource, endpoint, "a")
            outcomes.append(effect.kind if effect else "")
        return outcomes
    first = run(11)
    assert counters.stats()["chaos_injected:f1:products:refused"] == first.count("refused")
    assert 0.26 < first.count("refused") / 2000 < 0.34
    assert 0.16 < first.count("timeout") / 2000 < 0.24
    assert run(11) == first, "the same seed draws the same calls"
    assert run(12) != first


def test_latency_and_jitter_are_drawn_per_call(topology):
    resource = topology.resources["products"]
    state = ControlState(faults=(fault(error_rate=0.0, latency=0.1, jitter=0.05),))
    delays = [chaos.draw(state, resource, resource.endpoint_in("a"), "a").delay
              for _ in range(500)]
    assert min(delays) >= 0.1 and max(delays) <= 0.15
    assert max(delays) - min(delays) > 0.04


def test_no_fault_no_effect(topology):
    resource = topology.resources["products"]
    assert ControlState.initial(topology).faults == ()
    state = ControlState(weights=MappingProxyType({}), faults=(fault(unit="b"),))
    assert chaos.draw(state, resource, resource.endpoint_in("a"), "a") is None
