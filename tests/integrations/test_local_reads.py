"""Same-unit reads (``reads = "local"``) with PyMySQL, against a real MariaDB GTID pair.

The process runs in unit b, whose endpoint is the pair's replica; the primary is in
unit a. A table ``origin`` holds one row that differs between the servers (written
with the binary log off), so a read says which server answered it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
import pytest

import resil
from resil import context, counters
from resil.integrations import _pymysql_reads
from servers.config import resil_toml
from servers.ports import wait_until


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    return wait_until(condition, timeout, interval=0.02)


@pytest.fixture
def configure(write_config, mariadb_pair, tmp_path) -> Callable[..., Path]:
    """A resil.toml for unit b with ``reads = "local"`` on orders-db."""
    def make(max_lag: float = 0.5, read_wait: float = 0.2,
             read_your_writes: str = "connection") -> Path:
        text = resil_toml((tmp_path / "state.json").as_uri(), mysql=mariadb_pair,
                          control="poll_interval = 0.02")
        text = text.replace('unit = "a"', 'unit = "b"', 1).replace(
            "[resources.orders-db]\n",
            f'[resources.orders-db]\nreads = "local"\nmax_lag = {max_lag}\n'
            f'read_wait = {read_wait}\nread_your_writes = "{read_your_writes}"\n', 1)
        return write_config(text)
    return make


@pytest.fixture
def origin(mariadb_pair, mysql_db) -> Iterator[str]:
    """``mysql_db`` with a table ``origin`` whose one row names the server holding it,
    and an empty table ``t`` for writes."""
    mariadb_pair.primary.root_sql(
        f"CREATE TABLE `{mysql_db}`.origin (v VARCHAR(16));"
        f"CREATE TABLE `{mysql_db}`.t (id INT PRIMARY KEY, v INT)")
    mariadb_pair.wait_caught_up()
    for server, name in ((mariadb_pair.primary, "primary"), (mariadb_pair.replica, "replica")):
        server.root_sql(f"SET SESSION sql_log_bin = 0; INSERT INTO `{mysql_db}`.origin "
                        f"VALUES ('{name}')")
    yield mysql_db
    _pymysql_reads.stop_watches()


@pytest.fixture(autouse=True)
def no_faults() -> Iterator[None]:
    """resil's own code never failed (a fault would be hidden by its fail-open guard)."""
    yield
    assert counters.faults() == {}


def connect(db: str, **kw) -> pymysql.connections.Connection:
    kw.setdefault("autocommit", True)
    return pymysql.connect(host="orders-db", user="app", password="apppw", database=db,
                           connect_timeout=5, **kw)


def where(conn) -> str:
    with conn.cursor() as cur:
        cur.execute("SELECT v FROM origin")
        return cur.fetchone()[0]


def outcomes() -> dict[str, int]:
    prefix = "db_reads:orders-db:b:"
    return {k[len(prefix):]: int(v) for k, v in counters.stats().items()
            if k.startswith(prefix)}


def started(path: Path):
    agent = resil.start(path)
    return agent


def local_soon(conn) -> bool:
    """The replica watch needs a sample or two before the first local read."""
    return wait_for(lambda: where(conn) == "replica")


# --------------------------------------------------------------------------- where reads go

def test_an_autocommit_read_goes_to_the_own_units_replica_and_writes_to_the_primary(
        configure, origin, mariadb_pair):
    started(configure())
    conn = connect(origin)
    assert local_soon(conn)
    with conn.cursor() as cur:
        assert cur.execute("INSERT INTO t VALUES (1, 10)") == 1
        cur.execute("SELECT v FROM t WHERE id = 1")     # its own write, seen at once
        assert cur.fetchall() == ((10,),)
        assert cur.rowcount == 1 and cur.description[0][0] == "v"
    assert mariadb_pair.primary.root_sql(f"SELECT v FROM `{origin}`.t") == [(10,)]
    assert where(conn) == "replica"
    assert outcomes()["local"] >= 3
    conn.close()
    assert _pymysql_reads.Local is not None


def test_reads_inside_transactions_stay_on_the_primary(configure, origin):
    started(configure())
    conn = connect(origin)
    assert local_soon(conn)
    conn.begin()
    assert where(conn) == "primary"
    conn.commit()
    assert where(conn) == "replica"
    conn.autocommit(False)
    assert where(conn) == "primary"
    conn.rollback()
    assert where(conn) == "primary"         # autocommit off: every statement is in one
    conn.autocommit(True)
    assert where(conn) == "replica"
    with conn.cursor(pymysql.cursors.SSCursor) as cur:    # unbuffered: the primary
        cur.execute("SELECT v FROM origin")
        assert list(cur.fetchall()) == [("primary",)]


