"""`resil db switch` on a MariaDB pair while 16 threads write: no error, no lost write.

The writers: 8 threads of autocommit INSERTs, 4 of multi-statement transactions
(BEGIN; INSERT; UPDATE; INSERT; COMMIT) on long-lived connections, and 4 sharing a
SQLAlchemy QueuePool. All connect to "orders-db", an alias resil routes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pymysql
import pytest
import sqlalchemy

import resil
from functional.writers import Tally, Writers
from resil import context, counters, registry
from servers import MariaDBPair
from servers.config import PASSWORDS, resil_toml
from servers.ports import wait_until

RESIL = str(Path(sys.executable).parent / "resil")
ENV = PASSWORDS


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with MariaDBPair(tmp_path_factory.mktemp("switch-mysql")) as pair:
        pair.primary.root_sql(
            "CREATE TABLE app.auto (writer VARCHAR(16), seq INT, PRIMARY KEY (writer, seq));"
            "CREATE TABLE app.tx (writer VARCHAR(16), seq INT, part INT,"
            " PRIMARY KEY (writer, seq, part));"
            "CREATE TABLE app.counters (writer VARCHAR(16) PRIMARY KEY, n INT)")
        pair.wait_caught_up()
        yield pair


@pytest.fixture
def config(pair, write_config, tmp_path, monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    return write_config(resil_toml((tmp_path / "state.json").as_uri(), mysql=pair))


def switch(config: Path, to: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RESIL, "db", "switch", "orders-db", "--to", to, "--config",
                           str(config), *extra], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **ENV})


def connect() -> pymysql.connections.Connection:
    return pymysql.connect(host="orders-db", user="app", password="apppw", database="app",
                           autocommit=True, connect_timeout=5, read_timeout=10)


def start_writers(prefix: str) -> Writers:
    writers = Writers()
    for i in range(8):
        def auto(tally: Tally, seq: int, conn: pymysql.connections.Connection) -> None:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO auto VALUES (%s, %s)", (tally.name, seq))
            tally.acked.append(("auto", tally.name, seq))
        writers.add(f"{prefix}auto{i}", auto, setup=connect)
    for i in range(4):
        def tx(tally: Tally, seq: int, conn: pymysql.connections.Connection) -> None:
            conn.begin()
            with conn.cursor() as cur:
                cur.execute("INSERT INTO tx VALUES (%s, %s, 1)", (tally.name, seq))
                cur.execute("INSERT INTO counters VALUES (%s, 1) ON DUPLICATE KEY UPDATE "
                            "n = n + 1", (tally.name,))
                cur.execute("INSERT INTO tx VALUES (%s, %s, 2)", (tally.name, seq))
            conn.commit()
            tally.acked.append(("tx", tally.name, seq))
        writers.add(f"{prefix}tx{i}", tx, setup=connect)
    engine = sqlalchemy.create_engine("mysql+pymysql://app:apppw@orders-db/app",
                                      pool_size=4, max_overflow=0, pool_pre_ping=False)
    for i in range(4):
        def pooled(tally: Tally, seq: int) -> None:
            with engine.begin() as conn:
                conn.execute(sqlalchemy.text("INSERT INTO auto VALUES (:w, :s)"),
                             {"w": tally.name, "s": seq})
            tally.acked.append(("auto", tally.name, seq))
        writers.add(f"{prefix}pool{i}", pooled)
    writers.start()
    return writers


def rows(server, table: str) -> set[tuple]:
    return set(server.root_sql(f"SELECT * FROM app.{table}"))


def check_no_loss(pair: MariaDBPair, new, writers: Writers) -> None:
    auto, tx = rows(new, "auto"), rows(new, "tx")
    missing = [a for a in (t for tl in writers.tallies for t in tl.acked)
               if (a[0] == "auto" and (a[1], a[2]) not in auto)
               or (a[0] == "tx" and {(a[1], a[2], 1), (a[1], a[2], 2)} - tx)]
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
    counters = dict(new.root_sql("SELECT writer, n FROM app.counters"))
    for tally in writers.tallies:
        if "tx" in tally.name:
            assert counters.get(tally.name, 0) == len(tally.acked), tally.name


def test_switch_under_load_ten_times(pair, config):
    resil.start(config)
    servers = {"a": pair.primary, "b": pair.replica}
    writers = start_writers("s")
    reports = []
    try:
        time.sleep(0.5)
        for i, to in enumerate(["b", "a"] * 5):
            before = writers.acked
            began = time.monotonic()
            out = switch(config, to)
            assert out.returncode == 0, out.stdout + out.stderr
            reports.append(out.stdout)
            time.sleep(0.3)
            assert writers.acked > before, f"switch {i + 1}: writes did not resume"
            assert not writers.errors, writers.errors[:3]
            assert max(writers.pauses_since(began)) < 1.0, (writers.pauses_since(began), out.stdout)
    finally:
        writers.stop()
    assert not writers.errors, writers.errors[:3]
    new, old = servers["a"], servers["b"]          # ten switches end where they began
    assert new.root_sql("SELECT @@read_only") == [(0,)]
    assert old.root_sql("SELECT @@read_only") == [(1,)]
    check_no_loss(pair, new, writers)
    # No write reached the old primary after its fence: it replicates cleanly and holds
    # exactly what the new primary holds.
    deadline = time.monotonic() + 10
    position = new.gtid_binlog_pos()
    while old.root_sql("SELECT @@gtid_slave_pos")[0][0] != position:
        assert time.monotonic() < deadline, old.slave_status()
        time.sleep(0.05)
    assert old.slave_status()["Slave_SQL_Running"] == "Yes"
    assert rows(old, "auto") == rows(new, "auto") and rows(old, "tx") == rows(new, "tx")
    assert writers.acked > 1000
    stats = counters.stats()
    assert stats.get("mysql_connections_moved", 0) >= 10 * 12, stats
    print(f"\nacked {writers.acked}, longest pause {writers.longest_pause() * 1000:.0f} ms, "
          f"stats {stats}\n" + reports[0])


def test_a_replica_that_cannot_catch_up_makes_the_switch_refuse_before_locking(pair, config):
    """A replica that cannot catch up (its SQL thread blocked): the switch refuses while
    converging — nothing locked, nothing fenced — and writes never pause."""
    resil.start(config)
    current = "a" if pair.primary.root_sql("SELECT @@read_only") == [(0,)] else "b"
    primary, replica = (pair.primary, pair.replica) if current == "a" else \
        (pair.replica, pair.primary)
    target = "b" if current == "a" else "a"
    writers = start_writers("r")
    with context.bypass():     # resil's routing would send this to the primary
        blocker = replica.connect(user="resil", password="resilpw", database="app")
    try:
        time.sleep(0.3)
        with blocker.cursor() as cur:    # the replica's SQL thread now waits on this lock
            cur.execute("LOCK TABLES auto READ")
        time.sleep(0.2)
        out = switch(config, target, "--converge-timeout", "1.5")
        assert out.returncode == 1, out.stdout
        assert "did not converge within 1.5 s" in out.stderr, out.stderr
        assert "nothing was locked or fenced" in out.stderr
        assert "converging:" in out.stdout                  # no silent seconds
        assert "lock" not in out.stdout and "rolling back" not in out.stdout
        before = writers.acked
        time.sleep(0.5)
        assert writers.acked > before
    finally:
        writers.stop()
        blocker.close()
        pair.wait_caught_up() if current == "a" else None
    assert not writers.errors, writers.errors[:3]
    assert primary.root_sql("SELECT @@read_only") == [(0,)]
    status = subprocess.run([RESIL, "status", "--config", str(config), "--json"],
                            capture_output=True, text=True, env={**os.environ, **ENV})
    assert '"locks": {}' in status.stdout
    check_no_loss(pair, primary, writers)


def test_precheck_failure_changes_nothing(pair, config):
    out = switch(config, "a" if pair.primary.root_sql("SELECT @@read_only") == [(1,)] else "b",
                 "--dry-run")
    assert out.returncode == 0 and "prechecks passed" in out.stdout
    out = switch(config, "c")                   # bad input: exit 2, as every command
    assert out.returncode == 2 and "no endpoint in unit 'c'" in out.stderr


def test_open_transaction_across_the_fence_gets_the_documented_error(pair, config):
    """A transaction still open when the drain gives up is interrupted, and says so."""
    resil.start(config)
    conn = connect()
    conn.begin()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO auto VALUES ('interrupted', 1)")
    out = switch(config, "b", "--drain-timeout", "0.3")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 open transaction(s) will be interrupted" in out.stdout
    with pytest.raises(resil.TransactionInterruptedError) as info, conn.cursor() as cur:
        cur.execute("INSERT INTO auto VALUES ('interrupted', 2)")
    assert info.value.resource == "orders-db" and "safe to retry" in str(info.value)
    assert not isinstance(info.value, pymysql.err.MySQLError)
    conn.rollback()                         # what the application does next: a no-op
    with conn.cursor() as cur:              # the same object now works on the new primary
        cur.execute("SELECT @@server_id, COUNT(*) FROM auto WHERE writer = 'interrupted'")
        assert cur.fetchone() == (2, 0)     # nothing of the transaction was committed
    assert switch(config, "a").returncode == 0


@pytest.mark.parametrize("first", [
    "SELECT seq FROM auto WHERE writer = 'implicit' FOR UPDATE",     # rows, no OK packet
    "INSERT INTO auto VALUES ('implicit', 1) RETURNING seq"])
def test_an_implicit_transaction_that_returned_rows_is_never_moved(pair, config, first):
    """autocommit(False) (how Django's atomic() and SQLAlchemy begin) and a first statement
    that returns rows: PyMySQL's status still says "no transaction", but one is open. It
    is counted in flight, and after the fence it is interrupted — never continued, half
    of it, on the new primary."""
    resil.start(config)
    conn = connect()
    conn.autocommit(False)
    with conn.cursor() as cur:
        cur.execute(first)
    assert registry.runtime().in_flight()["orders-db"] == 1
    out = switch(config, "b", "--drain-timeout", "0.3")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 open transaction(s) will be interrupted" in out.stdout
    with pytest.raises(resil.TransactionInterruptedError), conn.cursor() as cur:
        cur.execute("INSERT INTO auto VALUES ('implicit', 2)")
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("SELECT @@server_id, COUNT(*) FROM auto WHERE writer = 'implicit'")
        assert cur.fetchone() == (2, 0)     # nothing of it anywhere
    conn.commit()
    assert switch(config, "a").returncode == 0


def test_autocommit_off_after_a_switch_moves_the_idle_connection(pair, config):
    """A persistent connection idle across a switch, then autocommit(False): the fence cut
    it, and the setting is sent again on a connection to the new primary."""
    resil.start(config)
    conn = connect()
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
    assert switch(config, "b").returncode == 0
    try:
        conn.autocommit(False)
        with conn.cursor() as cur:
            cur.execute("INSERT INTO auto VALUES ('idle', 1)")
            cur.execute("SELECT @@server_id")
            assert cur.fetchone() == (2,)
        conn.commit()
    finally:
        assert switch(config, "a").returncode == 0


def test_write_held_beyond_lock_timeout_fails_unsent(pair, config, monkeypatch):
    """A lock that outlives lock_timeout: the write fails with LockTimeoutError, unsent;
    autocommit reads keep working meanwhile."""
    monkeypatch.setenv("RESIL_RESOURCES_ORDERS_DB_LOCK_TIMEOUT", "0.3")
    from resil.config import load_config
    from resil.control import open_control_plane
    from resil.state import ControlState, Lock
    agent = resil.start(config)
    cfg = load_config(config)
    plane = open_control_plane(cfg.control_url, cfg.topology, None)
    conn = connect()
    plane.publish(ControlState.initial(cfg.topology).evolve(
        locks={"orders-db": Lock("stuck-operator", time.time(), "test")}), issuer="test")
    deadline = time.monotonic() + 2
    while "orders-db" not in agent.state.locks:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM auto")            # reads run during the lock
        began = time.monotonic()
        with pytest.raises(resil.LockTimeoutError, match="stuck-operator"):
            cur.execute("INSERT INTO auto VALUES ('held', 1)")
        assert 0.3 <= time.monotonic() - began < 1.0
    plane.publish(ControlState.initial(cfg.topology).evolve(epoch=2), issuer="test")
    time.sleep(0.1)
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM auto WHERE writer = 'held'")
        assert cur.fetchone() == (0,)                        # it was never sent
        cur.execute("INSERT INTO auto VALUES ('held', 2)")   # and writes flow again


def test_moved_connection_is_the_same_object_with_its_session_restored(pair, config):
    resil.start(config)
    pair.primary.root_sql("CREATE DATABASE IF NOT EXISTS other; "
                          "GRANT ALL ON other.* TO 'app'@'127.0.0.1'")
    pair.wait_caught_up()
    conn = pymysql.connect(host="orders-db", user="app", password="apppw", database="app",
                           charset="latin1", autocommit=False, sql_mode="ANSI_QUOTES",
                           init_command="SET @resil_init = 42", read_timeout=10)
    conn.select_db("other")

    def session() -> tuple:
        with conn.cursor() as cur:
            cur.execute("SELECT @@server_id, DATABASE(), @@character_set_client, @@autocommit,"
                        " @@sql_mode, @resil_init")
            row = cur.fetchone()
        conn.commit()
        return row

    before = session()
    assert before[0] == 1
    assert switch(config, "b").returncode == 0
    after = session()                          # the same object, now on server 2
    assert after == (2, *before[1:]) == (2, "other", "latin1", 0, "ANSI_QUOTES", 42)
    assert switch(config, "a").returncode == 0
    assert session()[0] == 1


def in_database(server, database: str) -> int:
    """Client connections on ``server`` now whose current database is ``database``."""
    return server.root_sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                           f"WHERE DB = '{database}'")[0][0]


def test_spares_open_ahead_of_the_lock_and_follow_a_changed_session(pair, config):
    """The switch's intent opens a spare on the target for each open connection before
    the lock. A held statement takes its own connection's spare; a connection whose
    database changed since (``select_db``) gets a new spare with its session as it is
    now, never the stale one; the spare no statement took is closed at the publish."""
    resil.start(config)
    pair.primary.root_sql("CREATE DATABASE IF NOT EXISTS prep; CREATE DATABASE IF NOT EXISTS "
                          "prep2; GRANT ALL ON prep.* TO 'app'@'127.0.0.1'; GRANT ALL ON "
                          "prep2.* TO 'app'@'127.0.0.1'; CREATE TABLE IF NOT EXISTS "
                          "prep.held (n INT); CREATE TABLE IF NOT EXISTS prep2.held (n INT)")
    pair.wait_caught_up()
    same, changed, idle = (pymysql.connect(host="orders-db", user="app", password="apppw",
                                           database="prep", autocommit=True, read_timeout=10)
                           for _ in range(3))
    taken = counters.stats().get("mysql_spares_taken", 0)
    switching = subprocess.Popen([RESIL, "db", "switch", "orders-db", "--to", "b", "--config",
                                  str(config), "--pause-after", "lock:0.5"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env={**os.environ, **ENV})
    try:
        assert wait_until(lambda: "orders-db" in registry.runtime().state.locks
                          or switching.poll() is not None, 10)
        assert in_database(pair.replica, "prep") == 3   # open before anything was held
        changed.select_db("prep2")
        results: dict[int, tuple[int, str]] = {}

        def write(i: int, conn: pymysql.connections.Connection) -> None:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO held VALUES (8)")    # held, then moved
                cur.execute("SELECT @@server_id, DATABASE()")
                results[i] = cur.fetchone()
        threads = [threading.Thread(target=write, args=(i, c))
                   for i, c in enumerate((same, changed))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
    finally:
        out = switching.communicate(timeout=30)[0]
    assert switching.returncode == 0, out
    assert "1/1 agent(s) opened spare connections to b" in out, out
    assert results == {0: (2, "prep"), 1: (2, "prep2")}
    assert counters.stats().get("mysql_spares_taken", 0) == taken + 2
    assert pair.replica.root_sql("SELECT COUNT(*) FROM prep.held") == [(1,)]
    assert pair.replica.root_sql("SELECT COUNT(*) FROM prep2.held") == [(1,)]
    # same's and changed's connections are there; idle's spare and changed's stale
    # one were closed
    assert wait_until(lambda: (in_database(pair.replica, "prep"),
                               in_database(pair.replica, "prep2")) == (1, 1), 10)
    for conn in (same, changed, idle):
        conn.close()
    assert switch(config, "a").returncode == 0


def test_a_write_held_by_a_switch_takes_over_a_connection_made_during_the_lock(pair, config):
    """While the switch holds writes, the held statement's connection opens a spare to
    the target with its own session settings; at the publish it moves onto it (no
    connect then, when every held connection would connect at once), the same object
    with its session, and the write runs once, on the new primary."""
    resil.start(config)
    pair.primary.root_sql("CREATE DATABASE IF NOT EXISTS other; "
                          "GRANT ALL ON other.* TO 'app'@'127.0.0.1'; "
                          "CREATE TABLE IF NOT EXISTS other.held (n INT)")
    pair.wait_caught_up()
    conn = pymysql.connect(host="orders-db", user="app", password="apppw", database="app",
                           charset="latin1", autocommit=True, sql_mode="ANSI_QUOTES",
                           init_command="SET @resil_init = 42", read_timeout=10)
    conn.select_db("other")
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
    taken = counters.stats().get("mysql_spares_taken", 0)
    switching = subprocess.Popen([RESIL, "db", "switch", "orders-db", "--to", "b", "--config",
                                  str(config), "--pause-after", "drain:0.5",
                                  "--drain-timeout", "1"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env={**os.environ, **ENV})
    try:
        deadline = time.monotonic() + 10
        while "orders-db" not in registry.runtime().state.locks:
            if time.monotonic() > deadline or switching.poll() is not None:
                switching.kill()
                raise AssertionError(f"the switch never locked: {switching.communicate()[0]}")
            time.sleep(0.01)
        with conn.cursor() as cur:
            cur.execute("INSERT INTO held VALUES (7)")        # held, then moved
            cur.execute("SELECT @@server_id, DATABASE(), @@character_set_client, "
                        "@@autocommit, @@sql_mode, @resil_init")
            after = cur.fetchone()
    finally:
        out = switching.communicate(timeout=30)[0]
    assert switching.returncode == 0, out
    assert after == (2, "other", "latin1", 1, "ANSI_QUOTES", 42)
    assert counters.stats().get("mysql_spares_taken", 0) == taken + 1
    assert pair.replica.root_sql("SELECT n FROM other.held") == [(7,)]   # once, moved
    assert switch(config, "a").returncode == 0
