"""Tests of the server harness: the behaviour the rest of the suite relies on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pymysql
import pytest
import redis

from servers import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    APP_PASSWORD,
    APP_USER,
    MariaDB,
    MariaDBPair,
    Redis,
    RedisPair,
    ports,
)

# MariaDB error codes the tests expect.
ER_DBACCESS_DENIED = 1044
ER_OPTION_PREVENTS_STATEMENT = 1290  # "running with the --read-only option"


def pid_gone(pid: int) -> bool:
    """Tell whether no process (not even a zombie) has this PID any more."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def create_table(pair: MariaDBPair, database: str) -> None:
    """Create ``t(id, v)`` in ``database`` on the primary and wait for the replica."""
    with pair.primary.connect(database=database, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(50))")
    pair.wait_caught_up()


def app_insert(server: MariaDB, database: str, row_id: int) -> None:
    """INSERT one row as the app user."""
    with server.connect(database=database, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (%s, 'x')", (row_id,))


# ---------------------------------------------------------------- MariaDB pair


def test_write_on_primary_is_visible_on_replica(mariadb_pair: MariaDBPair, mysql_db: str) -> None:
    create_table(mariadb_pair, mysql_db)
    app_insert(mariadb_pair.primary, mysql_db, 1)
    mariadb_pair.wait_caught_up()
    with mariadb_pair.replica.connect(database=mysql_db) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM t")
        assert cur.fetchall() == ((1,),)


def test_replica_refuses_app_write(mariadb_pair: MariaDBPair, mysql_db: str) -> None:
    create_table(mariadb_pair, mysql_db)
    with pytest.raises(pymysql.err.OperationalError) as error:
        app_insert(mariadb_pair.replica, mysql_db, 1)
    assert error.value.args[0] == ER_OPTION_PREVENTS_STATEMENT


def test_read_only_primary_stops_app_but_not_admin(
    mariadb_pair: MariaDBPair, mysql_db: str
) -> None:
    create_table(mariadb_pair, mysql_db)
    primary = mariadb_pair.primary
    primary.root_sql("SET GLOBAL read_only=1")
    try:
        with pytest.raises(pymysql.err.OperationalError) as error:
            app_insert(primary, mysql_db, 1)
        assert error.value.args[0] == ER_OPTION_PREVENTS_STATEMENT
        # Why fencing needs more than read_only: the admin account writes anyway.
        admin = primary.connect(ADMIN_USER, ADMIN_PASSWORD, mysql_db, autocommit=True)
        with admin, admin.cursor() as cur:
            cur.execute("INSERT INTO t VALUES (2, 'admin')")
    finally:
        primary.root_sql("SET GLOBAL read_only=0")
    app_insert(primary, mysql_db, 3)


def test_accounts_exist_on_both_servers(mariadb_pair: MariaDBPair) -> None:
    for server in (mariadb_pair.primary, mariadb_pair.replica):
        for user, password in ((ADMIN_USER, ADMIN_PASSWORD), (APP_USER, APP_PASSWORD)):
            with server.connect(user, password) as conn, conn.cursor() as cur:
                cur.execute("SELECT CURRENT_USER()")
                assert cur.fetchone() == (f"{user}@127.0.0.1",)


def test_app_grants_are_narrow(mariadb_pair: MariaDBPair) -> None:
    with mariadb_pair.primary.connect() as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError) as error:
            cur.execute("CREATE DATABASE not_allowed")
        assert error.value.args[0] == ER_DBACCESS_DENIED


def test_mysql_db_is_empty_and_on_both_servers(mariadb_pair: MariaDBPair, mysql_db: str) -> None:
    for server in (mariadb_pair.primary, mariadb_pair.replica):
        with server.connect(database=mysql_db) as conn, conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            assert cur.fetchall() == ()


def test_semi_sync_pair_acknowledges_commits(tmp_path: Path) -> None:
    with MariaDBPair(tmp_path, semi_sync=True) as pair:
        app_insert_sql = "CREATE TABLE app.t (id INT PRIMARY KEY); INSERT INTO app.t VALUES (1)"
        pair.primary.root_sql(app_insert_sql)
        status = dict(pair.primary.root_sql("SHOW STATUS LIKE 'Rpl_semi_sync_master_%'"))
        assert status["Rpl_semi_sync_master_status"] == "ON"
        assert int(status["Rpl_semi_sync_master_yes_tx"]) >= 2
        assert int(status["Rpl_semi_sync_master_no_tx"]) == 0
    assert not (tmp_path / "primary").exists()
    assert not (tmp_path / "replica").exists()