@pytest.mark.parametrize("statement", [
    "SET @x = 1",
    "SELECT @y := 2",
    "SELECT v INTO @z FROM origin",
    "SET SESSION sql_mode = 'ANSI_QUOTES'",
    "SET NAMES latin1",
    "SET NAMES utf8mb4 COLLATE utf8mb4_bin",
    "CREATE TEMPORARY TABLE scratch (a INT)",
    "SELECT GET_LOCK('resil-test', 0)",
    "PREPARE s FROM 'SELECT 1'",
    "LOCK TABLES origin READ",
    "SELECT SQL_CALC_FOUND_ROWS v FROM origin",
    "USE {db}",
    "HANDLER origin OPEN",
    "CALL noop()",
    "SELECT NEXTVAL(seq)",
    "SET @a = 1; SELECT 1",
])
def test_session_state_pins_the_connection_to_the_primary_until_it_connects_again(
        configure, origin, statement, mariadb_pair):
    mariadb_pair.primary.root_sql(f"CREATE PROCEDURE `{origin}`.noop() SELECT 1;"
                                  f"CREATE SEQUENCE `{origin}`.seq")
    mariadb_pair.wait_caught_up()
    started(configure())
    conn = connect(origin, client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
    assert local_soon(conn)
    with conn.cursor() as cur:
        cur.execute(statement.format(db=origin))
        cur.fetchall()
        while cur.nextset():
            cur.fetchall()
    assert where(conn) == "primary"
    assert where(conn) == "primary"
    assert outcomes().get("pinned", 0) >= 2
    conn.close()
    conn.connect()                          # a new session: nothing pins it
    assert where(conn) == "replica"


def test_set_names_of_the_connections_own_charset_pins_nothing(configure, origin):
    """What SQLAlchemy sends on every connect: the session stays as a second connection
    made with the same arguments has it."""
    started(configure())
    conn = connect(origin, charset="utf8mb4")
    assert local_soon(conn)
    with conn.cursor() as cur:
        cur.execute("SET NAMES utf8mb4")
        cur.execute("set names 'UTF8MB4';")
    assert where(conn) == "replica"
    assert outcomes().get("pinned", 0) == 0


@pytest.mark.parametrize("query, expected", [
    ("SELECT @@server_id", 1),
    ("SELECT CONNECTION_ID() > 0", 1),
    ("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()", 1),
])
def test_reads_that_depend_on_the_session_or_the_server_stay_on_the_primary(
        configure, origin, query, expected):
    started(configure())
    conn = connect(origin)
    assert local_soon(conn)
    with conn.cursor() as cur:
        cur.execute(query)
        assert cur.fetchone()[0] == expected
    with conn.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (7, 7)")
        cur.execute("SELECT LAST_INSERT_ID(), ROW_COUNT()")
        cur.fetchall()
    assert where(conn) == "replica"         # none of them pins


def test_the_diagnostics_of_a_local_read_come_from_the_replica(configure, origin,
                                                               mariadb_pair):
    """FOUND_ROWS(), ROW_COUNT() and SHOW WARNINGS describe the statement before: when the
    replica ran it, they are asked there (the primary's session would describe another)."""
    mariadb_pair.primary.root_sql(f"SET SESSION sql_log_bin = 0; INSERT INTO "
                                  f"`{origin}`.origin VALUES ('p2'), ('p3')")
    started(configure())
    conn = connect(origin)
    assert local_soon(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT v FROM origin")
        assert cur.fetchall() == (("replica",),)
        cur.execute("SELECT FOUND_ROWS()")
        assert cur.fetchall() == ((1,),)            # the replica's one row, not 3
        cur.execute("SELECT CAST('12abc' AS SIGNED)")
        cur.execute("SHOW WARNINGS")
        assert "Truncated incorrect INTEGER value" in cur.fetchall()[0][2]
        cur.execute("SELECT @@warning_count")
        assert cur.fetchall() == ((1,),)
        # After a statement on the primary, they are the primary's again.
        cur.execute("INSERT INTO t VALUES (1, 1), (2, 2)")
        cur.execute("SELECT ROW_COUNT()")
        assert cur.fetchall() == ((2,),)
        cur.execute("SELECT v FROM origin FOR UPDATE")      # the primary: 3 rows
        cur.execute("SELECT FOUND_ROWS()")
        assert cur.fetchall() == ((3,),)


def test_when_the_own_unit_holds_the_primary_reads_go_to_the_primary(
        configure, origin, tmp_path):
    agent = started(configure())
    conn = connect(origin)
    assert local_soon(conn)
    record = conn.__dict__["_resil_tracked"]
    assert record.local.companion is not None
    from resil.control import open_control_plane
    plane = open_control_plane(agent.config.control_url, agent.config.topology, None)
    state = agent.current_state()
    from resil.state import issuer
    plane.publish(state.evolve(primaries={**state.primaries, "orders-db": "b"}),
                  issuer=issuer())
    assert wait_for(lambda: agent.state.primary_unit(
        agent.config.resources["orders-db"]) == "b")
    where(conn)
    assert outcomes().get("primary", 0) >= 1
    assert record.local.companion is None    # closed: no second connection to the primary


# --------------------------------------------------------------------------- read-your-writes

def test_a_connection_reads_its_own_write_even_when_the_replica_has_not_applied_it(
        configure, origin, mariadb_pair):
    started(configure(max_lag=30, read_wait=0.2))
    conn = connect(origin)
    assert local_soon(conn)
    # The replica's SQL thread waits on a table lock: it replicates, but applies nothing
    # to t (a stopped SQL thread would make the watch skip the replica altogether).
    with context.bypass():      # resil would route the replica's address to the primary
        blocker = mariadb_pair.replica.connect(user="resil", password="resilpw",
                                               database=origin)
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLES t READ")
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO t VALUES (1, 1)")
            began = time.monotonic()
            cur.execute("SELECT v FROM t WHERE id = 1")
            assert cur.fetchall() == ((1,),)         # from the primary, after read_wait
            assert 0.15 < time.monotonic() - began < 2
            assert outcomes().get("fallback_wait", 0) == 1, outcomes()
            # A commit() in a transaction reports its GTID through PyMySQL's own OK read.
            conn.autocommit(False)
            cur.execute("UPDATE t SET v = 2 WHERE id = 1")
            conn.commit()
            conn.autocommit(True)
            cur.execute("SELECT v FROM t WHERE id = 1")
            assert cur.fetchall() == ((2,),)
            assert outcomes()["fallback_wait"] == 2, outcomes()
            # Any read of the connection waits for its writes, whatever table it reads.
            assert where(conn) == "primary"
            assert outcomes()["fallback_wait"] == 3, outcomes()
    finally:
        blocker.close()                             # the replica applies both writes
    with conn.cursor() as cur:
        cur.execute("SELECT v FROM t WHERE id = 1")
        assert cur.fetchall() == ((2,),)
    assert outcomes()["fallback_wait"] == 3, outcomes()
    assert outcomes().get("fallback_error", 0) == 0, outcomes()


def test_read_your_writes_holds_under_concurrent_writers(configure, origin):
    started(configure(max_lag=5, read_wait=0.5))
    probe = connect(origin)
    assert local_soon(probe)
    failures: list[str] = []
    done = threading.Barrier(9)

    def writer(n: int) -> None:
        conn = connect(origin)
        try:
            for i in range(120):
                key = n * 1000 + i
                with conn.cursor() as cur:
                    if i % 3 == 0:                  # some through a transaction and commit()
                        conn.autocommit(False)
                        cur.execute("INSERT INTO t VALUES (%s, %s)", (key, i))
                        conn.commit()
                        conn.autocommit(True)
                    else:
                        cur.execute("INSERT INTO t VALUES (%s, %s)", (key, i))
                    cur.execute("SELECT v FROM t WHERE id = %s", (key,))
                    if cur.fetchall() != ((i,),):
                        failures.append(f"{key} not read back")
                    cur.execute("UPDATE t SET v = v + 1 WHERE id = %s", (key,))
                    cur.execute("SELECT v FROM t WHERE id = %s", (key,))
                    if cur.fetchall() != ((i + 1,),):
                        failures.append(f"{key} update not read back")
        except Exception as exc:        # pragma: no cover - reported below
            failures.append(repr(exc))
        finally:
            conn.close()
            done.wait()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    done.wait()
    assert failures == []
    seen = outcomes()
    assert seen["local"] > 500, seen       # most reads were served by the replica


# --------------------------------------------------------------------------- replica trouble

@pytest.mark.adversarial
def test_a_lagging_replica_is_skipped_until_it_catches_up(configure, origin, mariadb_pair):
    started(configure(max_lag=0.5))
    conn = connect(origin)
    assert local_soon(conn)
    replica = mariadb_pair.replica
    replica.root_sql("STOP SLAVE SQL_THREAD")
    try:
        writer = connect(origin)
        stop = threading.Event()

        def write() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                with writer.cursor() as cur:
                    cur.execute("REPLACE INTO t VALUES (1, %s)", (i,))
                time.sleep(0.05)

        thread = threading.Thread(target=write)
        thread.start()
        try:
            assert wait_for(lambda: where(conn) == "primary", timeout=3)
            assert outcomes().get("fallback_lag", 0) >= 1
        finally:
            stop.set()
            thread.join()
    finally:
        replica.root_sql("START SLAVE SQL_THREAD")
    assert wait_for(lambda: where(conn) == "replica", timeout=5)


@pytest.mark.adversarial
def test_a_frozen_replica_fails_no_read(configure, origin, mariadb_pair):
    started(configure())
    conns = [connect(origin) for _ in range(4)]
    own = connect(origin)                   # the test's own, not shared with a reader
    assert local_soon(own)
    errors: list[str] = []
    slowest = [0.0]
    stop = threading.Event()

    def read(conn) -> None:
        while not stop.is_set():
            began = time.monotonic()
            try:
                assert where(conn) in ("primary", "replica")
            except Exception as exc:
                errors.append(repr(exc))
            slowest[0] = max(slowest[0], time.monotonic() - began)

    threads = [threading.Thread(target=read, args=(c,)) for c in conns]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    mariadb_pair.replica.freeze()
    try:
        time.sleep(3.0)
        assert where(own) == "primary"
    finally:
        mariadb_pair.replica.thaw()
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert slowest[0] < 4.0, slowest        # in-flight reads are cut when the watch notices
    assert wait_for(lambda: where(own) == "replica", timeout=10)


def test_a_read_the_replica_fails_is_answered_by_the_primary(configure, origin, mariadb_pair):
    """A table the replica does not have yet (its SQL thread is behind): the replica's
    error is not the application's; the primary answers. An error the primary gives too
    reaches the application as the primary's, and the replica connection is kept."""
    started(configure(max_lag=30))
    reader, other = connect(origin), connect(origin)
    assert local_soon(reader)
    with context.bypass():
        blocker = mariadb_pair.replica.connect(user="resil", password="resilpw",
                                               database=origin)
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLES t READ")
    try:
        with other.cursor() as cur:
            cur.execute("INSERT INTO t VALUES (5, 5)")     # the replica stops here
            cur.execute("CREATE TABLE fresh (a INT)")
            cur.execute("INSERT INTO fresh VALUES (1)")
        with reader.cursor() as cur:
            cur.execute("SELECT a FROM fresh")
            assert cur.fetchall() == ((1,),)
        assert outcomes()["fallback_error"] == 1
        opened = counters.stats()["mysql_read_companions_opened"]
        with reader.cursor() as cur, pytest.raises(pymysql.err.OperationalError):
            cur.execute("SELECT no_such_column FROM origin")
        assert where(reader) == "replica"
        assert counters.stats()["mysql_read_companions_opened"] == opened
    finally:
        blocker.close()


# --------------------------------------------------------------------------- frameworks

def test_sqlalchemy_autocommit_engine_reads_locally_and_its_own_writes(configure, origin):
    sqlalchemy = pytest.importorskip("sqlalchemy")
    started(configure())
    url = f"mysql+pymysql://app:apppw@orders-db/{origin}"
    autocommit = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT", pool_size=2)
    default = sqlalchemy.create_engine(url, pool_size=2)
    text = sqlalchemy.text
    assert wait_for(lambda: _engine_where(autocommit, text) == "replica")
    with autocommit.connect() as conn:
        for i in range(20):
            conn.execute(text("INSERT INTO t VALUES (:i, :i)"), {"i": i})
            assert conn.execute(text("SELECT v FROM t WHERE id = :i"), {"i": i}).all() == [(i,)]
    # The default engine runs every statement in a transaction: the primary.
    with default.begin() as conn:
        assert conn.execute(text("SELECT v FROM origin")).scalar() == "primary"
    assert _engine_where(default, text) == "primary"
    assert outcomes()["local"] >= 20
    autocommit.dispose()
    default.dispose()


def _engine_where(engine, text) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT v FROM origin")).scalar()


DJANGO = r"""
import json, sys
import pymysql
pymysql.install_as_MySQLdb()
import resil
from django.conf import settings
settings.configure(DATABASES={"default": {
    "ENGINE": "django.db.backends.mysql", "HOST": "orders-db", "NAME": sys.argv[2],
    "USER": "app", "PASSWORD": "apppw", "CONN_MAX_AGE": 60}}, USE_TZ=True)
import django
django.setup()
resil.start(sys.argv[1])
from django.db import connection, transaction
import time

def where():
    with connection.cursor() as cur:
        cur.execute("SELECT v FROM origin")
        return cur.fetchone()[0]

deadline = time.monotonic() + 5
while where() != "replica" and time.monotonic() < deadline:
    time.sleep(0.05)
out = {"first": where()}
seen = []
for i in range(20):
    with connection.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (%s, %s)", [i, i])
        cur.execute("SELECT v FROM t WHERE id = %s", [i])
        seen.append(cur.fetchone()[0] == i)
out["own_writes"] = all(seen)
with transaction.atomic():
    out["in_atomic"] = where()
out["after"] = where()
from resil import counters
out["local"] = counters.stats().get("db_reads:orders-db:b:local", 0)
print(json.dumps(out))
"""


def test_django_orm_connection_reads_locally(configure, origin):
    pytest.importorskip("django")
    import json
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-c", DJANGO, str(configure()), origin],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    # Django's SET SESSION TRANSACTION ISOLATION LEVEL on connect pins nothing.
    assert out["first"] == "replica", out
    assert out["own_writes"] is True
    assert out["in_atomic"] == "primary"
    assert out["after"] == "replica"
    assert out["local"] >= 20


@pytest.mark.parametrize("scope", ["request", "connection"])
def test_a_request_reads_its_writes_on_any_connection_when_scoped_to_requests(
        configure, origin, mariadb_pair, scope):
    """A Flask request writes on one connection and reads on another while the replica
    has not applied the write: with read_your_writes = "request" the read waits for it
    (and goes to the primary); with "connection" it does not, and misses the write."""
    flask = pytest.importorskip("flask")
    started(configure(max_lag=30, read_wait=0.2, read_your_writes=scope))
    writer, reader = connect(origin), connect(origin)
    assert local_soon(reader)
    app = flask.Flask(__name__)

    @app.post("/items/<int:key>")
    def add(key: int):
        with writer.cursor() as cur:
            cur.execute("INSERT INTO t VALUES (%s, 1)", (key,))
        with reader.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM t WHERE id = %s", (key,))
            return {"found": cur.fetchone()[0]}

    with context.bypass():
        blocker = mariadb_pair.replica.connect(user="resil", password="resilpw",
                                               database=origin)
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLES t READ")     # the replica applies nothing to t
    try:
        found = app.test_client().post("/items/1").json["found"]
    finally:
        blocker.close()
    if scope == "request":
        assert found == 1
        assert outcomes()["fallback_wait"] == 1
    else:
        assert found == 0                     # the other connection's write is not waited for
        assert outcomes().get("fallback_wait", 0) == 0
    # Outside a request, the reader waits for nothing of the writer's.
    assert where(reader) == "replica"


def test_a_driver_without_local_reads_says_so_once_and_reads_from_the_primary(
        configure, origin, caplog):
    MySQLdb = pytest.importorskip("MySQLdb")
    started(configure())
    with caplog.at_level("WARNING", logger="resil.integrations"):
        for _ in range(2):
            conn = MySQLdb.connect(host="orders-db", user="app", password="apppw",
                                   database=origin, autocommit=True)
            assert where(conn) == "primary"
            conn.close()
    said = [r.getMessage() for r in caplog.records if "does not support" in r.getMessage()]
    assert said == ['resil: orders-db has reads = "local", which mysqlclient does not '
                    "support yet: all it sends goes to the primary (docs/reads.md)"]


def test_an_asgi_request_reads_its_writes_on_any_connection(configure, origin, mariadb_pair):
    """The request scope under Starlette: a sync endpoint (run in a worker thread) and an
    async one, each writing on one connection and reading on another."""
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient
    started(configure(max_lag=30, read_wait=0.2, read_your_writes="request"))
    writer, reader = connect(origin), connect(origin)
    assert local_soon(reader)

    def write_then_count(key: int) -> int:
        with writer.cursor() as cur:
            cur.execute("INSERT INTO t VALUES (%s, 1)", (key,))
        with reader.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM t WHERE id = %s", (key,))
            return cur.fetchone()[0]

    def sync_endpoint(request):
        return JSONResponse({"found": write_then_count(1)})

    async def async_endpoint(request):
        return JSONResponse({"found": write_then_count(2)})

    app = Starlette(routes=[Route("/sync", sync_endpoint, methods=["POST"]),
                            Route("/async", async_endpoint, methods=["POST"])])
    with context.bypass():
        blocker = mariadb_pair.replica.connect(user="resil", password="resilpw",
                                               database=origin)
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLES t READ")     # the replica applies nothing to t
    try:
        with TestClient(app) as client:
            assert client.post("/sync").json() == {"found": 1}
            assert client.post("/async").json() == {"found": 1}
    finally:
        blocker.close()
    assert outcomes()["fallback_wait"] == 2
