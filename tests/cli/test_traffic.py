"""`resil traffic set` (unit weights) and `resil traffic rules` (routing-key rules)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from resil.config import load_config
from resil.control import open_control_plane
from resil.state import ControlState

RESIL = str(Path(sys.executable).parent / "resil")
RULES = [{"unit": "a", "range": [0, 4999]}, {"unit": "b", "hash": [50, 99]},
         {"unit": "a", "keys": ["alice"]}]


def resil(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RESIL, *args], capture_output=True, text=True, timeout=30,
                          input=stdin)


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


def test_set_publishes_weights(config):
    out = resil("traffic", "set", "a=50", "b=25.5", "--config", str(config))
    assert out.returncode == 0, out.stderr
    assert out.stdout == "weights: a=50  b=25.5 (epoch 1)\n"
    assert dict(published(config).weights) == {"a": 50.0, "b": 25.5}
    out = resil("traffic", "set", "b=25.5", "--config", str(config))
    assert out.returncode == 0 and "unchanged" in out.stdout and "epoch 1" in out.stdout
    out = resil("traffic", "set", "b=0", "--config", str(config))
    assert out.stdout == "weights: a=50  b=0 (epoch 2)\n"


def test_set_every_unit_to_zero_needs_yes(config):
    out = resil("traffic", "set", "a=0", "b=0", "--config", str(config))
    assert out.returncode == 2 and "total outage" in out.stderr and out.stdout == ""
    out = resil("traffic", "set", "a=0", "b=0", "--yes", "--config", str(config))
    assert out.returncode == 0 and "every unit has weight 0" in out.stderr


@pytest.mark.parametrize("item, message", [
    ("c=10", "unknown unit 'c' in 'c=10' (units: a, b)"),
    ("a=ten", "weight of unit 'a' = 'ten' is not a number"),
    ("a=-1", "weight of unit 'a' = '-1' must be a number >= 0"),
    ("a=nan", "weight of unit 'a' = 'nan' must be a number >= 0"),
    ("a", "expected UNIT=WEIGHT, got 'a'"),
    ("=5", "expected UNIT=WEIGHT, got '=5'"),
])
def test_set_refuses_bad_input(config, item, message):
    out = resil("traffic", "set", "b=1", item, "--config", str(config))
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert published(config).epoch == 0


def test_set_refuses_a_unit_given_twice(config):
    out = resil("traffic", "set", "a=1", "a=2", "--config", str(config))
    assert out.returncode == 2 and "unit 'a' given twice" in out.stderr


def test_rules_publish_show_and_clear(config, tmp_path):
    (tmp_path / "rules.json").write_text(json.dumps(RULES))
    out = resil("traffic", "rules", "--config", str(config))
    assert out.returncode == 0 and "no routing rules (epoch 0)" in out.stdout
    out = resil("traffic", "rules", str(tmp_path / "rules.json"), "--config", str(config))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "published 3 rules (epoch 1)", "  1. range 0..4999 -> a",
        "  2. hash buckets 50..99 -> b", "  3. keys alice -> a"]
    state = published(config)
    assert [r.to_dict() for r in state.routes] == RULES
    assert state.home_unit("17") == "a" and state.home_unit("alice") == "a"
    out = resil("traffic", "rules", "--config", str(config))
    assert "routing rules (epoch 1; the first match wins):" in out.stdout
    assert "  2. hash buckets 50..99 -> b" in out.stdout
    shown = resil("traffic", "rules", "--json", "--config", str(config)).stdout
    assert json.loads(shown) == RULES
    # What --json prints is a rules file: publishing it again changes nothing.
    out = resil("traffic", "rules", "-", "--config", str(config), stdin=shown)
    assert out.returncode == 0 and out.stdout == "rules unchanged (epoch 1)\n"
    out = resil("traffic", "rules", "--clear", "--config", str(config))
    assert out.returncode == 0 and out.stdout.startswith("published 0 rules (epoch 2)")
    assert published(config).routes == ()


def test_rules_keep_the_rest_of_the_state(config, tmp_path):
    resil("traffic", "set", "b=0", "--config", str(config))
    (tmp_path / "rules.json").write_text(json.dumps(RULES[:1]))
    resil("traffic", "rules", str(tmp_path / "rules.json"), "--config", str(config))
    state = published(config)
    assert state.epoch == 2 and state.weights["b"] == 0 and len(state.routes) == 1


def test_rules_from_toml(config, tmp_path):
    (tmp_path / "rules.toml").write_text(
        '[[rule]]\nunit = "b"\nrange = [0, 9]\n\n[[rule]]\nunit = "a"\nkeys = ["x", "y"]\n')
    out = resil("traffic", "rules", str(tmp_path / "rules.toml"), "--config", str(config))
    assert out.returncode == 0, out.stderr
    assert [r.to_dict() for r in published(config).routes] == [
        {"unit": "b", "range": [0, 9]}, {"unit": "a", "keys": ["x", "y"]}]


@pytest.mark.parametrize("name, text, message", [
    ("r.json", '[{"unit": "c", "range": [0, 9]}]', "route rule 1: unit 'c' is not one of "
                                                   "the units (a, b)"),
    ("r.json", '[{"unit": "a", "range": [9, 0]}]', "route rule 1: range must be [low, high]"),
    ("r.json", '[{"unit": "a", "hash": [0, 100]}]', "hash buckets run from 0 to 99"),
    ("r.json", '[{"unit": "a", "range": [0, 1], "keys": ["x"]}]', "exactly one of"),
    ("r.json", '{"unit": "a"}', "routes must be a list of rules"),
    ("r.json", "[{unit: a}]", "not valid JSON"),
    ("r.toml", "[[rule]\n", "not valid TOML"),
    ("r.toml", '[[rules]]\nunit = "a"\n', "unknown key 'rules': expected [[rule]] tables"),
])
def test_rules_refuse_a_bad_file(config, tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    out = resil("traffic", "rules", str(tmp_path / name), "--config", str(config))
    assert out.returncode == 2, out.stdout
    assert f"bad rules file {tmp_path / name}: " in out.stderr and message in out.stderr
    assert published(config).epoch == 0


def test_rules_refuse_a_missing_file_and_file_with_clear(config, tmp_path):
    out = resil("traffic", "rules", str(tmp_path / "nope.json"), "--config", str(config))
    assert out.returncode == 2 and "No such file" in out.stderr
    (tmp_path / "rules.json").write_text("[]")
    out = resil("traffic", "rules", str(tmp_path / "rules.json"), "--clear",
                "--config", str(config))
    assert out.returncode == 2 and "not both" in out.stderr


def test_status_shows_the_rules(config, tmp_path):
    out = resil("status", "--config", str(config))
    assert "routes:   none" in out.stdout
    (tmp_path / "rules.json").write_text(json.dumps(RULES))
    resil("traffic", "rules", str(tmp_path / "rules.json"), "--config", str(config))
    out = resil("status", "--config", str(config))
    assert "routes:   first match wins\n  1. range 0..4999 -> a\n" in out.stdout
    report = json.loads(resil("status", "--json", "--config", str(config)).stdout)
    assert report["routes"] == RULES
