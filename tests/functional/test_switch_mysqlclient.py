"""mysqlclient (``MySQLdb``) under resil: routed, and moved through `resil db switch` while
threads write, with no error and no lost write.

The writers: 6 threads of autocommit INSERTs and 3 of transactions (``autocommit(False)``,
two INSERTs, ``commit()``, as Django's ``atomic()`` sends them) on long-lived
connections, and 3 that open a new connection per write and close it (Django's default,
``CONN_MAX_AGE = 0``). All connect to "orders-db", an alias only resil resolves.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import MySQLdb
import pytest

import resil
from functional.writers import Tally, Writers
from resil import counters
from servers import MariaDBPair
from servers.config import PASSWORDS, resil_toml

RESIL = str(Path(sys.executable).parent / "resil")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with MariaDBPair(tmp_path_factory.mktemp("switch-mysqlclient")) as pair:
        pair.primary.root_sql(
            "CREATE TABLE app.auto (writer VARCHAR(16), seq INT, PRIMARY KEY (writer, seq));"
            "CREATE TABLE app.tx (writer VARCHAR(16), seq INT, part INT,"
            " PRIMARY KEY (writer, seq, part))")
        pair.wait_caught_up()
        yield pair


@pytest.fixture
def config(pair, write_config, tmp_path, monkeypatch):
    for key, value in PASSWORDS.items():
        monkeypatch.setenv(key, value)
    return write_config(resil_toml((tmp_path / "state.json").as_uri(), mysql=pair))


def switch(config: Path, to: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RESIL, "db", "switch", "orders-db", "--to", to, "--config",
                           str(config), *extra], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **PASSWORDS})


def connect(**kw) -> MySQLdb.connections.Connection:
    return MySQLdb.connect(host="orders-db", user="app", password="apppw", database="app",
                           connect_timeout=5, **kw)


def server_id(conn) -> int:
    cur = conn.cursor()
    cur.execute("SELECT @@server_id")
    return int(cur.fetchone()[0])


def start_writers() -> Writers:
    writers = Writers()
    for i in range(6):
        def auto(tally: Tally, seq: int, conn) -> None:
            conn.cursor().execute("INSERT INTO auto VALUES (%s, %s)", (tally.name, seq))
            tally.acked.append(("auto", tally.name, seq))
        writers.add(f"auto{i}", auto, setup=lambda: connect(autocommit=True))
    for i in range(3):
        def tx(tally: Tally, seq: int, conn) -> None:
            conn.autocommit(False)
            cur = conn.cursor()
            cur.execute("INSERT INTO tx VALUES (%s, %s, 1)", (tally.name, seq))
            cur.execute("INSERT INTO tx VALUES (%s, %s, 2)", (tally.name, seq))
            conn.commit()
            conn.autocommit(True)
            tally.acked.append(("tx", tally.name, seq))
        writers.add(f"tx{i}", tx, setup=lambda: connect(autocommit=True))
    for i in range(3):
        def fresh(tally: Tally, seq: int) -> None:
            conn = connect(autocommit=True)
            try:
                conn.cursor().execute("INSERT INTO auto VALUES (%s, %s)", (tally.name, seq))
            finally:
                conn.close()
            tally.acked.append(("auto", tally.name, seq))
        writers.add(f"fresh{i}", fresh)
    writers.start()
    return writers


def rows(server, table: str) -> set[tuple]:
    return set(server.root_sql(f"SELECT * FROM app.{table}"))


def test_a_connection_to_the_alias_lands_on_the_primary(pair, config):
    resil.start(config)
    conn = connect(autocommit=True)
    assert server_id(conn) == 1
    conn.cursor().execute("INSERT INTO auto VALUES ('routed', 1)")
    assert ("routed", 1) in rows(pair.primary, "auto")


def test_switches_under_load_lose_nothing_and_fail_nothing(pair, config):
    resil.start(config)
    writers = start_writers()
    try:
        time.sleep(0.5)
        for i, to in enumerate(["b", "a"] * 3):
            before, began = writers.acked, time.monotonic()
            out = switch(config, to)
            assert out.returncode == 0, out.stdout + out.stderr
            time.sleep(0.3)
            assert writers.acked > before, f"switch {i + 1}: writes did not resume"
            assert not writers.errors, writers.errors[:3]
            assert max(writers.pauses_since(began)) < 1.0, out.stdout
    finally:
        writers.stop()
    assert not writers.errors, writers.errors[:3]
    new = pair.primary                      # six switches end where they began
    auto, tx = rows(new, "auto"), rows(new, "tx")
    missing = [a for a in (t for tally in writers.tallies for t in tally.acked)
               if (a[0] == "auto" and (a[1], a[2]) not in auto)
               or (a[0] == "tx" and {(a[1], a[2], 1), (a[1], a[2], 2)} - tx)]
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
    assert writers.acked > 300
    # The long-lived connections moved (the same objects); the fresh ones were routed.
    stats = counters.stats()
    assert stats.get("mysql_connections_moved", 0) >= 6 * 9
    print(f"\nmysqlclient, 6 switches: acked {writers.acked}, longest pause "
          f"{writers.longest_pause() * 1000:.0f} ms, moved {stats['mysql_connections_moved']}, "
          f"held {stats.get('held_writes', 0)}, 0 errors, 0 lost")


def test_a_moved_connection_is_the_same_object_with_its_autocommit_mode(pair, config):
    resil.start(config)
    auto_on, auto_off = connect(autocommit=True), connect()
    assert server_id(auto_on) == server_id(auto_off) == 1
    auto_off.commit()                       # nothing open: free to move
    assert switch(config, "b").returncode == 0
    try:
        assert server_id(auto_on) == 2 and auto_on.get_autocommit()
        assert server_id(auto_off) == 2 and not auto_off.get_autocommit()
    finally:
        assert switch(config, "a").returncode == 0


def test_an_open_transaction_across_the_fence_gets_the_documented_error(pair, config):
    resil.start(config)
    conn = connect()
    conn.cursor().execute("INSERT INTO auto VALUES ('interrupted', 1)")
    out = switch(config, "b", "--drain-timeout", "0.3")
    try:
        assert out.returncode == 0, out.stdout + out.stderr
        assert "1 open transaction(s) will be interrupted" in out.stdout
        with pytest.raises(resil.TransactionInterruptedError) as info:
            conn.cursor().execute("INSERT INTO auto VALUES ('interrupted', 2)")
        assert info.value.resource == "orders-db"
        assert not isinstance(info.value, MySQLdb.MySQLError)
        conn.rollback()
        cur = conn.cursor()                 # the same object works on the new primary
        cur.execute("SELECT @@server_id, COUNT(*) FROM auto WHERE writer = 'interrupted'")
        assert cur.fetchone() == (2, 0)     # nothing of the transaction was committed
    finally:
        assert switch(config, "a").returncode == 0


def test_a_unix_socket_connection_is_left_alone(pair, config):
    resil.start(config)
    conn = MySQLdb.connect(unix_socket=str(pair.replica.socket_path), user="root")
    assert server_id(conn) == 2             # local by definition: where it was asked
