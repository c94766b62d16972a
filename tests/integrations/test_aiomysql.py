"""aiomysql under the agent, against a real MariaDB primary and replica: routed, moved
as the same object, and held without blocking the event loop."""

from __future__ import annotations

import asyncio
import time

import aiomysql
import pytest

import resil
from resil import counters
from resil.config import load_config
from resil.control import open_control_plane
from resil.errors import LockTimeoutError
from resil.state import ControlState, Lock, issuer


async def server_id(conn) -> int:
    async with conn.cursor() as cur:
        await cur.execute("SELECT @@server_id")
        return int((await cur.fetchone())[0])


def connect(**kw):
    return aiomysql.connect(host="orders-db", user="app", password="apppw", db="app",
                            autocommit=True, connect_timeout=5, **kw)


@pytest.fixture
def plane(pair_config):
    config = load_config(pair_config, env={})
    found = open_control_plane(config.control_url, config.topology, config.signing_key)
    yield found
    found.close()


def _state(plane, topology=None):
    signal = plane.load()
    return signal.state if signal else ControlState.initial(
        load_config(topology, env={}).topology)


def test_an_alias_is_routed_and_a_connection_moves_as_the_same_object(pair_config,
                                                                       publish):
    resil.start(pair_config)

    async def run():
        conn = await connect()
        first = await server_id(conn)
        publish(orders_db="b")
        await asyncio.sleep(0.2)
        moved = await server_id(conn)            # the next statement moves it
        publish(orders_db="a")
        await asyncio.sleep(0.2)
        back = await server_id(conn)
        conn.close()
        return first, moved, back
    assert asyncio.run(run()) == (1, 2, 1)
    assert counters.stats()["mysql_connections_moved"] == 2


def test_a_write_held_by_a_lock_never_blocks_the_event_loop(pair_config, plane,
                                                            mariadb_pair):
    mariadb_pair.primary.root_sql("CREATE TABLE IF NOT EXISTS app.aheld (id INT "
                                  "AUTO_INCREMENT PRIMARY KEY, v INT)")
    agent = resil.start(pair_config)
    base = _state(plane, pair_config)

    async def run():
        conn = await connect()
        await server_id(conn)
        plane.publish(base.evolve(epoch=base.epoch + 1, locks={"orders-db": Lock(
            "test", time.time(), "test")}), issuer=issuer())
        while "orders-db" not in agent.state.locks:
            await asyncio.sleep(0.01)
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)
        ticker = asyncio.create_task(tick())

        async def write():
            async with conn.cursor() as cur:
                await cur.execute("INSERT INTO aheld (v) VALUES (1)")
            return time.monotonic()
        writing = asyncio.create_task(write())
        await asyncio.sleep(0.5)
        assert not writing.done()                  # held
        assert ticks >= 20                         # while the loop kept running
        released = time.monotonic()
        plane.publish(base.evolve(epoch=base.epoch + 2, locks={}), issuer=issuer())
        done = await asyncio.wait_for(writing, 5)
        ticker.cancel()
        conn.close()
        return done - released
    waited = asyncio.run(run())
    assert waited < 1.0
    assert counters.stats()["held_writes"] == 1


def test_a_hold_beyond_the_lock_timeout_is_the_documented_error(pair_config, plane,
                                                                write_config, tmp_path):
    text = pair_config.read_text().replace("[resources.orders-db]",
                                           "[resources.orders-db]\nlock_timeout = 0.3")
    config = write_config(text, name="short.toml")
    agent = resil.start(config)
    base = _state(plane, pair_config)

    async def run():
        conn = await connect()
        plane.publish(base.evolve(epoch=base.epoch + 1, locks={"orders-db": Lock(
            "stuck", time.time(), "test")}), issuer=issuer())
        while "orders-db" not in agent.state.locks:
            await asyncio.sleep(0.01)
        try:
            async with conn.cursor() as cur:
                await cur.execute("INSERT INTO aheld (v) VALUES (2)")
        finally:
            plane.publish(base.evolve(epoch=base.epoch + 2, locks={}), issuer=issuer())
            conn.close()
    with pytest.raises(LockTimeoutError):
        asyncio.run(run())


def test_reads_run_while_locked_and_transactions_are_counted_in_flight(
        pair_config, plane, mariadb_pair):
    agent = resil.start(pair_config)
    base = _state(plane, pair_config)

    async def run():
        conn = await aiomysql.connect(host="orders-db", user="app", password="apppw",
                                      db="app", autocommit=False)
        async with conn.cursor() as cur:
            await cur.execute("INSERT INTO aheld (v) VALUES (3)")   # opens a transaction
        assert agent.in_flight()["orders-db"] == 1
        await conn.commit()
        assert agent.in_flight()["orders-db"] == 0
        await conn.begin()
        assert agent.in_flight()["orders-db"] == 1
        await conn.rollback()
        auto = await connect()      # a connect while locked waits, as a write does
        plane.publish(base.evolve(epoch=base.epoch + 1, locks={"orders-db": Lock(
            "test", time.time(), "test")}), issuer=issuer())
        while "orders-db" not in agent.state.locks:
            await asyncio.sleep(0.01)
        try:
            return await asyncio.wait_for(server_id(auto), 2)     # a read is not held
        finally:
            plane.publish(base.evolve(epoch=base.epoch + 2, locks={}), issuer=issuer())
            auto.close()
            conn.close()
    assert asyncio.run(run()) == 1


def test_a_write_in_flight_on_a_demoted_primary_gets_an_error_at_once(
        pair_config, publish, mariadb_pair):
    """A write waits on a row lock (sent, no reply) when the primary moves away: the
    application gets an error at once, not an OK (for a write that exists only on the
    old primary) whenever the old primary answers."""
    from resil import context
    mariadb_pair.primary.root_sql("CREATE TABLE IF NOT EXISTS app.ainflight (id INT "
                                  "PRIMARY KEY, v INT); REPLACE INTO app.ainflight "
                                  "VALUES (1, 0)")
    resil.start(pair_config)
    with context.bypass():
        locker = mariadb_pair.primary.connect()
    with locker.cursor() as cur:
        cur.execute("SELECT * FROM ainflight WHERE id = 1 FOR UPDATE")   # holds the row

    async def run():
        conn = await connect()
        await server_id(conn)

        async def write():
            began = time.monotonic()
            try:
                async with conn.cursor() as cur:
                    await cur.execute("UPDATE ainflight SET v = v + 1 WHERE id = 1")
                return "ok", time.monotonic() - began
            except Exception as exc:
                return exc, time.monotonic() - began
        writing = asyncio.create_task(write())
        await asyncio.sleep(0.3)                    # in flight, waiting for the row
        publish(orders_db="b")
        result = await asyncio.wait_for(writing, 10)
        conn.close()
        return result
    try:
        result, waited = asyncio.run(run())
    finally:
        locker.rollback()
        locker.close()
        publish(orders_db="a")
    assert isinstance(result, aiomysql.OperationalError), result
    assert result.args[0] in (2013, 2006, 0) and waited < 2.0, (result, waited)
    assert counters.stats().get("statements_abandoned", 0) == 1
