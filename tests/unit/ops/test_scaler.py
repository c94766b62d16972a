"""The scaler against real control planes: the load history stays within its memory cap
over a simulated two weeks (file and Redis), and the recommendation it publishes is what
every agent's admin endpoint serves — read by a real Prometheus parser and checked the
way KEDA's metrics-api scaler reads it — or, when it is forged or stale, a fallback that
says so."""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import resil
import resil.agent
from resil import scale
from resil.config import load_config
from resil.control import open_configured
from resil.ops import history
from resil.ops.scaler import Scaler

CONFIG = """
unit = "a"
[control]
url = "{url}"
{signing}
[admin]
listen = "{listen}"
[resources.db]
kind = "mysql"
primary = "a"
endpoints = {{ a = "127.0.0.1:3306", b = "127.0.0.1:3307" }}
[scaling]
history_days = {days}
history_series = 3
target_utilization = 0.5
min = 1
max = 20
{extra}
"""


def make_config(write_config, url, days=14, extra="", listen="off", signing=""):
    return load_config(write_config(CONFIG.format(url=url, days=days, extra=extra,
                                                  listen=listen, signing=signing)),
                       env={"SCALE_KEY": "k" * 32})


# ------------------------------------------------------------------ history cap

FIRST = {"shop": {"a": (4, 2.0), "b": (2, 0.5)}, "search": {"a": (1, 0.25)}}
LOADS = {**FIRST, "extra": {"b": (1, 0.1)}}    # a fourth series: beyond history_series = 3


@pytest.fixture(params=["file", "redis"])
def plane_url(request, tmp_path) -> str:
    if request.param == "file":
        return (tmp_path / "state.json").as_uri()
    server = request.getfixturevalue("redis_pair").primary
    return f"redis://127.0.0.1:{server.port}/0?prefix=scaler-{time.monotonic_ns()}"


def test_history_stays_within_its_cap_over_two_simulated_weeks(write_config, plane_url):
    days = 14
    config = make_config(write_config, plane_url, days=days)
    plane = open_configured(config)
    scaler = Scaler(config, plane)
    start = 29_000_000                   # a minute in 2025
    total = (days + 1) * 1440            # a day more than the ring holds
    warnings = []
    # Every minute on the file plane; every 7th on Redis, where each is a round trip
    # (the ring wraps all the same, and the slots hit differ from one lap to the next).
    every = 1 if plane_url.startswith("file") else 7
    for minute in range(start, start + total, every):
        warnings += scaler.record(FIRST if minute == start else LOADS, minute)
    ring = history.ring_bytes(days)
    assert ring == 241_920
    series = plane.history_series()
    assert series == ["search@a", "shop@a", "shop@b"]
    assert warnings == ["history of extra@b not recorded: history_series = 3 series exist "
                        "(the cap)"]                      # said once, not every minute
    assert sum(len(plane.history_read(name)) for name in series) <= 3 * ring
    last = max(range(start, start + total, every))
    for name in series:
        blob = plane.history_read(name)
        # A file is sized once; a Redis string reaches the highest slot written.
        assert len(blob) == ring if every == 1 else len(blob) <= ring
        samples = history.decode(blob, days, last)
        # Exactly the last 14 days: the first day was overwritten in place.
        kept = [m for m in range(start, last + 1, every) if m > last - days * 1440]
        assert [s.minute for s in samples] == kept
    shop_a = history.decode(plane.history_read("shop@a"), days, last)[-1]
    assert (shop_a.instances, shop_a.load) == (4, 2.0)
    if plane_url.startswith("redis"):
        raw = plane.new_client()
        used = raw.memory_usage(f"{plane.prefix}:history:shop@a")
        assert used <= ring * 1.1, used    # the string (in its allocator size class)
        assert raw.exists(f"{plane.prefix}:history:extra@b") == 0
    plane.close()


def test_a_shorter_ring_is_trimmed_not_left_to_grow(write_config, plane_url):
    long = make_config(write_config, plane_url, days=2)
    plane = open_configured(long)
    Scaler(long, plane).record({"shop": {"a": (1, 0.5)}}, 2 * 1440 - 1)
    assert len(plane.history_read("shop@a")) == history.ring_bytes(2)
    short = make_config(write_config, plane_url, days=1)
    Scaler(short, plane).record({"shop": {"a": (1, 0.5)}}, 5)
    assert len(plane.history_read("shop@a")) == history.ring_bytes(1)
    plane.close()


