"""`resil db rejoin RESOURCE UNIT`: the pair made whole again after a failover.

MySQL: the failover is made by hand (the replica promoted, the old primary fenced, the
new primary published), then rejoined: without errant transactions it replicates (as a
semi-sync replica when the primary is a semi-sync primary) and gets what the new primary
took meanwhile; with writes the new primary never got (what a thawed primary commits)
it refuses, names them, and leaves the server fenced and alone.

Redis: `kill -9` of the primary under `resil monitor`, the old server restarted (empty,
and writable: the monitor fences it), then rejoined: it replicates the new primary's
data. A Redis server with writes the primary never got is refused unless
`--discard-errant`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from resil import context
from resil.config import load_config
from resil.control import open_control_plane
from resil.state import ControlState
from servers import MariaDBPair, RedisPair
from servers.config import PASSWORDS, resil_toml

pytestmark = pytest.mark.adversarial

BIN = Path(sys.executable).parent


def resil(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "resil"), *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **PASSWORDS})


def publish(config: Path, **primaries: str) -> None:
    cfg = load_config(config)
    plane = open_control_plane(cfg.control_url, cfg.topology, cfg.signing_key)
    stored = plane.load()
    state = stored.state if stored else ControlState.initial(cfg.topology)
    plane.publish(state.evolve(primaries={**state.primaries, **primaries}), issuer="test")


def start_monitor(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """`resil monitor`, quick to decide (0.2 s rounds, 2 failed probes); output in ``log``."""
    return subprocess.Popen(
        [str(BIN / "resil"), "monitor", "--config", str(config), "--interval", "0.2",
         "--failures", "2", "--timeout", "0.5", "--lease-ttl", "2"],
        stdout=open(log, "w"), stderr=subprocess.STDOUT)


def auto_rejoin_config(write_config, tmp_path: Path, pair: RedisPair) -> Path:
    """The Redis pair's configuration with ``auto_rejoin = true``."""
    text = resil_toml((tmp_path / "state.json").as_uri(), redis=pair)
    return write_config(text.replace('aliases = ["cache"]\n',
                                     'aliases = ["cache"]\nauto_rejoin = true\n'))


def fail_over_by_hand(pair: MariaDBPair, config: Path) -> None:
    """What `resil monitor` leaves: b promoted (a semi-sync primary if a was), a fenced
    and alone, b published."""
    pair.wait_caught_up()
    semi = pair.primary.root_sql("SELECT @@rpl_semi_sync_master_enabled")[0][0]
    pair.primary.root_sql("SET GLOBAL read_only = 1")
    pair.replica.root_sql("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0")
    if semi:
        pair.replica.root_sql("SET GLOBAL rpl_semi_sync_slave_enabled = OFF; "
                              "SET GLOBAL rpl_semi_sync_master_enabled = ON")
    publish(config, **{"orders-db": "b"})


@pytest.fixture
def mysql(tmp_path):
    with MariaDBPair(tmp_path / "mysql", semi_sync=True) as pair:
        pair.primary.root_sql("SET GLOBAL rpl_semi_sync_master_timeout = 2000;"
                              "CREATE TABLE app.r (id INT PRIMARY KEY)")
        pair.wait_caught_up()
        yield pair


@pytest.fixture
def mysql_config(mysql, write_config, tmp_path):
    return write_config(resil_toml((tmp_path / "state.json").as_uri(), mysql=mysql))


