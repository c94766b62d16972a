"""An OpenTelemetry SDK in the process sees resil's spans and metrics during a switch."""

from __future__ import annotations

import threading
import time

import pymysql
import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import resil
from resil import registry
from resil.config import load_config
from resil.control import open_control_plane
from resil.ops.switch import Switch
from servers.config import PASSWORDS

SPANS = InMemorySpanExporter()
READER = InMemoryMetricReader()


@pytest.fixture(scope="module", autouse=True)
def sdk():
    """The SDK, as an application would set it up (the global providers are set once)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SPANS))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
    yield


def points(name: str) -> list:
    data = READER.get_metrics_data()
    return [p for rm in data.resource_metrics for sm in rm.scope_metrics
            for m in sm.metrics if m.name == name for p in m.data.data_points]


def test_spans_and_metrics_during_a_switch(pair_config, mysql_db, monkeypatch):
    for key, value in PASSWORDS.items():
        monkeypatch.setenv(key, value)
    SPANS.clear()
    resil.start(pair_config)
    conn = pymysql.connect(host="orders-db", user="app", password="apppw", database=mysql_db,
                           autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE w (id INT AUTO_INCREMENT PRIMARY KEY, at DOUBLE)")
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            with conn.cursor() as cur:
                cur.execute("INSERT INTO w (at) VALUES (%s)", (time.time(),))
    writer = threading.Thread(target=write)
    writer.start()
    config = load_config(pair_config)
    plane = open_control_plane(config.control_url, config.topology, None)
    try:
        time.sleep(0.2)
        Switch(config, plane, "orders-db", "b", out=lambda line: None).run()
        time.sleep(0.3)
    finally:
        stop.set()
        writer.join()
        Switch(config, plane, "orders-db", "a", out=lambda line: None).run()

    spans = SPANS.get_finished_spans()
    steps = [s.attributes["resil.step"] for s in spans if s.name == "resil.switch.step"]
    assert steps[:11] == ["precheck", "converge", "spares", "lock", "drain", "fence",
                          "catch-up", "promote", "reverse", "publish", "verify"]
    holds = [s for s in spans if s.name == "resil.hold"]
    assert holds and all(s.attributes["resil.unit"] == "a" for s in holds)
    assert all(s.attributes["resil.resource"] == "orders-db" for s in holds)
    assert max(s.attributes["resil.held_ms"] for s in holds) > 0
    moves = [s for s in spans if s.name == "resil.move"]
    assert any(s.attributes["resil.endpoint.unit"] == "b" for s in moves)

    epoch = registry.runtime().state.epoch
    assert [p.value for p in points("resil.applied_epoch")] == [epoch]
    moved = [p.value for p in points("resil.events")
             if p.attributes["resil.event"] == "mysql_connections_moved"]
    assert moved == [1]             # the writer's connection, moved once to unit b
    assert [p.value for p in points("resil.ready")] == [1]


def test_http_routing_spans_and_metrics(write_config, tmp_path):
    import requests

    from servers.web import HttpUnits
    SPANS.clear()
    with HttpUnits(per_unit=1) as units:
        resil.start(write_config(
            f'unit = "a"\n[control]\nurl = "{(tmp_path / "s.json").as_uri()}"\n'
            '[admin]\nlisten = "off"\n' + units.toml("products", "eject_after = 1\n")))
        with trace.get_tracer("app").start_as_current_span("checkout") as outer:
            answer = requests.get("http://products/x", timeout=5).json()
        trace_id = format(outer.get_span_context().trace_id, "032x")
        assert answer["headers"]["traceparent"].split("-")[1] == trace_id
        # Nothing traced now: no trace context, resil's own header still
        answer = requests.get("http://products/x", timeout=5).json()
        assert "traceparent" not in answer["headers"]
        assert answer["headers"]["x-resil-unit"] == "a"
        with trace.get_tracer("app").start_as_current_span("again") as outer:
            answer = requests.get("http://products/x", timeout=5).json()
        trace_id = format(outer.get_span_context().trace_id, "032x")
        assert answer["headers"]["traceparent"].split("-")[1] == trace_id
        units.kill("a")
        try:
            assert requests.get("http://products/x", timeout=5).json()["unit"] == "b"
        finally:
            units.start("a")
    spans = SPANS.get_finished_spans()
    retry = [s for s in spans if s.name == "resil.http.retry"]
    assert [(s.attributes["resil.previous.unit"], s.attributes["resil.endpoint.unit"])
            for s in retry] == [("a", "b")]
    eject = [s for s in spans if s.name == "resil.http.eject"]
    assert [s.attributes["resil.endpoint.unit"] for s in eject] == ["a"]
    assert all(s.attributes["resil.unit"] == "a" for s in retry + eject)
    assert [p.value for p in points("resil.http.retries")] == [1]
    assert [p.value for p in points("resil.http.ejections")] == [1]
    calls = {(p.attributes["resil.unit"], p.attributes["resil.endpoint.unit"]): p.value
             for p in points("resil.http.calls")}
    assert calls == {("a", "a"): 4, ("a", "b"): 1}