# ------------------------------------------------------------------ what agents serve

def _get(address: tuple[str, int], path: str) -> Any:
    with urllib.request.urlopen(f"http://{address[0]}:{address[1]}{path}", timeout=5) as r:
        body = r.read()
    return json.loads(body) if path != "/metrics" else body.decode()


def _gjson(document: dict[str, Any], path: str) -> Any:
    """The value at a dotted GJSON path, as KEDA's metrics-api scaler reads
    ``valueLocation``."""
    value: Any = document
    for part in path.split("."):
        value = value[part]
    return value


def _keda_replicas(document: dict[str, Any], location: str, target: float = 1.0) -> int:
    """What KEDA (metricType AverageValue, targetValue 1) makes the HPA ask for."""
    value = _gjson(document, location)
    assert isinstance(value, (int, float)) and not isinstance(value, bool), value
    return math.ceil(float(value) / target)


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


@pytest.fixture
def started(write_config, tmp_path, monkeypatch):
    monkeypatch.setattr(resil.agent, "SCALE_CACHE", 0.0)   # read the document every time
    extra = ('[[scaling.schedules]]\nstart = "* * * * *"\nend = "0 0 1 1 *"\n'
             'min = { b = 7 }\nname = "always"')
    path = write_config(CONFIG.format(
        url=(tmp_path / "state.json").as_uri(), days=1, extra=extra, listen="127.0.0.1:0",
        signing='signing_key_env = "SCALE_KEY"'))
    monkeypatch.setenv("SCALE_KEY", "k" * 32)
    agent = resil.start(path)
    assert agent is not None and agent.admin is not None and agent.admin.address
    now = time.time()
    for i, (unit, utilization) in enumerate([("a", 0.9), ("a", 0.8), ("b", 0.1)]):
        agent.plane.report({"id": f"other:{i}", "pid": 10 + i, "ppid": 0, "unit": unit,
                            "reported_at": now, "utilization": utilization})
    yield agent
    resil.stop()


def test_agents_serve_the_published_recommendation_to_keda_and_prometheus(started):
    agent = started
    scaler = Scaler(agent.config, open_configured(agent.config))
    found = scaler.step()
    assert found is not None
    # Unit a: 3 instances busy 0.9 + 0.8 (+ this one) at target 0.5: 4 or more.
    desired_a = found.advice["default"]["a"].desired
    assert desired_a >= 4 and found.advice["default"]["a"].decided_by == "target"
    assert found.advice["default"]["b"].desired == 7
    assert found.advice["default"]["b"].decided_by == "schedule:always"

    answer = _get(agent.admin.address, "/scale")
    assert answer["source"] == "resil scale" and answer["service"] == "default"
    assert answer["unit"] == "a" and answer["age_seconds"] < 30
    assert _keda_replicas(answer, "desired") == desired_a
    assert _keda_replicas(answer, "units.b.desired") == 7
    assert answer["units"]["b"]["policies"]["schedule:always"]["instances"] == 7

    text = _get(agent.admin.address, "/metrics")
    recommended = _samples(text, "resil_scale_recommended_instances")
    assert recommended[(("service", "default"), ("unit", "a"))] == desired_a
    assert recommended[(("service", "default"), ("unit", "b"))] == 7
    policies = _samples(text, "resil_scale_policy_instances")
    assert policies[(("policy", "schedule:always"), ("service", "default"),
                     ("unit", "b"))] == 7
    assert _samples(text, "resil_scale_recommendation_fresh") == {
        (("service", "default"),): 1.0}
    assert "resil_scale_desired_instances" in text          # the HPA-rule gauge stays