def test_mysql_rejoin_makes_the_old_primary_a_semi_sync_replica(mysql, mysql_config):
    mysql.primary.root_sql("INSERT INTO app.r VALUES (1), (2)")
    fail_over_by_hand(mysql, mysql_config)
    mysql.replica.root_sql("INSERT INTO app.r VALUES (3)")       # the new primary goes on
    out = resil("db", "rejoin", "orders-db", "a", "--config", str(mysql_config))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "rejoined orders-db" in out.stdout and "(semi-sync)" in out.stdout, out.stdout
    mysql.replica.root_sql("INSERT INTO app.r VALUES (4)")
    deadline = time.monotonic() + 10
    while len(mysql.primary.root_sql("SELECT id FROM app.r")) < 4:
        assert time.monotonic() < deadline, mysql.primary.root_sql("SHOW SLAVE STATUS")
        time.sleep(0.05)
    assert mysql.primary.root_sql("SELECT @@read_only") == [(1,)]
    clients = mysql.replica.root_sql("SHOW STATUS LIKE 'Rpl_semi_sync_master_clients'")
    assert int(clients[0][1]) == 1
    again = resil("db", "rejoin", "orders-db", "a", "--config", str(mysql_config))
    assert again.returncode == 0 and "already replicates" in again.stdout, again.stdout


def test_mysql_rejoin_refuses_errant_transactions_naming_them(mysql, mysql_config):
    fail_over_by_hand(mysql, mysql_config)
    # The old primary commits what it held when it thaws: three writes nobody else has.
    mysql.primary.root_sql("INSERT INTO app.r VALUES (10); INSERT INTO app.r VALUES (11); "
                           "INSERT INTO app.r VALUES (12)")
    server_id, last = mysql.primary.root_sql(
        "SELECT @@server_id, @@gtid_binlog_pos")[0]
    out = resil("db", "rejoin", "orders-db", "a", "--config", str(mysql_config))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "has writes the primary never got" in out.stderr, out.stderr
    assert "(3 transaction(s))" in out.stderr and f"..{last}" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert mysql.primary.root_sql("SHOW SLAVE STATUS") == []          # left alone
    assert mysql.primary.root_sql("SELECT @@read_only") == [(1,)]     # and fenced
    assert {r[0] for r in mysql.primary.root_sql("SELECT id FROM app.r")} == {10, 11, 12}


def test_rejoin_refuses_the_published_primary_and_unknown_units(mysql, mysql_config):
    out = resil("db", "rejoin", "orders-db", "a", "--config", str(mysql_config))
    assert out.returncode == 1 and "is the published primary" in out.stderr, out.stderr
    out = resil("db", "rejoin", "orders-db", "z", "--config", str(mysql_config))
    assert out.returncode == 2 and "no endpoint in unit 'z'" in out.stderr, out.stderr


# --------------------------------------------------------------------------- Redis

def test_redis_kill_9_failover_then_rejoin(write_config, tmp_path):
    with RedisPair(tmp_path / "redis") as pair:
        config = write_config(resil_toml((tmp_path / "state.json").as_uri(), redis=pair))
        with context.bypass():
            pair.primary.client().set("before", 1)
        pair.wait_caught_up()
        monitor = start_monitor(config, tmp_path / "monitor.log")
        try:
            time.sleep(1.0)
            pair.primary.kill()
            deadline = time.monotonic() + 10
            while "new primary" not in (tmp_path / "monitor.log").read_text():
                assert time.monotonic() < deadline, (tmp_path / "monitor.log").read_text()
                time.sleep(0.1)
            with context.bypass():
                pair.replica.client().set("after", 2)
            pair.primary.start()                # empty (no persistence), a master
            time.sleep(1.0)                     # the monitor fences it as it comes back
        finally:
            monitor.send_signal(signal.SIGTERM)
            monitor.wait(10)
        assert "auto_rejoin" not in (tmp_path / "monitor.log").read_text()  # off: default
        out = resil("db", "rejoin", "cache", "a", "--config", str(config))
        assert out.returncode == 0, out.stdout + out.stderr + \
            (tmp_path / "monitor.log").read_text()
        assert "already replicates" not in out.stdout, out.stdout
        with context.bypass():
            old = pair.primary.client()
            deadline = time.monotonic() + 10
            while old.get("after") != "2":
                assert time.monotonic() < deadline, (out.stdout, old.info("replication"))
                time.sleep(0.05)
            assert old.info("replication")["role"] == "slave"
            assert old.get("before") == "1"


