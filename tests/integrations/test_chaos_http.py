"""Chaos faults on HTTP calls (requests, urllib3, httpx, urllib.request), against real
loopback servers: two units of two servers each, the agent in this process in unit a.

A fault is published as control state (the file control plane), as ``resil chaos
inject`` does; the agent applies it at the client seams.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

import resil
from resil import counters, registry
from resil.config import load_config
from resil.control import open_control_plane
from resil.faults import Fault
from resil.state import ControlState
from servers.web import HttpUnits

NO_EJECTION = "eject_after = 1000\nretry_budget_min = 10000\nretries = 0\n"
FAST_EJECTION = "eject_after = 2\neject_time = 5\nretry_budget_min = 100\n"


@pytest.fixture(scope="module")
def units() -> Iterator[HttpUnits]:
    with HttpUnits() as running:
        yield running


@pytest.fixture
def agent(write_config, tmp_path, units) -> Callable[..., Callable[..., Fault]]:
    """Start the agent with ``extra`` resource keys; returns ``inject(**fields)``, which
    publishes a fault and waits until the agent applied it."""
    def start(extra: str = NO_EJECTION, unit: str = "a",
              signing: str = "") -> Callable[..., Fault]:
        path = write_config(
            f'unit = "{unit}"\n[control]\nurl = "{(tmp_path / "state.json").as_uri()}"\n'
            f'poll_interval = 0.01\n{signing}[admin]\nlisten = "off"\n'
            + units.toml("products", extra))
        resil.start(path)
        config = load_config(path)
        plane = open_control_plane(config.control_url, config.topology, config.signing_key)

        def inject(ttl: float = 60.0, replace: bool = False, **fields) -> Fault:
            signal = plane.load()
            state = signal.state if signal else ControlState.initial(config.topology)
            now = time.time()
            fault = Fault(fields.pop("id", f"f{len(state.faults) + 1}"), "products",
                          now + ttl, now, **fields)
            kept = () if replace else state.faults
            epoch = plane.publish(state.evolve(faults=(*kept, fault)),
                                  issuer="test").epoch
            deadline = time.monotonic() + 5
            while registry.runtime().current_state().epoch < epoch:
                assert time.monotonic() < deadline, "the agent did not apply the fault"
                time.sleep(0.01)
            return fault
        return inject
    return start


def test_an_error_rate_is_applied_per_call_and_only_to_the_faulted_unit(agent):
    import requests
    inject = agent()
    inject(unit="a", error_rate=0.3, kind="error", status=503, seed=1)
    statuses = Counter()
    units_seen = Counter()
    with requests.Session() as session:
        for i in range(400):
            response = session.post(f"http://products/p{i}", data=b"x", timeout=5)
            statuses[response.status_code] += 1
            if response.status_code == 200:
                units_seen[response.json()["unit"]] += 1
    assert 0.22 < statuses[503] / 400 < 0.38, statuses
    assert set(statuses) == {200, 503}
    assert set(units_seen) == {"a"}, "no ejection here: every call went to unit a"
    assert counters.stats()["chaos_injected:f1:products:error"] == statuses[503]


def test_the_callers_unit_scopes_a_fault(agent):
    import requests
    inject = agent()
    inject(caller="b", error_rate=1.0, kind="reset")     # only instances of unit b
    inject(unit="b", error_rate=1.0, kind="reset")       # only calls to unit b
    for i in range(50):
        assert requests.post(f"http://products/{i}", data=b"x", timeout=5).status_code == 200
    assert not any(k.startswith("chaos_injected") for k in counters.stats())


def test_injected_errors_are_the_clients_own_errors(agent):
    import httpx
    import requests
    import urllib3
    inject = agent()
    inject(unit="a", error_rate=1.0, kind="refused")
    with pytest.raises(requests.exceptions.ConnectionError, match="(?i)refused"):
        requests.post("http://products/x", data=b"x", timeout=5)
    with pytest.raises(urllib3.exceptions.MaxRetryError, match="(?i)refused"):
        urllib3.PoolManager(retries=urllib3.Retry(0)).request("POST", "http://products/x")
    with pytest.raises(httpx.ConnectError), httpx.Client() as client:
        client.post("http://products/x", content=b"x")
    with pytest.raises(urllib.error.URLError, match="(?i)refused"):
        urllib.request.urlopen(urllib.request.Request("http://products/x", data=b"x"),
                               timeout=5)


def test_a_reset_and_a_black_hole_look_real(agent):
    import requests
    inject = agent()
    inject(unit="a", error_rate=1.0, kind="reset")
    with pytest.raises(requests.exceptions.ConnectionError, match="(?i)reset|aborted"):
        requests.post("http://products/x", data=b"x", timeout=5)
    inject(unit="a", loss=1.0, replace=True)        # every call is lost
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError):
        try:
            requests.post("http://products/x", data=b"x", timeout=0.4)
        except requests.exceptions.Timeout as exc:    # ReadTimeout is a ConnectionError too
            raise requests.exceptions.ConnectionError(str(exc)) from exc
    assert time.monotonic() - started >= 0.35, "a lost call waits for its own timeout"


def test_latency_is_added_to_every_call(agent):
    import httpx
    inject = agent()
    inject(unit="a", latency=0.12, jitter=0.03)
    with httpx.Client() as client:
        for _ in range(5):
            started = time.monotonic()
            assert client.get("http://products/x").status_code == 200
            assert 0.12 <= time.monotonic() - started < 1.0

    async def run() -> float:
        async with httpx.AsyncClient() as client:
            started = time.monotonic()
            assert (await client.get("http://products/x")).status_code == 200
            return time.monotonic() - started
    assert asyncio.run(run()) >= 0.12


def test_an_expired_fault_stops_with_no_one_clearing_it(agent):
    import requests
    inject = agent()
    inject(unit="a", error_rate=1.0, kind="error", ttl=0.6)
    assert requests.post("http://products/x", data=b"x", timeout=5).status_code == 503
    time.sleep(0.7)
    for _ in range(20):
        assert requests.post("http://products/x", data=b"x", timeout=5).status_code == 200


def test_routing_ejects_and_retries_around_a_faulted_unit_with_no_failed_safe_call(agent):
    import requests
    inject = agent(FAST_EJECTION)
    inject(unit="a", error_rate=1.0, kind="reset")
    seen = Counter()
    with requests.Session() as session:
        for i in range(100):
            response = session.get(f"http://products/items/{i}", timeout=5)
            assert response.status_code == 200, "a safe call never fails"
            seen[response.json()["unit"]] += 1
    assert seen == {"b": 100}
    stats = counters.stats()
    assert sum(v for k, v in stats.items() if k.startswith("http_ejections:products")) == 2, \
        "both endpoints of unit a were ejected by their injected failures"
    assert stats["chaos_injected:f1:products:reset"] <= 6, \
        "once ejected, unit a's endpoints are not called (nor faulted) any more"


def test_a_replayed_fault_signal_is_ignored(agent, tmp_path):
    import requests
    inject = agent()
    inject(unit="a", error_rate=1.0, kind="error")
    state_file = tmp_path / "state.json"
    faulted = state_file.read_bytes()
    assert requests.post("http://products/x", data=b"x", timeout=5).status_code == 503
    inject(unit="b", latency=0.001, replace=True)       # the fault on a is cleared
    state_file.write_bytes(faulted)                     # an adversary puts it back
    time.sleep(0.3)                                     # many polls of the file
    assert registry.runtime().current_state().faults[0].unit == "b"
    for _ in range(10):
        assert requests.post("http://products/x", data=b"x", timeout=5).status_code == 200


_httpx = None


def _post(client: str) -> bool:
    """One POST to products with ``client``; whether it succeeded (a 2xx)."""
    import httpx
    import requests
    import urllib3
    try:
        if client == "requests":
            return requests.post("http://products/r", data=b"x", timeout=2).ok
        if client == "urllib3":
            return urllib3.request("POST", "http://products/r", body=b"x", timeout=2,
                                   retries=False).status < 400
        if client == "httpx":
            global _httpx
            _httpx = _httpx or httpx.Client(timeout=2)      # a client costs ~40 ms here
            return _httpx.post("http://products/r", content=b"x").is_success
        with urllib.request.urlopen(urllib.request.Request("http://products/r", data=b"x"),
                                    timeout=2) as answer:
            return answer.status < 400
    except Exception:
        return False


@pytest.mark.parametrize("client", ["requests", "urllib3", "httpx", "urllib.request"])
@pytest.mark.parametrize("kind", ["refused", "reset", "error"])
def test_each_kind_fails_its_share_of_calls_with_each_client(agent, client, kind):
    inject = agent()
    fault = inject(unit="a", error_rate=0.3, kind=kind, seed=21)
    failed = sum(not _post(client) for _ in range(200))
    assert 0.2 < failed / 200 < 0.4, failed
    assert counters.stats()[f"chaos_injected:{fault.id}:products:{kind}"] == failed


def test_a_signing_agent_applies_signed_faults_only(agent, monkeypatch, tmp_path):
    import requests

    from resil.state import encode_signal, make_signal
    monkeypatch.setenv("CHAOS_TEST_KEY", "k" * 32)
    inject = agent(signing='signing_key_env = "CHAOS_TEST_KEY"\n')
    inject(unit="a", error_rate=1.0, kind="error")         # signed with the key
    assert requests.post("http://products/x", data=b"x", timeout=5).status_code == 503
    state = registry.runtime().current_state()
    now = time.time()
    cleared = state.evolve(faults=(Fault("evil", "products", now + 60, now, unit="b",
                                         error_rate=1.0),))
    unsigned = encode_signal(make_signal(cleared, issuer="x", issued_at=now, key=None))
    forged = encode_signal(make_signal(cleared, issuer="x", issued_at=now, key=b"x" * 32))
    for data in (unsigned, forged):
        (tmp_path / "state.json").write_bytes(data)
        time.sleep(0.2)
        assert [f.id for f in registry.runtime().current_state().faults] == ["f1"]
        assert requests.post("http://products/x", data=b"x", timeout=5).status_code == 503


def test_stopping_the_agent_stops_the_chaos_listener(agent):
    import threading

    import requests
    inject = agent()
    inject(unit="a", error_rate=1.0, kind="reset")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post("http://products/x", data=b"x", timeout=5)
    assert "resil-chaos" in {t.name for t in threading.enumerate()}
    resil.stop()
    assert "resil-chaos" not in {t.name for t in threading.enumerate()}