def test_a_forged_or_stale_recommendation_is_not_served(started):
    agent = started
    plane = open_configured(agent.config)
    good = json.loads(scale.encode_recommendation(
        {"version": 1, "generated_at": time.time(), "interval": 15,
         "services": {"default": {"units": {"a": {"desired": 0}, "b": {"desired": 0}}}}},
        b"another key"))
    plane.put_document(scale.DOCUMENT, json.dumps(good).encode())
    answer = _get(agent.admin.address, "/scale")
    # Scaled to zero by a forged document? No: the fallback, saying why.
    assert answer["source"] == "fallback" and "bad signature" in answer["problem"]
    assert answer["units"]["b"]["desired"] == 7            # the schedule still counts
    assert answer["desired"] >= 1
    text = _get(agent.admin.address, "/metrics")
    assert _samples(text, "resil_scale_recommendation_fresh") == {
        (("service", "default"),): 0.0}

    stale = {"version": 1, "generated_at": time.time() - 3600, "interval": 15,
             "services": {"default": {"units": {"a": {"desired": 9}}}}}
    plane.put_document(scale.DOCUMENT, scale.encode_recommendation(stale, b"k" * 32))
    answer = _get(agent.admin.address, "/scale")
    assert answer["source"] == "fallback" and "3600 s old" in answer["problem"]
    ahead = {**stale, "generated_at": time.time() + 3600}
    plane.put_document(scale.DOCUMENT, scale.encode_recommendation(ahead, b"k" * 32))
    answer = _get(agent.admin.address, "/scale")
    assert answer["source"] == "fallback" and "3600 s ahead" in answer["problem"]
    plane.put_document(scale.DOCUMENT, b"{not json")
    assert "not JSON" in _get(agent.admin.address, "/scale")["problem"]


def test_without_a_recommendation_or_a_load_an_agent_gives_no_figure(write_config,
                                                                      monkeypatch):
    """A control plane the agent cannot reach: no number that could scale the service in
    during the incident, but a 503 (KEDA then keeps its replicas) that says why."""
    from servers import free_port
    monkeypatch.setattr(resil.agent, "SCALE_CACHE", 0.0)
    path = write_config(CONFIG.format(
        url=f"redis://127.0.0.1:{free_port()}/0", days=1, extra="",
        listen="127.0.0.1:0", signing=""))
    agent = resil.start(path)
    try:
        assert agent is not None and agent.admin is not None and agent.admin.address
        host, port = agent.admin.address
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://{host}:{port}/scale", timeout=10)
        assert info.value.code == 503
        answer = json.loads(info.value.read())
        assert answer["desired"] is None and answer["source"] == "fallback"
        assert "control plane unreachable" in answer["problem"]
        assert "no load reported for unit a" in answer["problem"]
        text = _get(agent.admin.address, "/metrics")
        assert _samples(text, "resil_scale_recommended_instances") == {}
    finally:
        resil.stop()


def test_one_scaler_acts_at_a_time(write_config, tmp_path):
    config = make_config(write_config, (tmp_path / "state.json").as_uri())
    first = Scaler(config, open_configured(config))
    second = Scaler(config, open_configured(config))
    second.holder = "another-host:1"
    assert first.step() is not None
    assert second.step() is None               # standing by: the lease is taken
    stop = threading.Event()
    stop.set()
    first.run(stop)                            # a stopping scaler gives the lease up
    assert second.step() is not None


def test_the_acting_scaler_keeps_its_history_as_it_records_it(write_config, tmp_path,
                                                              monkeypatch):
    """A rule sees the minutes the scaler recorded, from its own copy (read from the
    control plane once), and the plane holds the same minutes."""
    rule = ('[[scaling.rules]]\nname = "hot"\ncomparison = ">"\nvalue = 0.7\n'
            'duration = 120\nstep = 10\ncooldown = 600')
    config = make_config(write_config, (tmp_path / "state.json").as_uri(), days=1,
                         extra=rule)
    plane = open_configured(config)
    monkeypatch.setattr(plane, "fleet_loads",
                        lambda: {"shop": {"a": (4, 3.6)}})     # 0.9 busy
    now = [1_800_000_000.0]
    scaler = Scaler(config, plane, clock=lambda: now[0])
    reads = []
    original = plane.history_read
    monkeypatch.setattr(plane, "history_read", lambda name: reads.append(name) or
                        original(name))
    decided = []
    for _ in range(3):
        found = scaler.step()
        decided.append(found.advice["shop"]["a"].decided_by)
        now[0] += 60
    assert decided == ["target", "target", "rule:hot"]     # 2 complete minutes held
    assert found.advice["shop"]["a"].desired == 14            # 4 + 10 (target: 8)
    assert reads.count("shop@a") == 1                      # read once, then kept
    on_plane = history.decode(original("shop@a"), 1, int(now[0] // 60))
    minute = int(1_800_000_000 // 60)
    assert [(s.minute, s.instances, s.load) for s in on_plane] == [
        (minute + i, 4, pytest.approx(3.6)) for i in range(3)]
