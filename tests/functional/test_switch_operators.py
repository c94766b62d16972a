"""Operators that race or get stopped: a switch must never cost a client error.

- Two `resil db switch` started together: exactly one switches; the other refuses
  cleanly (no traceback) and never removes the winner's lock.
- SIGTERM or SIGINT (what `timeout`, CI runners, systemd and Kubernetes send; Ctrl-C)
  after the lock: the switch rolls back with a one-line reason, the lock is gone, the old
  primary takes the held writes; no client error, no lost write.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pymysql
import pytest

import resil
from functional.writers import OneWriter
from resil import context
from resil.config import load_config
from resil.control import open_control_plane
from servers import MariaDBPair
from servers.config import PASSWORDS, resil_toml

pytestmark = pytest.mark.adversarial

BIN = Path(sys.executable).parent


@pytest.fixture
def pair(tmp_path):
    with MariaDBPair(tmp_path / "mysql") as pair:
        pair.primary.root_sql("CREATE TABLE app.w (seq INT PRIMARY KEY)")
        pair.wait_caught_up()
        yield pair


@pytest.fixture
def config(pair, write_config, tmp_path, monkeypatch):
    for key, value in PASSWORDS.items():
        monkeypatch.setenv(key, value)
    return write_config(resil_toml((tmp_path / "state.json").as_uri(), mysql=pair))


def start_switch(config: Path, to: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(BIN / "resil"), "db", "switch", "orders-db", "--to", to,
                             "--config", str(config), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **PASSWORDS})


def read_only(server) -> int:
    return int(server.root_sql("SELECT @@read_only")[0][0])


def locks(config: Path) -> dict:
    cfg = load_config(config)
    signal_ = open_control_plane(cfg.control_url, cfg.topology, cfg.signing_key).load()
    return dict(signal_.state.locks) if signal_ else {}


def test_two_switches_started_together_switch_once(pair, config):
    resil.start(config)
    for attempt in range(3):
        target = "b" if attempt % 2 == 0 else "a"
        with OneWriter() as writer:
            time.sleep(0.2)
            procs = [start_switch(config, target) for _ in range(2)]
            results = [(p.wait(60), *p.communicate()) for p in procs]
            time.sleep(0.3)
        codes = sorted(code for code, _, _ in results)
        text = "\n".join(out + err for _, out, err in results)
        assert codes == [0, 1], text
        assert "Traceback" not in text, text
        assert not writer.errors, (writer.errors[:3], text)
        assert locks(config) == {}, text
        new, old = (pair.replica, pair.primary) if target == "b" else \
            (pair.primary, pair.replica)
        assert read_only(new) == 0 and read_only(old) == 1, text     # one writable
        rows = {r[0] for r in new.root_sql("SELECT seq FROM app.w")}
        assert set(writer.acked) <= rows
        new.root_sql("DELETE FROM app.w")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_switch_rolls_back_cleanly_and_no_write_fails(pair, config, signum):
    """The drain waits on an open transaction (up to 2.9 s); the operator's process is
    stopped meanwhile, with the lock held and writes held."""
    resil.start(config)
    tx = pymysql.connect(host="orders-db", user="app", password="apppw", database="app")
    with tx.cursor() as cur:
        cur.execute("INSERT INTO w VALUES (-1)")          # an open transaction
    with OneWriter() as writer:
        time.sleep(0.2)
        proc = start_switch(config, "b", "--drain-timeout", "2.9")
        deadline = time.monotonic() + 20
        while "drain" not in "".join(locks(config).keys()) and not locks(config):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        time.sleep(0.5)                                   # writes are held now
        proc.send_signal(signum)
        code = proc.wait(30)
        out, err = proc.communicate()
        tx.commit()
        time.sleep(0.5)
    name = signal.Signals(signum).name
    assert code == 1, out + err
    assert f"interrupted by {name}; rolled back" in err, out + err
    assert "Traceback" not in out + err
    assert f"rolling back: interrupted by {name}" in out and "unlocked orders-db" in out
    assert locks(config) == {}
    assert read_only(pair.primary) == 0 and read_only(pair.replica) == 1
    assert not writer.errors, writer.errors[:3]
    rows = {r[0] for r in pair.primary.root_sql("SELECT seq FROM app.w")}
    assert set(writer.acked) | {-1} <= rows


def start_monitor(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / "resil"), "monitor", "--config", str(config), "--interval", "0.2",
         "--failures", "2", "--timeout", "0.5", "--lease-ttl", "2"],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, env={**os.environ, **PASSWORDS})


def test_a_switch_killed_after_its_lock_is_rolled_back_by_the_monitor(pair, config,
                                                                      tmp_path):
    """kill -9 of the switch while writes are held: its lease lapses (3 s), the monitor
    resolves the lock from the servers, the held writes go on — within their 5 s hold."""
    resil.start(config)
    monitor = start_monitor(config, tmp_path / "monitor.log")
    tx = pymysql.connect(host="orders-db", user="app", password="apppw", database="app")
    with tx.cursor() as cur:
        cur.execute("INSERT INTO w VALUES (-1)")          # keeps the drain waiting
    try:
        with OneWriter() as writer:
            time.sleep(0.5)
            proc = start_switch(config, "b", "--drain-timeout", "2.9")
            deadline = time.monotonic() + 20
            while not locks(config):
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
            time.sleep(0.3)
            proc.kill()
            proc.wait(10)
            killed = time.monotonic()
            while locks(config):
                assert time.monotonic() < killed + 10, (tmp_path / "monitor.log").read_text()
                time.sleep(0.05)
            resolved_after = time.monotonic() - killed
            tx.commit()
            done = len(writer.acked)
            time.sleep(0.5)
            assert len(writer.acked) > done + 10
    finally:
        monitor.terminate()
        monitor.wait(10)
    text = (tmp_path / "monitor.log").read_text()
    print(f"\nlock resolved {resolved_after:.2f} s after the kill\n{text}")
    assert "orphaned switch released: primary a" in text, text
    assert read_only(pair.primary) == 0 and read_only(pair.replica) == 1
    assert not writer.errors, writer.errors[:3]
    rows = {r[0] for r in pair.primary.root_sql("SELECT seq FROM app.w")}
    assert set(writer.acked) | {-1} <= rows


@pytest.mark.parametrize("died", ["after fence", "after promote"])
def test_an_orphaned_lock_is_finished_or_rolled_back_from_the_servers(pair, config, tmp_path,
                                                                      died):
    """The state a switch leaves when it dies at a later step, made by hand: locked,
    the old primary fenced, and — after promote — the target promoted. Before, `resil db
    unlock` republished the fenced primary and the monitor then fenced the promoted one:
    no writable server. Now the monitor finishes (publishes the promoted one) or rolls
    back (unfences the old one), and never leaves both read-only."""
    from resil.ops.servers import Credentials, open_server
    from resil.state import ControlState, Lock
    cfg = load_config(config)
    plane = open_control_plane(cfg.control_url, cfg.topology, cfg.signing_key)
    resource = cfg.resources["orders-db"]
    plane.publish(ControlState.initial(cfg.topology).evolve(locks={"orders-db": Lock(
        "root@gone:1/dead", time.time(), "switch to b")}), issuer="t")
    step = "catch-up" if died == "after fence" else "reverse"
    assert plane.lease("lock:orders-db", "root@gone:1/dead", 0.05, note=step)   # then died
    credentials = Credentials.of(resource)
    old = open_server(resource, resource.endpoint_in("a"), credentials)
    old.fence(60)
    if died == "after promote":
        new = open_server(resource, resource.endpoint_in("b"), credentials)
        new.promote()
        new.close()
    old.close()
    assert read_only(pair.primary) == 1
    status = subprocess.run([str(BIN / "resil"), "status", "--config", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert re.search(r"orders-db +by root@gone:1/dead: switch to b, [\d.]+ s old, step "
                     rf"{step} \(begun [\d.]+ s ago\); holder DEAD", status.stdout), \
        status.stdout
    monitor = start_monitor(config, tmp_path / "monitor.log")
    try:
        deadline = time.monotonic() + 10
        while locks(config):
            assert time.monotonic() < deadline, (tmp_path / "monitor.log").read_text()
            time.sleep(0.05)
        time.sleep(1.0)                     # more rounds: nothing gets fenced
    finally:
        monitor.terminate()
        monitor.wait(10)
    text = (tmp_path / "monitor.log").read_text()
    assert f"(switch to b, at step {step}) outlived its holder's lease" in text, text
    signal_ = plane.load()
    if died == "after fence":
        assert "orphaned switch rolled back" in text, text
        assert signal_.state.primaries["orders-db"] == "a"
        assert read_only(pair.primary) == 0
    else:
        assert "orphaned switch finished: primary b" in text, text
        assert signal_.state.primaries["orders-db"] == "b"
        assert read_only(pair.replica) == 0
    assert "came back writable" not in text, text


def test_a_lagging_replica_converges_before_the_lock_so_writes_barely_pause(pair, config):
    """The replica's SQL thread is blocked for 2 s under load, then released: the switch
    waits (writes flowing) until it is level, then locks; the longest write pause is the
    short catch-up under the lock, not the lag."""
    import threading
    resil.start(config)
    with context.bypass():      # resil's routing would send this to the primary
        blocker = pair.replica.connect(user="resil", password="resilpw", database="app")
    with OneWriter() as writer:
        time.sleep(0.3)
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLES w READ")       # the replica stops applying
        release = threading.Timer(2.0, blocker.close)
        release.start()
        time.sleep(0.3)
        proc = start_switch(config, "b")
        code = proc.wait(60)
        out, err = proc.communicate()
        release.join()
        time.sleep(0.3)
    assert code == 0, out + err
    assert "converging:" in out and "target level with the primary" in out, out
    assert not writer.errors, writer.errors[:3]
    pauses = [b - a for a, b in zip(writer.times, writer.times[1:], strict=False)]
    print(f"\nlongest write pause {max(pauses) * 1000:.0f} ms\n{out}")
    assert max(pauses) < 1.0, out
    rows = {r[0] for r in pair.replica.root_sql("SELECT seq FROM app.w")}
    assert set(writer.acked) <= rows


def test_a_publish_that_lands_while_the_switch_holds_its_lock_is_kept(pair, config):
    """The switch publishes the new primary from the state it locked, without reading
    the store while writes wait. Another operator's publish in between (a traffic
    change) wins that epoch race: the switch then builds on the stored state, and the
    change stays, with the new primary and the lock gone."""
    from resil.ops.truth import trusted_state
    from resil.state import issuer
    proc = start_switch(config, "b", "--drain-timeout", "1", "--pause-after", "reverse:1")
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("pausing"):
            break
    else:
        raise AssertionError(f"the switch never paused: {proc.communicate()}")
    cfg = load_config(config)
    plane = open_control_plane(cfg.control_url, cfg.topology, cfg.signing_key)
    state = trusted_state(cfg, plane, issuer(), print)
    assert "orders-db" in state.locks
    plane.publish(state.evolve(weights={**state.weights, "b": 0.5}), issuer="other operator")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, out + err
    final = plane.load()
    assert final is not None
    assert final.state.primaries["orders-db"] == "b" and not final.state.locks
    assert final.state.weights["b"] == 0.5              # the other operator's change kept
    assert (read_only(pair.primary), read_only(pair.replica)) == (1, 0)


def test_a_switch_stopped_in_its_spares_step_locks_nothing_and_no_write_waits(pair, config):
    """An agent that never says its spares are open (a live heartbeat, no process) keeps
    the switch in its spares step; SIGTERM there: exit 1 in one line, no lock, both
    servers as they were, and a writer that never waited or failed."""
    resil.start(config)
    cfg = load_config(config)
    plane = open_control_plane(cfg.control_url, cfg.topology, cfg.signing_key)
    ghost = {"id": "ghost:1", "unit": "a", "epoch": 0, "reported_at": time.time()}
    with OneWriter() as writer:
        plane.report(ghost)
        proc = start_switch(config, "b", "--spares-timeout", "4.5")
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        while True:      # the intent is published: the switch waits for the ghost
            stored = plane.load()
            if stored is not None and "orders-db" in stored.state.intents:
                break
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        acked_during = len(writer.acked)
        time.sleep(0.3)
    assert proc.returncode == 1, out + err
    assert "switch failed: interrupted by SIGTERM; nothing was locked" in err, out + err
    assert "Traceback" not in out + err and "\nlock " not in out
    stored = plane.load()
    assert stored is not None and not stored.state.locks
    assert stored.state.primaries.get("orders-db", "a") == "a"
    assert read_only(pair.primary) == 0 and read_only(pair.replica) == 1
    assert not writer.errors, writer.errors[:3]
    assert acked_during > 0 and len(writer.acked) > acked_during
