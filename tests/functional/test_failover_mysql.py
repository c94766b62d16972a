"""Unplanned failover: `resil monitor` promotes the replica when the primary dies or freezes.

Each test starts its own semi-synchronous MariaDB pair (the tests break it), runs the
agent in this process with 16 writer threads, and `resil monitor` as a subprocess.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pymysql
import pytest

import resil
from functional.writers import Tally, Writers
from resil import context
from resil.config import load_config
from resil.control import open_control_plane
from resil.state import ControlState
from servers import MariaDBPair
from servers.config import PASSWORDS, resil_toml

pytestmark = pytest.mark.adversarial

BIN = Path(sys.executable).parent
ENV = PASSWORDS
TIMEOUT = 2.0       # the application's connect and read/write timeouts
# One write is at most a connect (TCP, then the server's greeting: each bounded by
# TIMEOUT) and one statement (bounded by TIMEOUT); plus scheduling slack.
BOUND = 3 * TIMEOUT + 0.5


@pytest.fixture
def pair(tmp_path):
    with MariaDBPair(tmp_path / "mysql", semi_sync=True) as pair:
        # Semi-sync must not fall back to asynchronous while we test "no acked write
        # lost"; a frozen primary is noticed by the replica after slave_net_timeout.
        pair.primary.root_sql("SET GLOBAL rpl_semi_sync_master_timeout = 30000;"
                              "CREATE TABLE app.w (writer VARCHAR(16), seq INT, "
                              "PRIMARY KEY (writer, seq))")
        pair.replica.root_sql("STOP SLAVE; SET GLOBAL slave_net_timeout = 2; "
                              "CHANGE MASTER TO MASTER_HEARTBEAT_PERIOD = 0.5; START SLAVE")
        pair.wait_caught_up()
        yield pair


@pytest.fixture
def config(pair, write_config, tmp_path, monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    return write_config(resil_toml((tmp_path / "state.json").as_uri(), mysql=pair))


def start_monitor(config: Path, tmp_path: Path, name: str = "monitor",
                  failures: int = 3) -> subprocess.Popen:
    log = open(tmp_path / f"{name}.log", "w")
    return subprocess.Popen([str(BIN / "resil"), "monitor", "--config", str(config),
                             "--interval", "0.3", "--failures", str(failures),
                             "--timeout", "0.5",
                             "--lease-ttl", "2"], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **ENV})


def start_writers() -> tuple[Writers, list[float]]:
    """16 threads of autocommit INSERTs; returns them and the times of acknowledged writes."""
    writers = Writers()
    acked_at: list[float] = []

    def connect():
        return pymysql.connect(host="orders-db", user="app", password="apppw", database="app",
                               autocommit=True, connect_timeout=TIMEOUT,
                               read_timeout=TIMEOUT, write_timeout=TIMEOUT)

    for i in range(16):
        def write(tally: Tally, seq: int, box: list) -> None:
            if box[0] is None:
                box[0] = connect()
            try:
                with box[0].cursor() as cur:
                    cur.execute("INSERT INTO w VALUES (%s, %s)", (tally.name, seq))
            except pymysql.err.MySQLError:
                box[0] = None       # what a pool does: drop the broken connection
                raise
            tally.acked.append(seq)
            acked_at.append(time.monotonic())
        writers.add(f"w{i}", write, setup=lambda: [None])
    writers.start()
    return writers, acked_at


def present(server) -> set[tuple[str, int]]:
    with context.bypass():
        return set(server.root_sql("SELECT writer, seq FROM app.w"))


def wait_for_write_after(acked_at: list[float], moment: float, timeout: float) -> float:
    deadline = moment + timeout
    while time.monotonic() < deadline:
        after = [t for t in acked_at if t > moment + 0.05]
        if after:
            return min(after) - moment
        time.sleep(0.02)
    raise AssertionError(f"no acknowledged write within {timeout} s")


def promote_by_hand(pair: MariaDBPair, config: Path) -> None:
    """What a failover does, made by hand: the replica (unit b) promoted and published."""
    pair.replica.root_sql("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0")
    publish_b(config)


def publish_b(config: Path) -> None:
    """Publish unit b as the primary of orders-db."""
    cfg = load_config(config)
    open_control_plane(cfg.control_url, cfg.topology, None).publish(
        ControlState.initial(cfg.topology).evolve(primaries={"orders-db": "b"}), issuer="t")


def connect_and_ask(got: list[object], connect_timeout: float) -> None:
    """Connect to orders-db and append (server id, seconds taken), or (error, seconds)."""
    began = time.monotonic()
    try:
        conn = pymysql.connect(host="orders-db", user="app", password="apppw",
                               database="app", connect_timeout=connect_timeout)
        with conn.cursor() as cur:
            cur.execute("SELECT @@server_id")
            got.append((cur.fetchone()[0], time.monotonic() - began))
    except Exception as exc:
        got.append((exc, time.monotonic() - began))


def test_kill_9_of_the_primary(pair, config, tmp_path):
    resil.start(config)
    monitor = start_monitor(config, tmp_path)
    writers, acked_at = start_writers()
    try:
        time.sleep(1.5)                        # the monitor holds its lease; writes flow
        killed = time.monotonic()
        pair.primary.kill()
        recovered = wait_for_write_after(acked_at, killed, timeout=5.0)
        time.sleep(0.5)
    finally:
        writers.stop()
        monitor.send_signal(signal.SIGTERM)
        monitor.wait(10)
    log = (tmp_path / "monitor.log").read_text()
    assert "FAILOVER from" in log and "new primary" in log, log
    assert "rpl_semi_sync_master_timeout" not in log, log       # 30 s: long enough
    assert recovered < 5.0
    rows = present(pair.replica)
    lost = [(t.name, s) for t in writers.tallies for s in t.acked if (t.name, s) not in rows]
    assert not lost, f"{len(lost)} acknowledged writes lost"
    longest = writers.longest_pause()
    assert longest < BOUND, longest             # nobody blocked beyond the app's timeouts
    print(f"\nkill -9: first write on the new primary {recovered:.2f} s after the kill; "
          f"{len(writers.errors)} client errors; {writers.acked} acked, 0 lost; longest "
          f"block {longest:.2f} s\n{log}")


def test_agents_that_cannot_connect_confirm_the_first_failed_probe(pair, config, tmp_path):
    """The writers' agent reports at once that it cannot connect to the killed primary;
    the monitor, asked for 8 failed probes, takes that as confirmation of its first one
    (the replica still has to agree) and fails over without waiting for the other 7."""
    resil.start(config)
    monitor = start_monitor(config, tmp_path, failures=8)
    writers, acked_at = start_writers()
    try:
        time.sleep(1.5)
        killed = time.monotonic()
        pair.primary.kill()
        recovered = wait_for_write_after(acked_at, killed, timeout=5.0)
        time.sleep(0.5)
    finally:
        writers.stop()
        monitor.send_signal(signal.SIGTERM)
        monitor.wait(10)
    log = (tmp_path / "monitor.log").read_text()
    assert "cannot connect to 127.0.0.1:" in log and "one failed probe is enough" in log, log
    assert "FAILOVER from" in log and "probe 8/8" not in log, log
    rows = present(pair.replica)
    lost = [(t.name, s) for t in writers.tallies for s in t.acked if (t.name, s) not in rows]
    assert not lost, f"{len(lost)} acknowledged writes lost"
    print(f"\nkill -9, witnessed: first write {recovered:.2f} s after the kill\n{log}")


def test_frozen_primary_is_failed_over_and_fenced_when_it_thaws(pair, config, tmp_path):
    resil.start(config)
    monitor = start_monitor(config, tmp_path)
    writers, acked_at = start_writers()
    try:
        time.sleep(1.5)
        frozen = time.monotonic()
        pair.primary.freeze()
        recovered = wait_for_write_after(acked_at, frozen, timeout=10.0)
        pair.primary.thaw()
        deadline = time.monotonic() + 5
        while "came back writable" not in (tmp_path / "monitor.log").read_text():
            assert time.monotonic() < deadline, (tmp_path / "monitor.log").read_text()
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        pair.primary.thaw()
        writers.stop()
        monitor.send_signal(signal.SIGTERM)
        monitor.wait(10)
    assert pair.primary.root_sql("SELECT @@read_only") == [(1,)]     # fenced, not writable
    rows = present(pair.replica)
    lost = [(t.name, s) for t in writers.tallies for s in t.acked if (t.name, s) not in rows]
    assert not lost, f"{len(lost)} acknowledged writes lost"
    assert writers.longest_pause() < BOUND
    # The replica had heard nothing (not even a heartbeat) since the second failed probe:
    # acted on then, before its own slave_net_timeout and the third probe.
    log = (tmp_path / "monitor.log").read_text()
    assert "every reachable replica has heard nothing from the primary" in log, log
    assert "probe 3/3" not in log.split("FAILOVER from")[0], log
    print(f"\nSIGSTOP: first write on the new primary {recovered:.2f} s after the freeze; "
          f"{len(writers.errors)} client errors")


def test_two_monitors_fail_over_once_and_the_second_takes_over(pair, config, tmp_path):
    """Only the lease holder acts; kill it and the other one takes the lease over."""
    first = start_monitor(config, tmp_path, "first")
    time.sleep(1.0)                                   # the first one holds the lease
    second = start_monitor(config, tmp_path, "second")
    third = None
    try:
        time.sleep(1.0)
        assert "observing only" in (tmp_path / "second.log").read_text()
        first.kill()                                  # mid-run, no release of its lease
        first.wait(5)
        deadline = time.monotonic() + 5               # lease ttl 2 s
        while "this monitor acts" not in (tmp_path / "second.log").read_text():
            assert time.monotonic() < deadline, (tmp_path / "second.log").read_text()
            time.sleep(0.1)
        third = start_monitor(config, tmp_path, "third")
        time.sleep(1.0)
        pair.primary.kill()
        deadline = time.monotonic() + 8
        while "new primary" not in (tmp_path / "second.log").read_text():
            assert time.monotonic() < deadline, (tmp_path / "second.log").read_text()
            time.sleep(0.1)
        time.sleep(1.5)
    finally:
        for proc in (first, second, third):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
    logs = [(tmp_path / f"{n}.log").read_text() for n in ("first", "second", "third")]
    assert sum(log.count("FAILOVER from") for log in logs) == 1, logs
    assert "observing only" in logs[2] and "FAILOVER" not in logs[2]


@pytest.mark.parametrize("witnesses", [False, True], ids=["alone", "agents-agree"])
def test_a_monitor_cut_off_from_the_primary_does_not_fail_over(pair, config, tmp_path,
                                                              write_config, witnesses):
    """The monitor's view of the primary goes through a black hole; the replica still
    replicates from the real primary: no failover. Not even when agents in both units
    report that they cannot connect to it either (cut off the same way, or forged
    heartbeats): the agents shorten the wait, the replicas decide."""
    import socket
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)                                   # accepts, never answers
    endpoint = f"127.0.0.1:{hole.getsockname()[1]}"
    text = config.read_text().replace(f'a = "127.0.0.1:{pair.primary.port}"',
                                      f'a = "{endpoint}"')
    cut_off = write_config(text, name="monitor.toml")
    stop = threading.Event()

    def report() -> None:                 # two agents, one per unit, cut off too
        cfg = load_config(cut_off)
        plane = open_control_plane(cfg.control_url, cfg.topology, None)
        while not stop.wait(0.1):
            for unit in ("a", "b"):
                plane.report({"id": f"far:{unit}", "host": "far", "pid": 1, "unit": unit,
                              "reported_at": time.time(), "started_at": 0, "epoch": 0,
                              "unreachable": {"orders-db": {"endpoint": endpoint,
                                                            "since": 0}}})
    reporter = threading.Thread(target=report, daemon=True)
    if witnesses:
        reporter.start()
    monitor = start_monitor(cut_off, tmp_path)
    try:
        deadline = time.monotonic() + 6
        while "this monitor is cut off" not in (tmp_path / "monitor.log").read_text():
            assert time.monotonic() < deadline, (tmp_path / "monitor.log").read_text()
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        stop.set()
        monitor.send_signal(signal.SIGTERM)
        monitor.wait(10)
        hole.close()
    log = (tmp_path / "monitor.log").read_text()
    assert "FAILOVER" not in log, log
    assert ("one failed probe is enough" in log) == witnesses, log
    assert "heard nothing" not in log, log          # the replica still hears the primary
    assert pair.primary.root_sql("SELECT @@read_only") == [(0,)]
    assert pair.replica.slave_status()["Slave_IO_Running"] == "Yes"


def test_a_switch_moves_the_semi_sync_role_with_the_primary(pair, config):
    """The demoted primary becomes a semi-sync *replica*: left a semi-sync primary, its
    SQL thread would wait up to rpl_semi_sync_master_timeout (30 s here) for every
    transaction it applies, and the switch back would fail at catch-up."""
    def switch(to: str, *extra: str) -> float:
        started = time.monotonic()
        out = subprocess.run([str(BIN / "resil"), "db", "switch", "orders-db", "--to", to,
                              "--config", str(config), *extra], capture_output=True,
                             text=True, timeout=90, env={**os.environ, **ENV})
        assert out.returncode == 0, out.stdout + out.stderr
        assert ("WARNING rpl_semi_sync_master_timeout" in out.stdout) is bool(extra), \
            out.stdout      # 30 s is long enough; 1 s (below) is said to be too short
        return time.monotonic() - started

    pair.primary.root_sql("SET GLOBAL rpl_semi_sync_master_timeout = 1000")
    switch("b", "--dry-run")
    pair.primary.root_sql("SET GLOBAL rpl_semi_sync_master_timeout = 30000")

    def flags(server) -> dict[str, str]:
        rows = server.root_sql("SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync_%_enabled'")
        return {name: value for name, value in rows}

    assert switch("b") < 10
    assert flags(pair.replica)["rpl_semi_sync_master_enabled"] == "ON"
    assert flags(pair.primary) == {"rpl_semi_sync_master_enabled": "OFF",
                                   "rpl_semi_sync_slave_enabled": "ON"}
    resil.start(config)
    conn = pymysql.connect(host="orders-db", user="app", password="apppw", database="app",
                           autocommit=True, connect_timeout=5)
    with conn.cursor() as cur:       # written on b, applied by a's SQL thread at once
        cur.executemany("INSERT INTO w VALUES ('semi', %s)", [(i,) for i in range(20)])
    assert switch("a") < 10, "the switch back is not stalled by semi-sync ACK waits"
    assert flags(pair.primary)["rpl_semi_sync_master_enabled"] == "ON"
    assert flags(pair.replica)["rpl_semi_sync_master_enabled"] == "OFF"


def test_a_connect_to_a_dead_primary_is_held_until_a_new_one_is_published(
        pair, config, monkeypatch):
    """The primary is dead and no monitor runs yet: a new connection is held (not
    refused at once), then made on the primary published 1 s later. With nothing
    published, the driver's own error comes after `failover_hold`."""
    from resil import counters
    monkeypatch.setenv("RESIL_RESOURCES_ORDERS_DB_FAILOVER_HOLD", "3")
    resil.start(config)
    pair.primary.kill()
    got: list[object] = []
    thread = threading.Thread(target=connect_and_ask, args=(got, 1))
    thread.start()
    time.sleep(1.0)
    assert not got, got                                 # held, not refused
    promote_by_hand(pair, config)
    thread.join(5)
    server, waited = got[0]
    assert server == 2 and 1.0 <= waited < 2.5, got
    assert counters.stats().get("failover_holds_released") == 1

    pair.replica.kill()                                 # now nothing answers at all
    got.clear()
    connect_and_ask(got, 1)
    error, waited = got[0]
    assert isinstance(error, pymysql.err.OperationalError) and error.args[0] == 2003, got
    assert 3.0 <= waited < 4.5, got
    assert counters.stats().get("failover_hold_timeouts") == 1