# ---------------------------------------------------------------- one MariaDB


def test_mariadb_kill_and_start_keep_port_and_data(tmp_path: Path) -> None:
    server = MariaDB(tmp_path, "solo", server_id=9)
    try:
        server.start()
        port, crashed_pid = server.port, server.pid
        assert crashed_pid is not None
        server.root_sql(
            "CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY); INSERT INTO d.t VALUES (1)"
        )
        server.kill()
        assert server.pid is None and pid_gone(crashed_pid)

        server.start()
        assert server.port == port
        assert server.root_sql("SELECT id FROM d.t") == [(1,)]

        stopped_pid = server.pid
        assert stopped_pid is not None
        server.freeze()  # stop() must also end a frozen server
        server.stop()
        assert server.pid is None and pid_gone(stopped_pid)
        server.stop()
    finally:
        server.destroy()
    assert not server.dir.exists()


def test_long_base_dir_gets_a_short_socket_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    server = MariaDB(deep, "solo", server_id=9)
    try:
        assert len(str(server.socket_path)) <= 100
    finally:
        server.destroy()
    assert not server.socket_path.parent.exists()


# ---------------------------------------------------------------- Redis


def test_redis_replica_sees_set_and_refuses_writes(redis_pair: RedisPair) -> None:
    key = f"k-{uuid.uuid4().hex}"
    redis_pair.primary.client().set(key, "written-on-primary")
    redis_pair.wait_caught_up()
    replica = redis_pair.replica.client()
    assert replica.get(key) == "written-on-primary"
    with pytest.raises(redis.exceptions.ReadOnlyError):
        replica.set(key, "x")


def test_redis_stop_ends_process_and_is_idempotent(tmp_path: Path) -> None:
    server = Redis(tmp_path, "solo")
    try:
        server.start()
        pid = server.pid
        assert pid is not None
        server.freeze()  # stop() must also end a frozen server
        server.stop()
        assert server.pid is None and pid_gone(pid)
        server.stop()
    finally:
        server.destroy()
    assert not server.dir.exists()


def test_taken_port_is_replaced_once(tmp_path: Path) -> None:
    server = Redis(tmp_path, "solo")
    taken = server.port
    try:
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", taken))
            squatter.listen()
            server.start()
        assert server.port != taken
        assert server.client().ping()
    finally:
        server.destroy()


def test_fixed_port_taken_is_an_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = Redis(tmp_path, "solo", port=squatter.getsockname()[1])
        try:
            with pytest.raises(RuntimeError, match="was taken"):
                server.start()
        finally:
            server.destroy()


# ---------------------------------------------------------------- plumbing


def test_missing_binary_says_to_run_make_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(ports, "_EXTRA_BIN_DIRS", ())
    for server in (MariaDB(tmp_path, "m", server_id=1), Redis(tmp_path, "r")):
        try:
            with pytest.raises(RuntimeError, match="make test"):
                server.start()
        finally:
            server.destroy()


_ORPHAN = textwrap.dedent(
    """
    import pathlib, sys, time
    from servers import Redis
    from servers.ports import stop_servers_on_sigterm

    stop_servers_on_sigterm()
    server = Redis(pathlib.Path(sys.argv[1]), "orphan")
    server.start()
    print(server.pid, flush=True)
    if sys.argv[2] == "sigterm":
        time.sleep(60)
    """
)


@pytest.mark.parametrize("ending", ["exit", "sigterm"])
def test_servers_die_with_the_test_process(tmp_path: Path, ending: str) -> None:
    tests_dir = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(tests_dir)}
    child = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN, str(tmp_path), ending],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert child.stdout is not None
    pid = int(child.stdout.readline())
    if ending == "sigterm":
        child.send_signal(signal.SIGTERM)
    child.communicate(timeout=15)
    assert pid_gone(pid)
    assert not (tmp_path / "orphan").exists()


def test_forked_child_leaves_parent_servers_alone(tmp_path: Path) -> None:
    server = Redis(tmp_path, "solo")
    try:
        server.start()
        child = os.fork()
        if child == 0:  # the child's exit runs the same atexit hook
            ports.destroy_all()
            os._exit(0)
        os.waitpid(child, 0)
        assert server.pid is not None
        assert server.client().ping()
    finally:
        server.destroy()
