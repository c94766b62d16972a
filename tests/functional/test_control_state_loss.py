"""Losing, corrupting or rolling back the control state never causes an outage.

The servers are the truth; the control state is a cache of them. After a planned switch
to unit b, the state file is deleted, an older copy is put back, or garbage is written
into it. An application writes through the agent all along and `resil monitor` runs.

Before, the monitor fell back to the configuration's primary (a, now a read-only
replica), found b writable and fenced it: a total write outage. Now the monitor sees
that the stored state cannot be trusted, rebuilds it from the servers (b is the one
writable server) and republishes it above the agents' epoch; nothing is fenced, no
write fails or is lost, and a primary killed afterwards is still failed over.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pymysql
import pytest

import resil
from functional.writers import OneWriter as Writer
from resil.config import load_config
from resil.control import open_control_plane
from resil.state import ControlState, issuer
from servers import MariaDBPair, Redis, RedisPair
from servers.config import PASSWORDS, resil_toml

pytestmark = pytest.mark.adversarial

BIN = Path(sys.executable).parent


@pytest.fixture
def pair(tmp_path):
    with MariaDBPair(tmp_path / "mysql") as pair:
        pair.primary.root_sql("CREATE TABLE app.w (seq INT PRIMARY KEY)")
        pair.replica.root_sql("STOP SLAVE; SET GLOBAL slave_net_timeout = 2; "
                              "CHANGE MASTER TO MASTER_HEARTBEAT_PERIOD = 0.5; START SLAVE")
        pair.wait_caught_up()
        yield pair


@pytest.fixture
def config(pair, write_config, tmp_path, monkeypatch):
    for key, value in PASSWORDS.items():
        monkeypatch.setenv(key, value)
    return write_config(resil_toml((tmp_path / "state.json").as_uri(), mysql=pair))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "resil"), *args], capture_output=True, text=True,
                          timeout=90, env={**os.environ, **PASSWORDS})


def read_only(server) -> int:
    return int(server.root_sql("SELECT @@read_only")[0][0])


def wait_for(path: Path, text: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        assert time.monotonic() < deadline, path.read_text()
        time.sleep(0.05)


@pytest.mark.parametrize("tamper", ["deleted", "rolled_back", "garbage"])
def test_a_lost_control_state_is_rebuilt_from_the_servers_not_acted_on(pair, config,
                                                                        tmp_path, tamper):
    state_file = tmp_path / "state.json"
    cfg = load_config(config)
    plane = open_control_plane(cfg.control_url, cfg.topology, cfg.signing_key)
    plane.publish(ControlState.initial(cfg.topology).evolve(), issuer=issuer())
    shutil.copy(state_file, tmp_path / "epoch-1.json")      # an old, valid state
    agent = resil.start(config)
    out = run("db", "switch", "orders-db", "--to", "b", "--config", str(config))
    assert out.returncode == 0, out.stdout + out.stderr
    assert read_only(pair.replica) == 0 and read_only(pair.primary) == 1
    log_path = tmp_path / "monitor.log"
    with Writer() as writer, open(log_path, "w") as log:
        time.sleep(0.3)
        applied = agent.state.epoch
        assert applied >= 3 and agent.state.primaries["orders-db"] == "b"
        if tamper == "deleted":
            state_file.unlink()
        elif tamper == "rolled_back":
            shutil.copy(tmp_path / "epoch-1.json", state_file)
        else:
            state_file.write_text("{not a signal")
        monitor = subprocess.Popen(
            [str(BIN / "resil"), "monitor", "--config", str(config), "--interval", "0.2",
             "--failures", "2", "--timeout", "0.5", "--lease-ttl", "2"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **PASSWORDS})
        try:
            wait_for(log_path, "reconciled from the servers")
            time.sleep(1.0)                 # more rounds: nothing else happens
            stored = json.loads(state_file.read_text())
            assert stored["epoch"] > applied
            assert stored["state"]["primaries"]["orders-db"] == "b"
            assert agent.state.epoch == stored["epoch"]      # the agents took it
            assert read_only(pair.replica) == 0, log_path.read_text()
            assert not writer.errors, writer.errors[:3]
            # The rebuilt state is live: a primary killed now is still failed over.
            acked_before_kill = list(writer.acked)
            pair.replica.kill()
            wait_for(log_path, "new primary", timeout=20)
            assert read_only(pair.primary) == 0
            done = len(writer.acked)
            deadline = time.monotonic() + 10
            while len(writer.acked) < done + 20:     # writes go on, on a
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.05)
        finally:
            monitor.terminate()
            monitor.wait(10)
    text = log_path.read_text()
    print(f"\n{tamper}:\n{text}")
    assert "came back writable" not in text, text
    assert text.count("WARNING") == 1, text         # said once, not every round
    assert agent.state.primaries["orders-db"] == "a"
    rows = {r[0] for r in pair.primary.root_sql("SELECT seq FROM app.w")}
    # Asynchronous replication: the last writes before the kill may be lost, not the
    # ones acknowledged well before it.
    assert set(acked_before_kill[:-50]) <= rows


def test_a_switch_after_the_state_was_lost_is_followed_by_the_agents(pair, config, tmp_path):
    """`resil db switch` on a lost state used to publish epoch 1-2 below the agents'
    epoch: they ignored it and wrote to the demoted server, while the command said
    "1/1 agent(s) on epoch 2". Now it reconciles first and publishes above them."""
    agent = resil.start(config)
    out = run("db", "switch", "orders-db", "--to", "b", "--config", str(config))
    assert out.returncode == 0, out.stdout + out.stderr
    with Writer() as writer:
        time.sleep(0.3)
        before = agent.state.epoch
        (tmp_path / "state.json").unlink()
        out = run("db", "switch", "orders-db", "--to", "a", "--config", str(config))
        assert out.returncode == 0, out.stdout + out.stderr
        assert "reconciling from the servers" in out.stdout, out.stdout
        time.sleep(0.5)
    assert agent.state.epoch > before + 1
    assert agent.state.primaries["orders-db"] == "a"
    assert read_only(pair.primary) == 0 and read_only(pair.replica) == 1
    assert not writer.errors, writer.errors[:3]
    rows = {r[0] for r in pair.primary.root_sql("SELECT seq FROM app.w")}
    assert set(writer.acked) <= rows


def test_status_says_when_the_store_is_behind_its_agents(pair, config, tmp_path):
    agent = resil.start(config)
    out = run("db", "switch", "orders-db", "--to", "b", "--config", str(config))
    assert out.returncode == 0, out.stdout + out.stderr
    conn = pymysql.connect(host="orders-db", user="app", password="apppw", database="app",
                           autocommit=True)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO w VALUES (1)")        # the agent watches and heartbeats
    time.sleep(1.5)
    (tmp_path / "state.json").unlink()
    out = run("status", "--config", str(config))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "lost" in out.stdout and f"epoch {agent.state.epoch}" in out.stdout, out.stdout
    assert "resil state reconcile" in out.stdout
    out = run("state", "reconcile", "--config", str(config))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "orders-db: the servers say the primary is in b" in out.stdout, out.stdout
    out = run("status", "--config", str(config))
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture
def control_redis(tmp_path):
    server = Redis(tmp_path, "control")
    server.start()
    yield server
    server.destroy()


def test_a_tampered_redis_control_plane_never_stops_writes_or_failover(
        pair, write_config, tmp_path, monkeypatch, control_redis):
    """Signed signals on a Redis control plane, and a writer of that Redis without the key:
    an empty restart (FLUSHALL), a replayed old signed signal, garbage in the state key,
    a planted monitor lease and heartbeats from the future. Writes never stop; the
    monitor rebuilds the state each time and still fails over a killed primary."""
    for key, value in {**PASSWORDS, "TEST_SIGNING_KEY": "s3cret"}.items():
        monkeypatch.setenv(key, value)
    url = f"redis://127.0.0.1:{control_redis.port}/0"
    config = write_config(resil_toml(url, mysql=pair, control=(
        'poll_interval = 0.05\nheartbeat_interval = 0.2\n'
        'signing_key_env = "TEST_SIGNING_KEY"')))
    cfg = load_config(config)
    plane = open_control_plane(cfg.control_url, cfg.topology, cfg.signing_key)
    plane.publish(ControlState.initial(cfg.topology).evolve(), issuer=issuer())
    client = control_redis.client(decode_responses=False)
    old_signal = client.get("resil:state")                   # validly signed, epoch 1
    agent = resil.start(config)
    out = run("db", "switch", "orders-db", "--to", "b", "--config", str(config))
    assert out.returncode == 0, out.stdout + out.stderr
    log_path = tmp_path / "monitor.log"
    reconciled = 0

    def tampered_then_reconciled(tamper: Callable[[], None]) -> None:
        nonlocal reconciled
        before = agent.state.epoch
        tamper()
        reconciled += 1
        deadline = time.monotonic() + 15
        while log_path.read_text().count("reconciled from the servers") < reconciled:
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        deadline = time.monotonic() + 5
        while agent.state.epoch <= before:
            assert time.monotonic() < deadline, (before, agent.state.epoch)
            time.sleep(0.05)
        assert agent.state.primaries["orders-db"] == "b"
        assert read_only(pair.replica) == 0, log_path.read_text()

    with Writer() as writer, open(log_path, "w") as log:
        monitor = subprocess.Popen(
            [str(BIN / "resil"), "monitor", "--config", str(config), "--interval", "0.2",
             "--failures", "2", "--timeout", "0.5", "--lease-ttl", "2"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **PASSWORDS,
                                                       "TEST_SIGNING_KEY": "s3cret"})
        try:
            wait_for(log_path, "this monitor acts")
            tampered_then_reconciled(client.flushall)           # an empty restart
            tampered_then_reconciled(lambda: client.set("resil:state", old_signal))
            tampered_then_reconciled(lambda: client.set("resil:state", b"garbage"))
            # A planted lease and heartbeats from the future: the monitor still acts.
            client.set("resil:lease:monitor", b"intruder")
            for i in range(3):
                client.set(f"resil:agents:forged:{i}", json.dumps(
                    {"id": f"forged:{i}", "epoch": 10**18, "reported_at": time.time() + 9e9,
                     "in_flight": {"orders-db": 99}}))
            assert not writer.errors, writer.errors[:3]
            pair.replica.kill()                                  # b, the primary
            wait_for(log_path, "new primary", timeout=20)
            done = len(writer.acked)
            deadline = time.monotonic() + 10
            while len(writer.acked) < done + 20:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.05)
        finally:
            monitor.terminate()
            monitor.wait(10)
    text = log_path.read_text()
    print(f"\n{text}")
    assert "came back writable" not in text
    assert agent.state.primaries["orders-db"] == "a" and read_only(pair.primary) == 0
    assert agent.state.epoch < 10**6          # forged epochs were not believed


def test_a_switch_that_an_agent_did_not_follow_is_not_reported_as_success(pair, config,
                                                                           tmp_path):
    """A live agent that never applies the new epoch (a stuck process, or one reading
    another store): the servers switch, but the command exits 3 and names it."""
    cfg = load_config(config)
    plane = open_control_plane(cfg.control_url, cfg.topology, cfg.signing_key)
    stop = threading.Event()

    def stuck_agent() -> None:
        while not stop.is_set():
            plane.report({"id": "stuck:1", "host": "elsewhere", "pid": 1, "unit": "a",
                          "epoch": 0, "in_flight": {}, "reported_at": time.time()})
            time.sleep(0.1)
    beating = threading.Thread(target=stuck_agent)
    beating.start()
    try:
        out = run("db", "switch", "orders-db", "--to", "b", "--config", str(config))
    finally:
        stop.set()
        beating.join(5)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "stuck:1" in out.stderr and "switched on the servers" in out.stderr
    assert read_only(pair.replica) == 0


def test_reconcile_reads_redis_roles_too(write_config, tmp_path, monkeypatch):
    """A redis resource switched to b, then the state file lost: the servers (b is the
    master, a replicates from it) say b; an agent at the old epoch takes the rebuilt
    state and keeps writing to b."""
    with RedisPair(tmp_path / "redis") as redis_pair:
        for key, value in PASSWORDS.items():
            monkeypatch.setenv(key, value)
        config = write_config(resil_toml((tmp_path / "state.json").as_uri(),
                                         redis=redis_pair))
        out = run("db", "switch", "cache", "--to", "b", "--config", str(config))
        assert out.returncode == 0, out.stdout + out.stderr
        agent = resil.start(config)
        import redis as redis_py
        client = redis_py.Redis(host="cache", port=6379, socket_timeout=2)
        client.set("k", "1")                      # routed to b; the agent heartbeats
        time.sleep(1.5)
        before = agent.state.epoch
        (tmp_path / "state.json").unlink()
        out = run("state", "reconcile", "--config", str(config))
        assert out.returncode == 0, out.stdout + out.stderr
        assert "cache: the servers say the primary is in b" in out.stdout, out.stdout
        deadline = time.monotonic() + 5
        while agent.state.epoch <= before:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert agent.state.primaries["cache"] == "b"
        client.set("k", "2")
        assert redis_pair.replica.client().get("k") == "2"


APP = """
import os, sys, time, pymysql
acked = open(sys.argv[1], "a", buffering=1)
errors = open(sys.argv[2], "a", buffering=1)
conn, seq = None, 0
while not os.path.exists(sys.argv[3]):
    seq += 1
    try:
        if conn is None:
            conn = pymysql.connect(host="orders-db", user="app", password="apppw",
                                   database="app", autocommit=True, connect_timeout=2,
                                   read_timeout=2, write_timeout=2)
        with conn.cursor() as cur:
            cur.execute("INSERT INTO w VALUES (%s)", (seq,))
        acked.write(f"{seq}\\n")
    except Exception as exc:
        errors.write(f"{seq} {exc!r}\\n")
        conn = None
    time.sleep(0.005)