@pytest.mark.parametrize("semi_sync", [False, True])
def test_a_thawed_primary_never_acknowledges_a_write_that_only_it_has(
        tmp_path, write_config, monkeypatch, semi_sync):
    """SIGSTOP of the primary under writers with long timeouts (30 s), `resil monitor`
    fails over, then SIGCONT. The statements the frozen primary held complete when it
    thaws; before, their OK reached the application for writes that exist only on the
    old primary (acknowledged and lost: 16 with asynchronous replication, 1-14 with a
    1 s semi-sync timeout). Now the agents cut them when the new primary is applied:
    the application gets an error of unknown outcome, and no write acknowledged after
    the freeze is missing from the new primary (with asynchronous replication, what was
    acknowledged in the instant before the freeze and not yet shipped is lost: that is
    asynchronous replication's RPO, and semi-sync is there to close it)."""
    with MariaDBPair(tmp_path / "mysql", semi_sync=semi_sync) as pair:
        if semi_sync:
            pair.primary.root_sql("SET GLOBAL rpl_semi_sync_master_timeout = 1000")
        pair.primary.root_sql("CREATE TABLE app.w (writer VARCHAR(16), seq INT, "
                              "PRIMARY KEY (writer, seq))")
        pair.replica.root_sql("STOP SLAVE; SET GLOBAL slave_net_timeout = 2; "
                              "CHANGE MASTER TO MASTER_HEARTBEAT_PERIOD = 0.5; START SLAVE")
        pair.wait_caught_up()
        for key, value in ENV.items():
            monkeypatch.setenv(key, value)
        config = write_config(resil_toml((tmp_path / "state.json").as_uri(), mysql=pair))
        resil.start(config)
        monitor = start_monitor(config, tmp_path)
        writers = Writers()
        for i in range(8):
            def write(tally: Tally, seq: int, box: list) -> None:
                if box[0] is None:
                    box[0] = pymysql.connect(host="orders-db", user="app", password="apppw",
                                             database="app", autocommit=True,
                                             connect_timeout=5, read_timeout=30,
                                             write_timeout=30)
                try:
                    with box[0].cursor() as cur:
                        cur.execute("INSERT INTO w VALUES (%s, %s)", (tally.name, seq))
                except pymysql.err.MySQLError:
                    box[0] = None
                    raise
                tally.acked.append(seq)
                acked_at[(tally.name, seq)] = time.monotonic()
            writers.add(f"w{i}", write, setup=lambda: [None])
        acked_at: dict[tuple[str, int], float] = {}
        writers.start()
        try:
            time.sleep(1.5)
            pair.primary.freeze()
            # SIGSTOP takes effect as the signal is delivered, not at a timestamp taken
            # before sending it: a write acknowledged in that instant, not yet shipped
            # asynchronously, is replication's RPO. A late OK comes at the thaw, seconds
            # later; 50 ms after the freeze returned cannot hide one.
            frozen = time.monotonic() + 0.05
            deadline = time.monotonic() + 15
            while "new primary" not in (tmp_path / "monitor.log").read_text():
                assert time.monotonic() < deadline, (tmp_path / "monitor.log").read_text()
                time.sleep(0.1)
            time.sleep(1.0)
            thawed = time.monotonic()
            pair.primary.thaw()
            time.sleep(2.0)         # whatever the old primary held completes now
        finally:
            pair.primary.thaw()
            writers.stop()
            monitor.send_signal(signal.SIGTERM)
            monitor.wait(10)
        rows = present(pair.replica)
        only_old = [(t.name, s) for t in writers.tallies for s in t.acked
                    if (t.name, s) not in rows]
        before = [w for w in only_old if acked_at[w] < frozen]
        print(f"\nacknowledged only on the old primary, ms from the freeze: "
              f"{sorted(round((acked_at[w] - frozen) * 1000) for w in only_old)[-5:]}")
        print(f"\nfreeze/thaw (semi-sync {semi_sync}): {writers.acked} acknowledged, "
              f"{len(writers.errors)} client errors, {len(only_old)} acknowledged only on "
              f"the old primary ({len(before)} of them before the freeze)")
        if not semi_sync:
            # Asynchronous replication loses what was acknowledged in the instant before
            # the freeze and not yet shipped: its RPO, not a thaw's late OK. A stopped
            # server sends nothing, so an OK read before the thaw was sent before the
            # stop, however late a busy client read it (72 ms after the freeze returned,
            # once, in CI): only an OK read after the thaw can be a late one.
            only_old = [w for w in only_old if acked_at[w] >= thawed]
        assert not only_old, f"{len(only_old)} acknowledged writes exist only on the old " \
            f"primary: {only_old[:5]}"
        # A 1 s semi-sync timeout is shorter than detection + failover: said at start.
        warned = "WARNING rpl_semi_sync_master_timeout = 1000 ms" in \
            (tmp_path / "monitor.log").read_text()
        assert warned is semi_sync


