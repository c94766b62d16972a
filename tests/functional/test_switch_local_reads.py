"""Same-unit reads through planned switches and a killed replica: every write is read
back by the connection that made it, no read or write fails, and reads are served by the
own unit's replica whenever it is one.

The process runs in unit b. Writers insert a row and read it back at once on the same
connection (read-your-writes), through autocommit statements and through commit().
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pymysql
import pytest

import resil
from functional.writers import Tally, Writers
from resil import counters
from resil.integrations import _pymysql_reads
from servers import MariaDBPair
from servers.config import PASSWORDS, resil_toml
from servers.ports import wait_until

RESIL = str(Path(sys.executable).parent / "resil")
pytestmark = pytest.mark.adversarial


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with MariaDBPair(tmp_path_factory.mktemp("local-reads")) as pair:
        pair.primary.root_sql("CREATE TABLE app.written (writer VARCHAR(16), seq INT, "
                              "PRIMARY KEY (writer, seq))")
        pair.wait_caught_up()
        yield pair


@pytest.fixture
def config(pair, write_config, tmp_path, monkeypatch):
    for key, value in PASSWORDS.items():
        monkeypatch.setenv(key, value)
    text = resil_toml((tmp_path / "state.json").as_uri(), mysql=pair,
                      control="poll_interval = 0.02")
    text = text.replace('unit = "a"', 'unit = "b"', 1).replace(
        "[resources.orders-db]\n",
        '[resources.orders-db]\nreads = "local"\nmax_lag = 1.0\nread_wait = 0.5\n', 1)
    yield write_config(text)
    _pymysql_reads.stop_watches()


def connect() -> pymysql.connections.Connection:
    return pymysql.connect(host="orders-db", user="app", password="apppw", database="app",
                           autocommit=True, connect_timeout=5, read_timeout=10)


def start_writers(prefix: str) -> Writers:
    writers = Writers(rate=200)
    for i in range(6):
        def write_then_read(tally: Tally, seq: int, conn) -> None:
            with conn.cursor() as cur:
                if seq % 4 == 0:
                    conn.begin()
                    cur.execute("INSERT INTO written VALUES (%s, %s)", (tally.name, seq))
                    conn.commit()
                else:
                    cur.execute("INSERT INTO written VALUES (%s, %s)", (tally.name, seq))
                tally.acked.append((tally.name, seq))
                cur.execute("SELECT seq FROM written WHERE writer = %s AND seq = %s",
                            (tally.name, seq))
                if cur.fetchall() != ((seq,),):
                    raise AssertionError(f"{tally.name} did not read back its write {seq}")
        writers.add(f"{prefix}w{i}", write_then_read, setup=connect)
    writers.start()
    return writers


def switch(config: Path, to: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RESIL, "db", "switch", "orders-db", "--to", to, "--config",
                           str(config)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **PASSWORDS})


def local_reads() -> int:
    return int(counters.stats().get("db_reads:orders-db:b:local", 0))


def test_read_your_writes_and_local_reads_hold_through_planned_switches(pair, config):
    resil.start(config)
    writers = start_writers("s")
    try:
        assert wait_until(lambda: local_reads() > 50, timeout=10), (
            counters.stats(), writers.errors[:3], writers.acked)
        for to in ("b", "a", "b", "a"):
            out = switch(config, to)
            assert out.returncode == 0, out.stdout + out.stderr
            before_acked, before_local = writers.acked, local_reads()
            time.sleep(1.0)
            assert writers.acked > before_acked, f"writes did not resume after --to {to}"
            if to == "a":       # the replica is in unit b again: reads go there
                assert wait_until(lambda mark=before_local: local_reads() > mark + 20,
                                  timeout=10), counters.stats()
            assert not writers.errors, writers.errors[:3]
    finally:
        writers.stop()
    assert not writers.errors, writers.errors[:3]
    stats = counters.stats()
    assert stats.get("db_reads:orders-db:b:primary", 0) > 0      # while b held the primary
    missing = {a for t in writers.tallies for a in t.acked} - set(
        pair.primary.root_sql("SELECT writer, seq FROM app.written"))
    assert not missing, sorted(missing)[:5]


def test_a_killed_replica_fails_no_read_and_is_read_from_again_once_back(pair, config):
    if pair.primary.root_sql("SELECT @@read_only") != [(0,)]:
        pytest.skip("the pair was left switched")
    resil.start(config)
    writers = start_writers("k")
    try:
        assert wait_until(lambda: local_reads() > 50, timeout=10), (
            counters.stats(), writers.errors[:3], writers.acked)
        pair.replica.kill()
        time.sleep(2.0)
        before = writers.acked
        time.sleep(0.5)
        assert writers.acked > before           # reads (and writes) go on, on the primary
        pair.replica.start()
        pair.wait_caught_up(timeout=30)
        mark = local_reads()
        assert wait_until(lambda: local_reads() > mark + 20, timeout=15), counters.stats()
    finally:
        writers.stop()
    assert not writers.errors, writers.errors[:3]
    assert counters.stats().get("db_reads:orders-db:b:fallback_lag", 0) \
        + counters.stats().get("db_reads:orders-db:b:fallback_error", 0) > 0


def test_reads_stay_local_while_a_frozen_primary_is_within_max_lag(pair, config):
    """A primary that stops answering (SIGSTOP) does not stop reads: the replica had
    everything it had, so it serves them while the last sample is younger than
    max_lag; then they go to the primary (here: held until it thaws)."""
    if pair.primary.root_sql("SELECT @@read_only") != [(0,)]:
        pytest.skip("the pair was left switched")
    config.write_text(config.read_text().replace("max_lag = 1.0", "max_lag = 3.0"))
    resil.start(config)
    conn = connect()
    assert wait_until(lambda: _where(conn) and local_reads() > 3, timeout=10)
    pair.primary.freeze()
    try:
        began, mark, errors = time.monotonic(), local_reads(), []
        while time.monotonic() - began < 1.5:
            try:
                _where(conn)
            except Exception as exc:     # pragma: no cover - asserted below
                errors.append(repr(exc))
            time.sleep(0.01)
        served = local_reads() - mark
    finally:
        pair.primary.thaw()
    assert errors == []
    assert served > 50, counters.stats()        # every read of the freeze, locally


def _where(conn) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM written")
        cur.fetchall()
    return True


# --------------------------------------------------------------------------- Redis

@pytest.fixture(scope="module")
def redis_pair_local(tmp_path_factory):
    from servers import RedisPair
    with RedisPair(tmp_path_factory.mktemp("local-reads-redis")) as pair:
        yield pair


def test_redis_read_your_writes_and_local_reads_hold_through_planned_switches(
        redis_pair_local, write_config, tmp_path):
    import redis

    from resil import context
    from resil.integrations import _redis_reads
    pair = redis_pair_local
    text = resil_toml((tmp_path / "state.json").as_uri(), redis=pair,
                      control="poll_interval = 0.02")
    config = write_config(text.replace('unit = "a"', 'unit = "b"', 1).replace(
        "[resources.cache]\n", '[resources.cache]\nreads = "local"\n', 1))
    resil.start(config)
    writers = Writers(rate=200)
    for i in range(4):
        client = redis.Redis(host="cache", socket_timeout=10, decode_responses=True)

        def incr_then_read(tally: Tally, seq: int, client=client) -> None:
            value = client.incr(f"local:{tally.name}")
            tally.acked.append(value)
            if int(client.get(f"local:{tally.name}")) != value:
                raise AssertionError(f"{tally.name} did not read back {value}")
        writers.add(f"w{i}", incr_then_read)
    reader = redis.Redis(host="cache", socket_timeout=10, decode_responses=True)

    def read_only(tally: Tally, seq: int) -> None:
        reader.get("local:w0")
    writers.add("r", read_only)
    writers.start()

    def local() -> int:
        return int(counters.stats().get("db_reads:cache:b:local", 0))
    try:
        assert wait_until(lambda: local() > 50, timeout=10), counters.stats()
        for to in ("b", "a", "b", "a"):
            out = subprocess.run([RESIL, "db", "switch", "cache", "--to", to, "--config",
                                  str(config)], capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stdout + out.stderr
            mark = local()
            time.sleep(1.0)
            if to == "a":
                assert wait_until(lambda mark=mark: local() > mark + 20, timeout=10), \
                    counters.stats()
            assert not writers.errors, writers.errors[:3]
    finally:
        writers.stop()
        _redis_reads.stop_watches()
    assert not writers.errors, writers.errors[:3]
    assert counters.stats().get("db_reads:cache:b:primary", 0) > 0
    with context.bypass():
        primary = pair.primary.client()
        for tally in writers.tallies:
            if tally.acked:         # every acknowledged INCR counted once
                assert tally.acked == list(range(1, len(tally.acked) + 1))
                assert int(primary.get(f"local:{tally.name}")) == tally.acked[-1]