"""


def test_a_plain_app_under_resil_run_keeps_writing_through_switches_on_a_lost_state(
        pair, config, tmp_path):
    """The issue's case, as a user meets it: an application that never heard of resil,
    under resil-run, and `resil monitor` running; a switch, the state file lost, a switch
    back. Before, the second
    switch published below the agent's epoch: it was ignored, and every write failed
    on the demoted server while the command reported success."""
    app = tmp_path / "app.py"
    app.write_text(APP)
    acked, errors, stop = tmp_path / "acked", tmp_path / "errors", tmp_path / "stop"
    proc = subprocess.Popen([str(BIN / "resil-run"), "--config", str(config), sys.executable,
                             str(app), str(acked), str(errors), str(stop)],
                            env={**os.environ, **PASSWORDS})
    log = open(tmp_path / "monitor.log", "w")
    monitor = subprocess.Popen(
        [str(BIN / "resil"), "monitor", "--config", str(config), "--interval", "0.2",
         "--failures", "2", "--timeout", "0.5", "--lease-ttl", "2"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **PASSWORDS})
    try:
        deadline = time.monotonic() + 15
        while not acked.exists() or len(acked.read_text().split()) < 50:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        for unit in ("b", "a"):
            out = run("db", "switch", "orders-db", "--to", unit, "--config", str(config))
            assert out.returncode == 0, out.stdout + out.stderr
            if unit == "b":
                time.sleep(0.5)
                (tmp_path / "state.json").unlink()
            time.sleep(0.5)
        count = len(acked.read_text().split())
        time.sleep(0.5)
        assert len(acked.read_text().split()) > count + 20      # still writing, on a
    finally:
        stop.touch()
        proc.wait(15)
        monitor.terminate()
        monitor.wait(10)
        log.close()
    text = (tmp_path / "monitor.log").read_text()
    assert "came back writable" not in text and "FAILOVER" not in text, text
    assert read_only(pair.primary) == 0 and read_only(pair.replica) == 1
    assert not errors.exists() or errors.read_text() == "", errors.read_text()[:500]
    rows = {r[0] for r in pair.primary.root_sql("SELECT seq FROM app.w")}
    assert {int(s) for s in acked.read_text().split()} <= rows