def test_redis_rejoin_refuses_writes_the_primary_never_got(write_config, tmp_path):
    with RedisPair(tmp_path / "redis") as pair:
        config = write_config(resil_toml((tmp_path / "state.json").as_uri(), redis=pair))
        with context.bypass():
            old, new = pair.primary.client(), pair.replica.client()
            old.set("shared", 1)
            pair.wait_caught_up()
            new.execute_command("REPLICAOF", "NO", "ONE")     # promoted
            old.set("only-here", 1)                             # a write it never got
        publish(config, cache="b")
        out = resil("db", "rejoin", "cache", "a", "--config", str(config))
        assert out.returncode == 1, out.stdout + out.stderr
        assert "byte(s) of writes after the primary took over" in out.stderr, out.stderr
        assert "--discard-errant" in out.stderr
        with context.bypass():
            assert old.info("replication")["role"] == "master" and old.get("only-here")
        out = resil("db", "rejoin", "cache", "a", "--config", str(config),
                    "--discard-errant")
        assert out.returncode == 0 and "discarding, as asked" in out.stdout, out.stdout
        with context.bypass():
            deadline = time.monotonic() + 10
            while old.get("only-here") is not None:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert old.get("shared") == "1"


def test_auto_rejoin_makes_a_restarted_old_primary_a_replica(write_config, tmp_path):
    """`auto_rejoin = true`: after `kill -9` and a failover, the old Redis primary is
    restarted (empty, and writable); the acting monitor fences it, then rejoins it as a
    replica of the new primary by itself."""
    with RedisPair(tmp_path / "redis") as pair:
        config = auto_rejoin_config(write_config, tmp_path, pair)
        with context.bypass():
            pair.primary.client().set("before", 1)
        pair.wait_caught_up()
        log = tmp_path / "monitor.log"
        monitor = start_monitor(config, log)
        try:
            time.sleep(1.0)
            pair.primary.kill()
            deadline = time.monotonic() + 10
            while "new primary" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            with context.bypass():
                pair.replica.client().set("after", 2)
                pair.primary.start()            # empty (no persistence), a master
                old = pair.primary.client()
                deadline = time.monotonic() + 10

                def rejoined() -> bool:
                    try:
                        return old.get("after") == "2"
                    except redis.ConnectionError:   # the monitor's fence cut this poll
                        return False
                while not rejoined():
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.05)
                assert old.info("replication")["role"] == "slave"
                assert old.get("before") == "1"
            while "rejoined cache" not in log.read_text():  # its last word, said after
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        finally:
            monitor.send_signal(signal.SIGTERM)
            monitor.wait(10)
        text = log.read_text()
        assert "came back writable" in text and "rejoining it (auto_rejoin)" in text, text
        assert "rejoined cache" in text, text


def test_auto_rejoin_refuses_writes_the_primary_never_got_and_says_so(write_config,
                                                                       tmp_path):
    """`auto_rejoin` never discards data: an old Redis primary with a write the new
    primary never got is fenced, not rejoined, and the monitor says why (once)."""
    with RedisPair(tmp_path / "redis") as pair:
        config = auto_rejoin_config(write_config, tmp_path, pair)
        with context.bypass():
            old, new = pair.primary.client(), pair.replica.client()
            old.set("shared", 1)
            pair.wait_caught_up()
            new.execute_command("REPLICAOF", "NO", "ONE")     # promoted
            old.set("only-here", 1)                             # a write it never got
        publish(config, cache="b")
        log = tmp_path / "monitor.log"
        monitor = start_monitor(config, log)
        try:
            deadline = time.monotonic() + 10
            while "refused" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            time.sleep(1.0)                     # more rounds: not tried again at once
        finally:
            monitor.send_signal(signal.SIGTERM)
            monitor.wait(10)
        text = log.read_text()
        assert "auto_rejoin of 127.0.0.1:" in text and "writes after the primary took " \
            "over" in text, text
        assert text.count("rejoining it (auto_rejoin)") == 1, text
        with context.bypass():
            assert old.info("replication")["role"] == "master"
            assert old.get("only-here") == "1"
            with pytest.raises(redis.ResponseError, match="NOREPLICAS"):
                old.set("x", 1)                             # and it stays fenced