def test_a_connect_waiting_on_a_frozen_primary_is_moved_when_a_new_one_is_published(
        pair, config):
    """A frozen primary's kernel still accepts connections: a connect then waits for a
    greeting that never comes, for its whole connect_timeout. When a new primary is
    published, the agent cuts that connect (nothing was sent) and makes it on the new
    one at once, instead of after the timeout."""
    resil.start(config)
    got: list[object] = []
    pair.primary.freeze()
    try:
        thread = threading.Thread(target=connect_and_ask, args=(got, 5))
        thread.start()
        time.sleep(1.0)
        assert not got, got                             # waiting for the greeting
        pair.replica.root_sql("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0")
        published = time.monotonic()
        publish_b(config)
        thread.join(6)
        ended = time.monotonic()
    finally:
        pair.primary.thaw()
    server, _ = got[0]
    assert server == 2 and ended - published < 0.3, (got, ended - published)


def test_a_connect_to_a_frozen_server_ends_at_its_connect_timeout(pair, config,
                                                                  monkeypatch):
    """A frozen server's kernel accepts the TCP connection; PyMySQL then waits for the
    greeting as long as its read timeout (resil's io_timeout, 30 s). resil bounds the
    greeting and login by the connect timeout, and gives the read timeout back for the
    statements after it."""
    monkeypatch.setenv("RESIL_RESOURCES_ORDERS_DB_FAILOVER_HOLD", "0")   # the raw error
    resil.start(config)
    conn = pymysql.connect(host="orders-db", user="app", password="apppw", database="app",
                           connect_timeout=1)
    with conn.cursor() as cur:                          # longer than connect_timeout
        cur.execute("SELECT SLEEP(1.5)")
    conn.close()
    pair.primary.freeze()
    try:
        began = time.monotonic()
        with pytest.raises(pymysql.err.OperationalError) as raised:
            pymysql.connect(host="orders-db", user="app", password="apppw",
                            database="app", connect_timeout=1)
        waited = time.monotonic() - began
    finally:
        pair.primary.thaw()
    assert raised.value.args[0] in (2003, 2013), raised.value
    assert waited < 2.0, waited


