"""`resil scale`, `resil scale simulate` and the scaler hosted by `resil monitor`, as an
operator runs them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resil.config import load_config
from resil.control import open_configured
from resil.ops import curves

RESIL = str(Path(sys.executable).parent / "resil")


def resil_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RESIL, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def config(write_config, tmp_path) -> Path:
    return write_config(f"""
        unit = "a"
        [control]
        url = "{(tmp_path / 'state.json').as_uri()}"
        [admin]
        listen = "off"
        [resources.shop]
        kind = "http"
        endpoints = {{ a = ["http://127.0.0.1:9"], b = ["http://127.0.0.1:10"] }}
        [scaling]
        interval = 1
        target_utilization = 0.5
        min = 1
        [scaling.services.checkout]
        max = 5
    """)


def _report(config: Path, **loads: tuple[str, float]) -> None:
    """Heartbeats of instances of the service ``checkout``: id → (unit, utilization)."""
    plane = open_configured(load_config(config))
    for i, (name, (unit, utilization)) in enumerate(loads.items()):
        plane.report({"id": name, "pid": 100 + i, "ppid": 0, "unit": unit,
                      "service": "checkout", "reported_at": time.time(),
                      "utilization": utilization})


def test_scale_prints_every_policy_and_the_decision(config):
    _report(config, one=("a", 0.9), two=("a", 0.9), three=("b", 0.2))
    result = resil_cli("scale", "--config", str(config), "--service", "checkout", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    a = found["services"]["checkout"]["a"]
    assert a["instances"] == 2 and a["desired"] == 4 and a["decided_by"] == "target"
    assert a["policies"]["target"]["instances"] == 4
    b = found["services"]["checkout"]["b"]
    assert b["desired"] == 1 and b["decided_by"] == "target"     # 0.2 / 0.5, = min
    assert found["published"].startswith("never")        # a look, not a publish
    text = resil_cli("scale", "--config", str(config), "--service", "checkout").stdout
    assert "a               2 now ->    4  decided by target" in text
    missing = resil_cli("scale", "--config", str(config), "--service", "nope")
    assert missing.returncode == 2 and "no service 'nope'" in missing.stderr


def test_monitor_hosts_the_scaler_and_status_shows_what_it_published(config):
    _report(config, one=("a", 0.95), two=("a", 0.95))
    monitor = subprocess.Popen([RESIL, "monitor", "--config", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    status = ""
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status = resil_cli("status", "--config", str(config)).stdout
            if "scaling:  recommended" in status:
                break
            time.sleep(0.3)
    finally:
        monitor.send_signal(signal.SIGTERM)
        out, _ = monitor.communicate(timeout=20)
    assert "scaling:  recommended" in status, (status, out)
    assert "a 2->4 (target)" in status
    assert monitor.returncode == 0, out
    assert "scale: acting scaler" in out
    assert "scale: checkout a: 4 instances (target:" in out


def test_monitor_without_the_scaler(config, tmp_path):
    monitor = subprocess.Popen([RESIL, "monitor", "--config", str(config), "--no-scale"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(3)
    monitor.send_signal(signal.SIGTERM)
    out, _ = monitor.communicate(timeout=20)
    assert "scale:" not in out
    assert not list(tmp_path.glob("state.json.scale.json"))


def _simulated(curve: str, *extra: str) -> dict:
    result = resil_cli("scale", "simulate", curve, "--json", *extra)
    assert result.returncode == 0, result.stderr
    return {r["policy"]: r for r in json.loads(result.stdout)["results"]}


@pytest.mark.parametrize("curve", ["flash-sale", "unit-loss"])
def test_predictive_and_reserve_spend_fewer_minutes_over_target_than_reactive(curve):
    results = _simulated(curve)
    reactive, best = results["reactive"], results["+ predictive + reserve"]
    assert best["minutes_over_target"] < reactive["minutes_over_target"]
    assert best["requests_beyond_capacity"] <= reactive["requests_beyond_capacity"]
    # ... at a cost the report states.
    assert best["instance_minutes"] > reactive["instance_minutes"] > 0
    assert set(results) == {"reactive", "+ predictive", "+ predictive + reserve"}


def test_simulate_draws_a_png_and_exports_the_curve(tmp_path):
    png, csv = tmp_path / "plot.png", tmp_path / "daily.csv"
    result = resil_cli("scale", "simulate", "daily", "--png", str(png), "--export-csv",
                       str(csv))
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert "instance-min" in result.stdout and f"plot: {png}" in result.stdout
    again = curves.read_csv(csv)
    built = curves.daily()
    assert again.units == built.units and again.minutes == built.minutes
    assert again.demand["beijing"][:3] == built.demand["beijing"][:3]


def test_simulate_with_schedules_compares_them_too(write_config):
    path = write_config("""
        unit = "beijing"
        [resources.shop]
        kind = "http"
        endpoints = { beijing = ["http://127.0.0.1:9"], hangzhou = ["http://127.0.0.1:10"] }
        [scaling]
        [[scaling.schedules]]
        name = "sale"
        start = "50 19 * * *"
        end = "30 20 * * *"
        min = { beijing = 48, hangzhou = 32 }
    """)
    results = _simulated("flash-sale", "--config", str(path))
    assert list(results) == ["reactive", "+ schedule", "+ predictive",
                             "+ predictive + reserve"]
    assert results["+ schedule"]["requests_beyond_capacity"] < \
        results["reactive"]["requests_beyond_capacity"]
    assert results["+ schedule"]["decided_by"].get("schedule", 0) > 0


@pytest.mark.parametrize("text,problem", [
    ("when,a\n", "line 1 must be the header `time,UNIT[,UNIT...]`"),
    ("time,a\n2026-11-02T00:00,fast\n", "line 2, a: 'fast' is not a number"),
    ("time,a\n2026-11-02T00:01,1\n2026-11-02T00:00,1\n", "line 3: time"),
    ("time,a,b\n2026-11-02T00:00,1\n", "line 2: 2 fields, expected 3"),
    ("time,a\nyesterday,1\n", "neither ISO 8601 nor epoch seconds"),
    ("time,a\n2026-11-02T00:00,-5\n", "must be a finite rate"),
])
def test_a_bad_curve_file_is_named_with_its_line(tmp_path, text, problem):
    path = tmp_path / "curve.csv"
    path.write_text(text)
    result = resil_cli("scale", "simulate", str(path))
    assert result.returncode == 2 and problem in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_curve_says_what_exists():
    result = resil_cli("scale", "simulate", "black-friday")
    assert result.returncode == 2
    assert "not a built-in curve (daily, flash-sale, unit-loss)" in result.stderr


def test_a_csv_curve_with_a_unit_loss(tmp_path):
    rows = ["time,a,b"] + [f"{m * 60},{100 + m % 7},{50 + m % 5}" for m in range(0, 600)] \
        + [f"{m * 60},{150 + m % 7}," for m in range(600, 720)]
    path = tmp_path / "loss.csv"
    path.write_text("\n".join(rows) + "\n")
    curve = curves.read_csv(path)
    assert curve.losses() == [("b", 600)] and curve.minutes == 720
    results = _simulated(str(path), "--capacity", "20")
    assert results["reactive"]["instance_minutes"] > 0


def test_config_check_shows_the_policies(write_config):
    path = write_config("""
        unit = "a"
        [resources.shop]
        kind = "http"
        endpoints = { a = ["http://127.0.0.1:9"], b = ["http://127.0.0.1:10"] }
        [scaling]
        unit_loss_reserve = true
        [scaling.services.checkout]
        predictive = true
    """)
    result = resil_cli("config", "check", str(path))
    assert result.returncode == 0, result.stderr
    assert "scaling:  [scaling]: target+reserve; service checkout: " \
           "target+predictive+reserve (every 15 s; history 14 days × 64 series at most)" \
           in result.stdout
    bad = write_config("""
        unit = "a"
        [resources.shop]
        kind = "http"
        endpoints = { a = ["http://127.0.0.1:9"] }
        [scaling]
        rules = [{ comparison = ">", value = 0.7, duration = 300, step = 0 }]
    """, name="bad.toml")
    result = resil_cli("config", "check", str(bad))
    assert result.returncode == 2
    assert "scaling.rules[0].step = 0: must not be 0" in result.stderr
