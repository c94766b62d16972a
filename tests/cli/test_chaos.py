"""`resil chaos inject|list|clear`, as an operator runs them, and what the agents show of
a fault: `resil status`, `/state` and `/metrics`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import resil
from resil.config import load_config
from resil.control import open_control_plane
from resil.state import ControlState
from servers.web import HttpUnits

RESIL = str(Path(sys.executable).parent / "resil")


def resil_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RESIL, *args], capture_output=True, text=True, timeout=30)


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
        endpoints = {{ a = ["http://127.0.0.1:8001"], b = ["http://127.0.0.1:8002"] }}
    """)


def published(config: Path) -> ControlState:
    cfg = load_config(config, env={})
    signal = open_control_plane(cfg.control_url, cfg.topology, None).load()
    return signal.state if signal else ControlState.initial(cfg.topology)


def test_inject_list_and_clear(config):
    out = resil_cli("chaos", "inject", "shop", "--unit", "b", "--latency", "200ms",
                    "--jitter", "50ms", "--error-rate", "50%", "--kind", "reset", "--for",
                    "5m", "--seed", "9", "--config", str(config))
    assert out.returncode == 0, out.stderr
    ident = re.match(r"injected fault (\w+) \(epoch 1\): shop in b: latency 200 ms ±50 ms, "
                     r"50% reset; expires in 5\.0 min \(seed 9\)", out.stdout)
    assert ident, out.stdout
    fault_id = ident.group(1)
    (fault,) = published(config).faults
    assert (fault.id, fault.unit, fault.latency, fault.jitter, fault.error_rate, fault.seed) \
        == (fault_id, "b", 0.2, 0.05, 0.5, 9)
    assert 299 < fault.until - time.time() <= 300

    second = resil_cli("chaos", "inject", "shop", "--caller-unit", "a", "--loss", "0.1",
                       "--for", "1h", "--config", str(config))
    assert second.returncode == 0, second.stderr
    listing = resil_cli("chaos", "list", "--config", str(config))
    assert listing.returncode == 0 and listing.stdout.startswith("faults (epoch 2):")
    assert fault_id in listing.stdout and "10% lost" in listing.stdout
    as_json = json.loads(resil_cli("chaos", "list", "--json", "--config", str(config)).stdout)
    assert [f["id"] for f in as_json][0] == fault_id and 3590 < as_json[1]["expires_in"]

    status = resil_cli("status", "--config", str(config))
    assert "faults:   injected by resil chaos" in status.stdout
    assert fault_id in status.stdout

    cleared = resil_cli("chaos", "clear", fault_id, "--config", str(config))
    assert cleared.returncode == 0 and "cleared 1 fault (epoch 3); 1 left" in cleared.stdout
    assert [f.id for f in published(config).faults] != [fault_id]
    assert resil_cli("chaos", "clear", "--all", "--config", str(config)).returncode == 0
    assert published(config).faults == ()
    assert "no faults (epoch 4)" in resil_cli("chaos", "list", "--config", str(config)).stdout


def test_expired_faults_are_dropped_at_the_next_publish(config):
    assert resil_cli("chaos", "inject", "shop", "--unit", "a", "--error-rate", "1",
                     "--for", "1s", "--config", str(config)).returncode == 0
    time.sleep(1.1)
    assert "no faults" in resil_cli("chaos", "list", "--config", str(config)).stdout
    assert resil_cli("chaos", "inject", "shop", "--unit", "b", "--latency", "1ms",
                     "--for", "1m", "--config", str(config)).returncode == 0
    assert [f.unit for f in published(config).faults] == ["b"]


@pytest.mark.parametrize(("args", "message"), [
    (["shop", "--unit", "a", "--error-rate", "1.5", "--for", "1m"], "from 0 to 1"),
    (["shop", "--unit", "a", "--error-rate", "0.5"], "--for"),
    (["shop", "--unit", "a", "--error-rate", "0.5", "--for", "0"], "above 0"),
    (["shop", "--unit", "a", "--error-rate", "0.5", "--for", "2d"], "not a duration"),
    (["shop", "--unit", "a", "--error-rate", "0.5", "--for", "25h"], "limit"),
    (["nope", "--unit", "a", "--error-rate", "0.5", "--for", "1m"], "unknown resource"),
    (["shop", "--unit", "mars", "--error-rate", "0.5", "--for", "1m"], "not one of the units"),
    (["shop", "--error-rate", "0.5", "--for", "1m"], "--everywhere"),
    (["shop", "--unit", "a", "--for", "1m"], "no effect"),
    (["shop", "--unit", "a", "--error-rate", "0.6", "--loss", "0.6", "--for", "1m"],
     "more than 1"),
    (["shop", "--unit", "a", "--error-rate", "1", "--kind", "error", "--status", "404",
      "--for", "1m"], "5xx"),
    (["shop", "--endpoint", "http://127.0.0.1:9", "--error-rate", "1", "--for", "1m"],
     "not an endpoint"),
])
def test_nonsense_is_refused_and_nothing_is_published(config, args, message):
    out = resil_cli("chaos", "inject", *args, "--config", str(config))
    assert out.returncode == 2, out
    assert message in out.stderr
    assert published(config).epoch == 0


def test_clear_needs_an_id_it_knows(config):
    assert resil_cli("chaos", "clear", "--config", str(config)).returncode == 2
    out = resil_cli("chaos", "clear", "abc123", "--config", str(config))
    assert out.returncode == 2 and "no fault 'abc123'" in out.stderr


def test_an_agent_shows_its_faults_in_state_and_metrics(write_config, tmp_path):
    import requests
    with HttpUnits(per_unit=1) as units:
        path = write_config(
            f'unit = "a"\n[control]\nurl = "{(tmp_path / "s.json").as_uri()}"\n'
            'poll_interval = 0.01\n[admin]\nlisten = "127.0.0.1:0"\n'
            + units.toml("products", "eject_after = 1000\nretries = 0\n"))
        agent = resil.start(path)
        out = resil_cli("chaos", "inject", "products", "--unit", "a", "--error-rate", "1",
                        "--kind", "error", "--status", "502", "--for", "1m", "--config",
                        str(path))
        assert out.returncode == 0, out.stderr
        fault_id = out.stdout.split()[2]
        deadline = time.monotonic() + 5
        while not agent.current_state().faults:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        for _ in range(3):
            assert requests.get("http://products/x", timeout=5).status_code == 502
        host, port = agent.admin.address
        with urllib.request.urlopen(f"http://{host}:{port}/state", timeout=5) as r:
            state = json.loads(r.read())
        assert [f["id"] for f in state["chaos"]] == [fault_id]
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        found = {(s.name, tuple(sorted(s.labels.items()))): s.value
                 for family in text_string_to_metric_families(text) for s in family.samples}
        assert found[("resil_chaos_injected_total", (("effect", "error"), ("fault", fault_id),
                                                      ("resource", "products")))] == 3
        assert found[("resil_chaos_faults_active", (("resource", "products"),))] == 1
