"""Same-unit reads through an unplanned failover: the primary (unit a) is killed while
the process in unit b reads from its own replica, and `resil monitor` promotes that
replica. Reads never fail: they stay local while the replica's lag bound allows, are
then held with the connects to the dead primary, and end on the new primary, which is
the own unit's server. Every write acknowledged before the kill is read back.
"""

from __future__ import annotations

import signal
import time

import pymysql
import pytest

import resil

# The semi-synchronous pair of the failover tests (each test breaks its own).
from functional.test_failover_mysql import ENV, start_monitor
from functional.test_failover_mysql import pair as pair  # noqa: F401 (a fixture)
from functional.writers import Tally, Writers
from resil import counters
from resil.integrations import _pymysql_reads
from servers.config import resil_toml

pytestmark = pytest.mark.adversarial
TIMEOUT = 2.0


@pytest.fixture
def config(pair, write_config, tmp_path, monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    text = resil_toml((tmp_path / "state.json").as_uri(), mysql=pair)
    yield write_config(text.replace('unit = "a"', 'unit = "b"', 1).replace(
        "[resources.orders-db]\n",
        '[resources.orders-db]\nreads = "local"\nmax_lag = 1.0\nread_wait = 0.5\n', 1))
    _pymysql_reads.stop_watches()


def connect():
    return pymysql.connect(host="orders-db", user="app", password="apppw", database="app",
                           autocommit=True, connect_timeout=TIMEOUT, read_timeout=TIMEOUT,
                           write_timeout=TIMEOUT)


def test_reads_survive_a_kill_9_of_the_remote_primary(pair, config, tmp_path):
    resil.start(config)
    monitor = start_monitor(config, tmp_path)
    readers, writers = Writers(rate=100), Writers(rate=50)
    for i in range(6):
        def read(tally: Tally, seq: int, conn) -> None:
            with conn.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM w")
                cur.fetchall()
            tally.acked.append(seq)
        readers.add(f"r{i}", read, setup=connect)
    for i in range(2):
        def write_then_read(tally: Tally, seq: int, box: list) -> None:
            if box[0] is None:
                box[0] = connect()
            try:
                with box[0].cursor() as cur:
                    cur.execute("INSERT INTO w VALUES (%s, %s)", (tally.name, seq))
                    tally.acked.append(seq)
                    cur.execute("SELECT seq FROM w WHERE writer = %s AND seq = %s",
                                (tally.name, seq))
                    if cur.fetchall() != ((seq,),):
                        raise AssertionError(f"{tally.name} did not read back {seq}")
            except pymysql.err.MySQLError:
                box[0] = None       # what a pool does with a broken connection
                raise
        writers.add(f"w{i}", write_then_read, setup=lambda: [None])
    readers.start()
    writers.start()
    try:
        time.sleep(2.0)                 # the monitor holds its lease; reads are local
        local_before = counters.stats().get("db_reads:orders-db:b:local", 0)
        assert local_before > 50, counters.stats()
        killed = time.monotonic()
        pair.primary.kill()
        time.sleep(6.0)
        before = readers.acked
        time.sleep(1.0)
        assert readers.acked > before, "reads did not resume"
    finally:
        readers.stop()
        writers.stop()
        monitor.send_signal(signal.SIGTERM)
        monitor.wait(10)
    log = (tmp_path / "monitor.log").read_text()
    assert "FAILOVER from" in log, log
    assert readers.errors == [], readers.errors[:3]
    # Writers: only statements in flight at the kill may fail; none read back stale.
    assert not [e for e in writers.errors if "did not read back" in e], writers.errors[:3]
    stats = counters.stats()
    assert stats.get("db_reads:orders-db:b:primary", 0) > 0     # the new primary: unit b
    longest = readers.longest_pause()
    print(f"\nkill -9 of the remote primary: {readers.acked} reads, 0 failed, longest "
          f"read {longest:.2f} s; writers {len(writers.errors)} errors; local before "
          f"{local_before}, outcomes "
          f"{ {k: v for k, v in stats.items() if k.startswith('db_reads')} }; killed at "
          f"{killed:.1f}")
