"""The agent applies only newer, valid signals and keeps its last good state otherwise."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

import pytest

import resil
from resil.config import load_config
from resil.control import open_control_plane
from resil.state import ControlState, encode_signal, make_signal

CONFIG = """
unit = "a"
[control]
url = "{url}"
poll_interval = 0.01
{signing}
[admin]
listen = "127.0.0.1:0"
[resources.db]
kind = "mysql"
primary = "a"
endpoints = {{ a = "10.0.0.1:3306", b = "10.0.0.2:3306" }}
aliases = ["db"]
"""


@pytest.fixture
def setup(write_config, tmp_path, monkeypatch):
    def make(signed: bool):
        monkeypatch.setenv("TEST_RESIL_KEY", "s3cret")
        path = write_config(CONFIG.format(
            url=(tmp_path / "state.json").as_uri(),
            signing='signing_key_env = "TEST_RESIL_KEY"' if signed else ""))
        config = load_config(path)
        plane = open_control_plane(config.control_url, config.topology, config.signing_key)
        return config, plane
    return make


def primary_host(agent) -> str:
    return agent.router.primary_endpoint("mysql", "db", 3306).host


def eventually(condition, timeout=1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.01)
    return condition()


def write_raw(path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_published_primary_applies_and_stale_is_ignored(setup, caplog):
    config, plane = setup(signed=False)
    agent = resil.start(config)
    assert primary_host(agent) == "10.0.0.1" and agent.state.epoch == 0
    plane.publish(ControlState.initial(config.topology).evolve(epoch=5, primaries={"db": "b"}),
                  issuer="op")
    assert eventually(lambda: primary_host(agent) == "10.0.0.2")
    assert agent.state.epoch == 5
    # An older signal written behind the publisher's back (a restored backup, a replay).
    stale = make_signal(ControlState.initial(config.topology).evolve(epoch=4), issuer="old",
                        issued_at=1.0, key=None)
    with caplog.at_level(logging.WARNING, logger="resil"):
        write_raw(plane.path, encode_signal(stale))
        assert eventually(lambda: "stale signal ignored" in caplog.text)
    assert agent.state.epoch == 5 and primary_host(agent) == "10.0.0.2"


def test_forged_unsigned_corrupt_and_missing_keep_the_last_good_state(setup, caplog):
    config, plane = setup(signed=True)
    plane.publish(ControlState.initial(config.topology).evolve(primaries={"db": "b"}),
                  issuer="op")
    agent = resil.start(config)
    assert agent.state.epoch == 1 and primary_host(agent) == "10.0.0.2"
    evil = ControlState.initial(config.topology).evolve(epoch=99, primaries={"db": "a"})
    attempts = {
        "forged signal": encode_signal(make_signal(evil, issuer="m", issued_at=1, key=b"guess")),
        "unsigned signal": encode_signal(make_signal(evil, issuer="m", issued_at=1, key=None)),
        "not JSON": b"\x00garbage",
    }
    with caplog.at_level(logging.WARNING, logger="resil"):
        for words, data in attempts.items():
            write_raw(plane.path, data)
            assert eventually(lambda words=words: words in caplog.text), words
            assert agent.state.epoch == 1 and primary_host(agent) == "10.0.0.2"
        plane.path.unlink()
        time.sleep(0.05)
        assert agent.state.epoch == 1 and primary_host(agent) == "10.0.0.2"
    rejected = [r for r in caplog.records if "signal rejected" in r.getMessage()]
    assert len(rejected) == 3                       # each bad file reported once, not per poll
    assert resil.counters.stats()["signals_rejected"] == 3
    plane.publish(ControlState.initial(config.topology).evolve(epoch=2), issuer="op")
    assert eventually(lambda: agent.state.epoch == 2 and primary_host(agent) == "10.0.0.1")


def resil_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("resil-")}


def test_watch_starts_lazily_and_stops(setup):
    config, _plane = setup(signed=False)
    agent = resil.start(config)
    assert resil_threads() == {"resil-admin"}            # only the admin endpoint at start
    primary_host(agent)                                  # first use starts the watch
    assert resil_threads() == {"resil-admin", "resil-control-watch", "resil-heartbeat"}
    resil.stop()
    assert resil_threads() == set()


def test_start_is_idempotent_and_disabled_does_nothing(setup, monkeypatch):
    config, _plane = setup(signed=False)
    assert resil.start(config) is resil.start(config)
    resil.stop()
    monkeypatch.setenv("RESIL_DISABLED", "1")
    assert resil.start(config) is None


def test_unsupported_control_url_falls_back_to_initial_state(write_config, caplog):
    path = write_config(CONFIG.format(url="etcd://127.0.0.1:1/", signing=""))
    with caplog.at_level(logging.ERROR, logger="resil"):
        agent = resil.start(path)
    assert "not available in this version" in caplog.text
    assert primary_host(agent) == "10.0.0.1"


def test_a_failed_connect_is_reported_in_the_heartbeat_at_once(setup):
    """An endpoint that refused a connect goes into this agent's heartbeat right away,
    not at the next interval (the monitor counts such agents as witnesses), and leaves
    it when a connect there succeeds again."""
    config, plane = setup(signed=False)
    assert config.heartbeat_interval >= 1.0
    agent = resil.start(config)
    try:
        primary_host(agent)                              # starts the watch and heartbeat
        assert eventually(lambda: len(plane.agents()) == 1)
        time.sleep(0.1)                                  # the first beat went out

        def reported():
            return plane.agents()[0].get("unreachable", {})
        agent.unreachable("db", "10.0.0.1:3306")
        assert eventually(lambda: reported().get("db", {}).get("endpoint")
                          == "10.0.0.1:3306", 0.5)
        agent.reachable("db", "10.0.0.2:3306")           # another endpoint: no change
        time.sleep(0.1)
        assert "db" in reported()
        agent.reachable("db", "10.0.0.1:3306")
        assert eventually(lambda: reported() == {}, 0.5)
    finally:
        resil.stop()


def test_marks_go_out_on_change_only(setup, monkeypatch):
    """What a switch's drain waits on: the agent marks (epoch, open transactions) on the
    resource when its epoch changes, and, while the resource is locked, each time its
    open transactions change; outside a lock, and between changes, it writes nothing
    (its heartbeat loop looks every 20 ms while locked, without a write)."""
    from resil.state import Lock
    config, plane = setup(signed=False)
    agent = resil.start(config)
    busy = {"db": 0}
    monkeypatch.setattr(agent, "in_flight", lambda: dict(busy))
    marks: list[tuple[int, int]] = []
    arrivals = []
    original = agent.plane.mark

    def mark(resource, agent_id, epoch, in_flight, arrived=None):
        marks.append((epoch, in_flight))
        arrivals.append(arrived)
        original(resource, agent_id, epoch, in_flight, arrived)
    monkeypatch.setattr(agent.plane, "mark", mark)
    try:
        primary_host(agent)                              # starts the watch and heartbeat
        assert eventually(lambda: marks == [(0, 0)])     # the first mark: what it applied
        busy["db"] = 3                                   # no lock: not marked
        time.sleep(0.3)
        assert marks == [(0, 0)]
        state = ControlState.initial(config.topology)
        plane.publish(state.evolve(epoch=1, locks={"db": Lock("t", time.time(), "test")}),
                      issuer="t")
        assert eventually(lambda: marks[-1:] == [(1, 3)])
        busy["db"] = 1
        assert eventually(lambda: marks[-1:] == [(1, 1)])
        busy["db"] = 0
        assert eventually(lambda: marks[-1:] == [(1, 0)])
        time.sleep(0.3)                                  # 15 looks, no change: no write
        assert marks == [(0, 0), (1, 3), (1, 1), (1, 0)]
        assert plane.marks("db", [agent.id]) == {agent.id: (1, 0)}
        plane.publish(state.evolve(epoch=2), issuer="t")   # unlocked: the new epoch
        assert eventually(lambda: marks[-1:] == [(2, 0)])
        # The idle mark under the lock leaves the switch's drain; the mark of the epoch
        # that ended the lock leaves its verify.
        assert arrivals == [None, None, None, ("drain", "t"), ("verify", "t")]
    finally:
        resil.stop()


def test_a_heartbeat_carries_identity_and_load_and_a_worker_adds_its_counters(setup):
    config, _plane = setup(signed=False)
    agent = resil.start(config)
    try:
        beat = agent.heartbeat()
        assert {"id", "unit", "service", "epoch", "in_flight", "utilization"} <= set(beat)
        assert beat["service"] == "default"
        assert not {"events", "faults", "requests", "parent"} & set(beat)  # stay local
        agent.parent = "host:1"                        # as in a worker forked by it
        assert {"events", "faults", "requests", "parent"} <= set(agent.heartbeat())
    finally:
        resil.stop()


def test_a_fork_that_python_did_not_announce_becomes_a_worker_at_first_use(setup,
                                                                            monkeypatch):
    """uWSGI forks its workers in C: Python's fork hooks do not run there. At its first
    use the copied agent sees another pid and becomes that process's own agent, a
    worker of the one it was copied from, instead of reporting as its parent."""
    import resil.agent as agent_module
    config, plane = setup(signed=False)
    agent = resil.start(config)
    parent = agent.id
    real = os.getpid()
    monkeypatch.setattr(agent_module.os, "getpid", lambda: real + 1)
    primary_host(agent)                               # first use in the "worker"
    assert agent.parent == parent and agent.id.endswith(f":{real + 1}")
    assert agent.admin is None                        # the admin endpoint stays the parent's
    beat = agent.heartbeat()                          # it reports as itself, a worker
    assert (beat["id"], beat["parent"]) == (agent.id, parent)
    assert eventually(lambda: plane._agent_file(agent.id).exists(), timeout=3)


def test_uwsgi_without_threads_is_said_at_first_use(setup, monkeypatch, caplog):
    import types

    import resil.agent as agent_module
    monkeypatch.setitem(sys.modules, "uwsgi", types.SimpleNamespace(has_threads=0))
    monkeypatch.setattr(agent_module, "_threads_warned", False)
    config, _ = setup(signed=False)
    with caplog.at_level(logging.WARNING, logger="resil"):
        agent = resil.start(config)
        primary_host(agent)
        primary_host(agent)
    assert caplog.text.count("uWSGI runs without Python threads") == 1
    assert "--enable-threads" in caplog.text


def test_processes_it_starts_learn_its_id_without_os_environ_holding_it(setup):
    """A spawned worker learns its agent from the environment it inherits; the variable
    stays out of ``os.environ``, which requests reads whole on every call (one more
    variable there cost each unrouted call ~27,000 instructions)."""
    import subprocess

    from resil.agent import PARENT_ENV
    probe = [sys.executable, "-c", f"import os; print(os.environ.get({PARENT_ENV!r}))"]
    config, _ = setup(signed=False)
    agent = resil.start(config)
    try:
        assert PARENT_ENV not in os.environ
        child = subprocess.run(probe, capture_output=True, text=True, check=True)
        assert child.stdout.strip() == agent.id
    finally:
        resil.stop()
    assert PARENT_ENV not in os.environ
    child = subprocess.run(probe, capture_output=True, text=True, check=True)
    assert child.stdout.strip() == "None"


def test_an_inherited_parent_id_is_read_then_replaced_by_its_own(setup, monkeypatch):
    """A worker spawned by an agent reads that agent's id at start; what its own
    children inherit is its id, and ``os.environ`` holds neither (a copy of it given to a
    child would name the wrong parent)."""
    import subprocess

    import resil.agent as agent_module
    from resil.agent import PARENT_ENV
    parent = f"{agent_module.gethostname()}:{os.getppid()}"
    monkeypatch.setenv(PARENT_ENV, parent)
    monkeypatch.setattr(agent_module.sys, "orig_argv", [*sys.orig_argv, "--multiprocessing-fork"],
                        raising=False)
    config, _ = setup(signed=False)
    agent = resil.start(config)
    try:
        assert agent.parent == parent
        assert PARENT_ENV not in os.environ
        probe = [sys.executable, "-c", f"import os; print(os.environ.get({PARENT_ENV!r}))"]
        child = subprocess.run(probe, capture_output=True, text=True, check=True)
        assert child.stdout.strip() == agent.id
    finally:
        resil.stop()
        monkeypatch.delenv(PARENT_ENV, raising=False)
