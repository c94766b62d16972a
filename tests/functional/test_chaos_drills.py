"""`resil drill degrade` and `resil drill site`, run as an operator runs them, against real
HTTP servers in two units and (site) real MariaDB and Redis pairs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from resil.config import load_config
from resil.control import open_control_plane
from servers import MariaDBPair, RedisPair
from servers.config import PASSWORDS, resil_toml
from servers.web import HttpUnits

RESIL = str(Path(sys.executable).parent / "resil")
HTTP = "eject_after = 2\neject_time = 30\nretry_budget_min = 1000\n"


def run(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RESIL, *args, "--config", str(config)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **PASSWORDS})


def report(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert out.returncode == 0, out.stdout + out.stderr
    print(f"\n{out.stderr}")
    data: dict[str, Any] = json.loads(out.stdout)
    return data


@pytest.fixture(scope="module")
def units():
    with HttpUnits() as running:
        yield running


def test_degrade_reports_what_callers_in_each_unit_saw(units, tmp_path):
    config = tmp_path / "resil.toml"
    config.write_text(f'unit = "a"\n[control]\nurl = "{(tmp_path / "s.json").as_uri()}"\n'
                      'poll_interval = 0.02\n[admin]\nlisten = "off"\n'
                      + units.toml("products", HTTP))
    data = report(run(config, "drill", "degrade", "products", "--unit", "a",
                      "--error-rate", "1", "--kind", "reset", "--duration", "3", "--json"))
    baseline, fault, after = data["steps"]
    assert [s["name"] for s in data["steps"]] == ["baseline", "fault", "cleared"]
    for step in data["steps"]:
        for unit in ("a", "b"):
            assert step["callers"][unit]["calls"] > 5, step
            assert step["callers"][unit]["failed"] == 0, "a safe call never failed"
    assert baseline["callers"]["a"]["attempts_to"] == {"a": baseline["callers"]["a"]["calls"]}
    assert fault["callers"]["a"]["faulted"] >= 2, "the first calls met the fault"
    assert data["avoided_after_s"]["a"] is not None and data["avoided_after_s"]["a"] < 0.9
    assert data["avoided_after_s"]["b"] == 0.0, "callers in b never called a"
    assert fault["callers"]["a"]["attempts_to"]["b"] > fault["callers"]["a"]["calls"] / 2
    assert data["failed_calls"] == {"a": 0, "b": 0}
    cfg = load_config(config, env={})
    assert open_control_plane(cfg.control_url, cfg.topology, None).load().state.faults == ()


def test_a_lossy_unit_is_avoided_with_a_failure_percentage(units, tmp_path):
    config = tmp_path / "resil.toml"
    config.write_text(f'unit = "a"\n[control]\nurl = "{(tmp_path / "s.json").as_uri()}"\n'
                      'poll_interval = 0.02\n[admin]\nlisten = "off"\n'
                      + units.toml("products", "eject_failure_percent = 30\n"
                                   "eject_min_calls = 4\neject_time = 30\n"))
    data = report(run(config, "drill", "degrade", "products", "--unit", "a",
                      "--call-timeout", "0.2", "--duration", "9", "--json"))
    _, fault, after = (step["callers"]["a"] for step in data["steps"])
    assert data["fault"]["loss"] == 0.5, "the default fault: half of the calls lost"
    assert fault["failed"] == 0, "a lost call is retried in b once its timeout fires"
    assert data["avoided_after_s"]["a"] is not None, "routing avoided the lossy unit"
    # Both of a's endpoints were ejected (for 30 s): after the fault, calls still go to b.
    assert after["attempts_to"] == {"b": after["calls"]}, after


def test_degrade_refuses_nonsense(units, tmp_path):
    config = tmp_path / "resil.toml"
    config.write_text(f'unit = "a"\n[control]\nurl = "{(tmp_path / "s.json").as_uri()}"\n'
                      '[admin]\nlisten = "off"\n' + units.toml("products", HTTP))
    out = run(config, "drill", "degrade", "products", "--unit", "mars")
    assert out.returncode == 2 and "no endpoint in unit 'mars'" in out.stderr
    out = run(config, "drill", "degrade", "nope", "--unit", "a")
    assert out.returncode == 2 and "not an http resource" in out.stderr


@pytest.mark.adversarial
def test_site_loses_a_unit_step_by_step(units, tmp_path):
    with MariaDBPair(tmp_path / "mysql", semi_sync=True) as mysql, \
            RedisPair(tmp_path / "redis") as cache:
        config = tmp_path / "resil.toml"
        config.write_text(resil_toml((tmp_path / "state.json").as_uri(), mysql=mysql,
                                     redis=cache, admin="off")
                          + units.toml("products", HTTP))
        refused = run(config, "drill", "site", "a")
        assert refused.returncode == 2
        assert "would fault products in a, cut its traffic and switch orders-db to b, " \
            "cache to b" in refused.stderr
        data = report(run(config, "drill", "site", "a", "--yes", "--step", "1", "--json",
                          timeout=180))
        assert data["ok"], data
        names = [s["name"] for s in data["steps"]]
        assert names == ["baseline", "fault", "cut", "switch orders-db", "switch cache"]
        for step in data["steps"]:
            for unit in ("a", "b"):
                assert step["callers"][unit]["failed"] == 0, (step["name"], step["callers"])
            if step["name"].startswith("switch"):
                assert step["rpo"]["lost_writes"] == 0 and step["client_errors"] == 0, step
                assert step["rto_s"] < 2.0
        cfg = load_config(config, env={})
        state = open_control_plane(cfg.control_url, cfg.topology, None).load().state
        assert dict(state.primaries) == {"orders-db": "b", "cache": "b"}
        assert state.weights["a"] == 0.0 and state.faults == ()
        assert data["undo"] == ["resil traffic restore a", "resil db switch orders-db --to a",
                                "resil db switch cache --to a"]
