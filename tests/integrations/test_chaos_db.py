"""Chaos faults on PyMySQL and redis-py (sync and asyncio), against the real MariaDB and
Redis pairs; the agent runs in this process, in unit a, where both primaries are."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pymysql
import pytest
import redis

import resil
from resil import counters, registry
from resil.config import load_config
from resil.control import open_control_plane
from resil.faults import Fault
from resil.state import ControlState


@pytest.fixture
def inject(pair_config) -> Callable[..., Fault]:
    """Start the agent; ``inject(resource, **fields)`` publishes a fault (replacing the
    others) and waits until the agent applied it."""
    resil.start(pair_config)
    config = load_config(pair_config, env={})
    plane = open_control_plane(config.control_url, config.topology, config.signing_key)

    def publish(resource: str, ttl: float = 60.0, **fields) -> Fault:
        signal = plane.load()
        state = signal.state if signal else ControlState.initial(config.topology)
        now = time.time()
        fault = Fault(f"f{state.epoch + 1}", resource, now + ttl, now, **fields)
        epoch = plane.publish(state.evolve(faults=(fault,)), issuer="test").epoch
        deadline = time.monotonic() + 5
        while registry.runtime().current_state().epoch < epoch:
            assert time.monotonic() < deadline, "the agent did not apply the fault"
            time.sleep(0.01)
        return fault
    return publish


def connect(database: str | None = None) -> pymysql.connections.Connection:
    return pymysql.connect(host="orders-db", user="app", password="apppw", database=database,
                           autocommit=True, connect_timeout=3, read_timeout=3)


def test_mysql_error_rate_is_a_server_error_at_the_configured_rate(inject, mysql_db):
    conn = connect()
    fault = inject("orders-db", unit="a", error_rate=0.25, kind="error", seed=3)
    failed = 0
    with conn.cursor() as cur:
        for _ in range(400):
            try:
                cur.execute("SELECT 1")
            except pymysql.err.MySQLError as exc:
                assert exc.args[0] == 1105 and "resil chaos" in exc.args[1]
                failed += 1
    assert 0.18 < failed / 400 < 0.32, failed
    assert counters.stats()[f"chaos_injected:{fault.id}:orders-db:error"] == failed
    conn.close()


def test_mysql_reset_is_the_drivers_own_lost_connection(inject, mysql_db):
    conn = connect(mysql_db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS chaos_t (id INT PRIMARY KEY)")
    fault = inject("orders-db", unit="a", error_rate=1.0, kind="reset")
    with conn.cursor() as cur, pytest.raises(pymysql.err.OperationalError) as raised:
        cur.execute("INSERT INTO chaos_t VALUES (1)")
    assert raised.value.args[0] in (2006, 2013)
    assert counters.stats()[f"chaos_injected:{fault.id}:orders-db:reset"] == 1
    inject("orders-db", unit="b", error_rate=1.0, kind="reset")   # elsewhere: no effect
    conn.close()
    conn = connect(mysql_db)        # what a pool does after a lost connection
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM chaos_t")
        assert cur.fetchone() == (0,), "the statement was cut before it was sent"
    conn.close()


def test_mysql_connects_refused_are_held_and_retried_like_a_real_refusal(inject, mysql_db):
    inject("orders-db", unit="a", error_rate=1.0, kind="refused")
    started = time.monotonic()
    conn = connect()        # refused once, then held (failover_hold) and connected again
    assert time.monotonic() - started >= 0.4
    assert counters.stats()["failover_holds_released"] == 1
    inject("orders-db", unit="a", error_rate=1.0, kind="error")
    with pytest.raises(pymysql.err.OperationalError) as raised:
        connect()
    assert raised.value.args[0] == 1040, "a connect's error is the server refusing the login"
    conn.close()


def test_mysql_latency_and_scoping(inject, mysql_db):
    conn = connect()
    inject("orders-db", unit="b", error_rate=1.0, kind="error")    # not the primary's unit
    with conn.cursor() as cur:
        for _ in range(20):
            cur.execute("SELECT 1")
    inject("orders-db", caller="b", error_rate=1.0, kind="error")  # not this caller's unit
    with conn.cursor() as cur:
        for _ in range(20):
            cur.execute("SELECT 1")
    inject("orders-db", unit="a", latency=0.1)
    with conn.cursor() as cur:
        started = time.monotonic()
        cur.execute("SELECT 1")
        assert time.monotonic() - started >= 0.1
    conn.close()


def test_mysql_fault_expires_on_its_own(inject, mysql_db):
    conn = connect()
    inject("orders-db", unit="a", error_rate=1.0, kind="error", ttl=0.5)
    with conn.cursor() as cur:
        with pytest.raises(pymysql.err.MySQLError):
            cur.execute("SELECT 1")
        time.sleep(0.6)
        for _ in range(20):
            cur.execute("SELECT 1")
    conn.close()


def test_redis_faults_sync(inject, redis_pair):
    client = redis.Redis(host="cache", socket_timeout=2,
                         retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0))
    client.set("k", "v")
    fault = inject("cache", unit="a", error_rate=0.3, kind="error", seed=5)
    failed = 0
    for _ in range(400):
        try:
            client.get("k")
        except redis.exceptions.ResponseError as exc:
            assert "resil chaos" in str(exc)
            failed += 1
    assert 0.23 < failed / 400 < 0.37, failed
    assert counters.stats()[f"chaos_injected:{fault.id}:cache:error"] == failed
    inject("cache", unit="a", error_rate=1.0, kind="reset")
    with pytest.raises(redis.exceptions.ConnectionError):
        client.get("k")
    inject("cache", unit="a", loss=1.0)
    started = time.monotonic()
    with pytest.raises((redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        client.get("k")
    assert time.monotonic() - started >= 1.9, "a lost command waits for its socket timeout"
    inject("cache", unit="b", error_rate=1.0, kind="reset")     # another unit: no effect
    assert client.get("k") == b"v"


def test_redis_faults_asyncio(inject, redis_pair):
    import redis.asyncio

    async def run() -> None:
        client = redis.asyncio.Redis(host="cache", socket_timeout=2,
                                     retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0))
        await client.set("k", "v")
        inject("cache", unit="a", error_rate=1.0, kind="error")
        with pytest.raises(redis.exceptions.ResponseError):
            await client.get("k")
        inject("cache", unit="a", error_rate=1.0, kind="reset")
        with pytest.raises(redis.exceptions.ConnectionError):
            await client.get("k")
        inject("cache", unit="a", latency=0.1)
        started = time.monotonic()
        assert await client.get("k") == b"v"
        assert time.monotonic() - started >= 0.1
        await client.aclose()
    asyncio.run(run())


# --------------------------------------------------------------------------- mysqlclient

def connect_mysqlclient(database: str | None = None):
    import MySQLdb
    named = {"database": database} if database else {}
    return MySQLdb.connect(host="orders-db", user="app", password="apppw", autocommit=True,
                           connect_timeout=3, read_timeout=3, **named)


def test_mysqlclient_statements_get_the_same_faults(inject, mysql_db):
    """mysqlclient (Django's driver) sees what PyMySQL sees: a server error at the rate
    asked, a reset as its own lost connection (the statement never sent), latency, and
    nothing from a fault scoped elsewhere."""
    import MySQLdb
    conn = connect_mysqlclient(mysql_db)
    cur = conn.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS chaos_c (id INT PRIMARY KEY)")
    fault = inject("orders-db", unit="a", error_rate=0.25, kind="error", seed=3)
    failed = 0
    for _ in range(400):
        try:
            cur.execute("SELECT 1")
        except MySQLdb.OperationalError as exc:
            assert exc.args[0] == 1105 and "resil chaos" in exc.args[1]
            failed += 1
    assert 0.18 < failed / 400 < 0.32, failed
    assert counters.stats()[f"chaos_injected:{fault.id}:orders-db:error"] == failed

    inject("orders-db", unit="b", error_rate=1.0, kind="error")    # elsewhere: no effect
    for _ in range(20):
        cur.execute("SELECT 1")
    inject("orders-db", unit="a", latency=0.1)
    started = time.monotonic()
    cur.execute("SELECT 1")
    assert time.monotonic() - started >= 0.1

    fault = inject("orders-db", unit="a", error_rate=1.0, kind="reset")
    with pytest.raises(MySQLdb.OperationalError) as raised:
        cur.execute("INSERT INTO chaos_c VALUES (1)")
    assert raised.value.args[0] in (2006, 2013)
    assert counters.stats()[f"chaos_injected:{fault.id}:orders-db:reset"] == 1
    inject("orders-db", unit="b", error_rate=1.0, kind="reset")
    conn.close()
    conn = connect_mysqlclient(mysql_db)
    cur = conn.cursor()
    cur.execute("SELECT COUNT(*) FROM chaos_c")
    assert cur.fetchone() == (0,), "the statement was cut before it was sent"
    conn.close()


def test_mysqlclient_connects_refused_are_held_and_a_login_error_is_the_servers(inject,
                                                                               mysql_db):
    import MySQLdb
    inject("orders-db", unit="a", error_rate=1.0, kind="refused")
    started = time.monotonic()
    conn = connect_mysqlclient()    # refused once, then held (failover_hold), connected
    assert time.monotonic() - started >= 0.4
    assert counters.stats()["failover_holds_released"] == 1
    inject("orders-db", unit="b", error_rate=1.0, kind="refused")  # statements: no effect
    cur = conn.cursor()
    cur.execute("SELECT @@port")    # connected to the real primary, not the chaos socket
    assert cur.fetchone()[0] == registry.runtime().config.topology.resources[
        "orders-db"].endpoints["a"][0].port
    inject("orders-db", unit="a", error_rate=1.0, kind="error")
    with pytest.raises(MySQLdb.OperationalError) as raised:
        connect_mysqlclient()
    assert raised.value.args[0] == 1040, "a connect's error is the server refusing the login"
    conn.close()


# --------------------------------------------------------------------------- aiomysql, asyncmy

@pytest.mark.parametrize("driver", ["aiomysql", "asyncmy"])
def test_async_drivers_get_the_same_faults(inject, mysql_db, driver):
    """aiomysql and asyncmy (SQLAlchemy's async engines) see what PyMySQL sees, with the
    latency awaited (the loop keeps turning): a server error at the rate asked, a reset
    as their own lost connection, a refused connect held and retried, a login error."""
    import importlib
    lib = importlib.import_module(driver)
    errors = importlib.import_module("asyncmy.errors" if driver == "asyncmy" else "pymysql.err")

    async def connect():
        return await lib.connect(host="orders-db", user="app", password="apppw", db=mysql_db,
                                 autocommit=True, connect_timeout=3)

    async def main() -> dict:
        found: dict = {}
        conn = await connect()
        async with conn.cursor() as cur:
            await cur.execute("CREATE TABLE IF NOT EXISTS chaos_a (id INT PRIMARY KEY)")
        fault = inject("orders-db", unit="a", error_rate=0.25, kind="error", seed=3)
        failed = 0
        for _ in range(200):
            try:
                async with conn.cursor() as cur:
                    await cur.execute("SELECT 1")
            except errors.OperationalError as exc:
                assert exc.args[0] == 1105 and "resil chaos" in exc.args[1]
                failed += 1
        found["error"] = (failed, counters.stats()[f"chaos_injected:{fault.id}:orders-db:error"])

        inject("orders-db", unit="a", latency=0.2)
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1
        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        async with conn.cursor() as cur:
            await cur.execute("SELECT 1")
        found["latency"] = (time.monotonic() - started, ticks)
        ticker.cancel()

        inject("orders-db", unit="a", error_rate=1.0, kind="reset")
        try:
            async with conn.cursor() as cur:
                await cur.execute("INSERT INTO chaos_a VALUES (1)")
        except errors.OperationalError as exc:
            found["reset"] = exc.args[0]
        conn.close()

        inject("orders-db", unit="a", error_rate=1.0, kind="refused")
        started = time.monotonic()
        conn = await connect()      # refused once, then held and connected
        found["refused"] = time.monotonic() - started
        inject("orders-db", unit="b", error_rate=1.0, kind="reset")    # elsewhere
        async with conn.cursor() as cur:
            await cur.execute("SELECT COUNT(*) FROM chaos_a")
            found["rows"] = (await cur.fetchone())[0]
        conn.close()
        inject("orders-db", unit="a", error_rate=1.0, kind="error")
        try:
            await connect()
        except errors.OperationalError as exc:
            found["login"] = exc.args[0]
        return found

    found = asyncio.run(main())
    failed, counted = found["error"]
    assert 0.15 < failed / 200 < 0.35 and counted == failed, found
    waited, ticks = found["latency"]
    assert waited >= 0.2 and ticks >= 5, found      # awaited: the loop kept turning
    assert found["reset"] in (2006, 2013), found
    assert found["refused"] >= 0.4 and counters.stats()["failover_holds_released"] == 1
    assert found["rows"] == 0, "the reset statement was cut before it was sent"
    assert found["login"] == 1040, found