def test_an_idle_connection_the_dead_primary_closed_is_replaced_not_failed(pair, config):
    """A pooled connection that sat idle while its primary died: the server closed it
    before the application's next statement was sent. The statement is held (no server
    to send it to) and runs once on the new primary. A connection inside a transaction
    is not: its transaction is gone, and the application hears so."""
    from resil import counters
    resil.start(config)

    def connect(autocommit: bool):
        return pymysql.connect(host="orders-db", user="app", password="apppw",
                               database="app", autocommit=autocommit, read_timeout=5)
    idle, in_tx = connect(True), connect(False)
    idle.cursor().execute("SELECT 1")
    in_tx.cursor().execute("INSERT INTO w VALUES ('tx', 1)")      # a transaction open
    pair.primary.kill()
    time.sleep(0.3)                                     # the FIN/RST is there now

    def fail_over() -> None:
        time.sleep(1.0)
        promote_by_hand(pair, config)
    threading.Thread(target=fail_over).start()
    began = time.monotonic()
    with idle.cursor() as cur:
        cur.execute("INSERT INTO w VALUES ('idle', 1)")
        cur.execute("SELECT @@server_id")
        assert cur.fetchone()[0] == 2
    assert 0.8 < time.monotonic() - began < 3.0         # held until the failover
    assert counters.stats().get("mysql_dead_connections_replaced") == 1
    assert pair.replica.root_sql("SELECT writer, seq FROM app.w WHERE writer = 'idle'") \
        == [("idle", 1)]
    with pytest.raises((resil.TransactionInterruptedError, pymysql.err.OperationalError)):
        in_tx.cursor().execute("INSERT INTO w VALUES ('tx', 2)")
    assert counters.stats().get("mysql_dead_connections_replaced") == 1
