"""redis-py (sync and asyncio) under the agent, against a real Redis primary and replica."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis
import redis.asyncio

import resil
from resil import context, counters
from resil.topology import Topology


def served_port(client) -> int:
    return int(client.config_get("port")["port"])


def wait_for(condition, timeout=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_alias_lands_on_the_primary_and_writes(pair_config, redis_pair):
    resil.start(pair_config)
    client = redis.Redis(host="cache", socket_connect_timeout=2)
    assert served_port(client) == redis_pair.primary.port
    client.set("resil:test", "v")                     # a replica would answer READONLY
    url_client = redis.from_url(f"redis://cache:{redis_pair.replica.port}/0")
    assert served_port(url_client) == redis_pair.primary.port


def test_unmatched_address_is_untouched(pair_config, redis_pair):
    resil.start(pair_config)
    client = redis.Redis(host="localhost", port=redis_pair.replica.port)
    assert served_port(client) == redis_pair.replica.port


def test_new_connections_follow_a_published_primary(pair_config, redis_pair, publish):
    resil.start(pair_config)
    client = redis.Redis(host="cache")
    assert served_port(client) == redis_pair.primary.port
    publish(cache="b")
    def moved():
        client.connection_pool.disconnect()            # pooled connections reconnect
        return served_port(client) == redis_pair.replica.port
    assert wait_for(moved)
    assert served_port(redis.Redis(host="cache")) == redis_pair.replica.port


def test_asyncio_client_is_routed(pair_config, redis_pair):
    resil.start(pair_config)
    async def main():
        client = redis.asyncio.Redis(host="cache")
        try:
            return int((await client.config_get("port"))["port"])
        finally:
            await client.aclose()
    assert asyncio.run(main()) == redis_pair.primary.port


def test_fault_in_resil_leaves_the_call_working(pair_config, redis_pair, monkeypatch, caplog):
    resil.start(pair_config)
    def broken(self, *args):
        raise RuntimeError("injected fault")
    monkeypatch.setattr(Topology, "match", broken)
    with caplog.at_level(logging.ERROR, logger="resil"):
        client = redis.Redis(host="127.0.0.1", port=redis_pair.replica.port)
        assert served_port(client) == redis_pair.replica.port
    assert counters.faults() == {"redis.connect": 1}
    assert caplog.text.count("internal fault") == 1


def test_stop_restores_the_original(pair_config):
    original = redis.connection.Connection.__dict__["_connect"]
    resil.start(pair_config)
    assert redis.connection.Connection.__dict__["_connect"] is not original
    resil.stop()
    assert redis.connection.Connection.__dict__["_connect"] is original
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis(host="cache", socket_connect_timeout=1).ping()


def test_asyncio_write_awaits_a_lock_without_blocking_the_loop(pair_config, redis_pair):
    """While the resource is locked an asyncio write awaits (Gate.hold_async) and reads
    run; the loop keeps turning, and the write goes out once the lock is lifted."""
    from resil.config import load_config
    from resil.control import open_control_plane
    from resil.state import ControlState, Lock
    agent = resil.start(pair_config)
    cfg = load_config(pair_config, env={})
    plane = open_control_plane(cfg.control_url, cfg.topology, None)
    state = ControlState.initial(cfg.topology)
    with context.bypass():
        redis_pair.primary.client().delete("resil:async-held")
    plane.publish(state.evolve(epoch=1, locks={"cache": Lock("op", time.time(), "test")}),
                  issuer="test")
    assert wait_for(lambda: "cache" in agent.current_state().locks)

    async def main() -> tuple[int, bool, float]:
        client = redis.asyncio.Redis(host="cache")
        try:
            write = asyncio.create_task(client.set("resil:async-held", "v"))
            ticks = 0
            for _ in range(10):                 # the loop turns while the write is held
                await asyncio.sleep(0.01)
                ticks += 1
            held = not write.done()
            assert await client.get("resil:async-held") is None    # a read runs meanwhile
            began = time.monotonic()
            await asyncio.to_thread(plane.publish, state.evolve(epoch=2), issuer="test")
            await write
            return ticks, held, time.monotonic() - began
        finally:
            await client.aclose()
    ticks, held, waited = asyncio.run(main())
    assert ticks == 10 and held and waited < 2
    assert counters.stats()["held_writes"] >= 1 and counters.holding() == 0
    with context.bypass():
        assert redis_pair.primary.client().get("resil:async-held") == "v"


def test_a_move_cuts_commands_waiting_on_the_old_primary_but_not_idle_connections(
        pair_config, redis_pair, publish, caplog):
    """When the primary moves, a command still waiting for the old primary's reply (a
    blocking pop here) gets "connection closed" at once rather than its socket timeout;
    the pool's idle connections are not cut (nothing of theirs is at risk: they move at
    their next checkout), so the warning counts only the one in flight."""
    import threading
    resil.start(pair_config)
    client = redis.Redis(host="cache", socket_timeout=10)
    idle = [client.connection_pool.get_connection() for _ in range(3)]
    for conn in idle:
        client.connection_pool.release(conn)
    outcome: list[object] = []

    def blocked() -> None:
        try:
            outcome.append(client.blpop(["never"], timeout=8))
        except redis.RedisError as exc:    # retried on "b", a replica: READONLY
            outcome.append(exc)
    waiter = threading.Thread(target=blocked)
    waiter.start()
    with context.bypass():
        assert wait_for(lambda: redis_pair.primary.client().info("clients")
                        ["blocked_clients"] == 1)
    cut = counters.stats().get("statements_abandoned", 0)
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="resil"):
        publish(cache="b")
        waiter.join(10)
    assert time.monotonic() - began < 3             # cut, not left to its timeouts
    assert counters.stats().get("statements_abandoned", 0) == cut + 1
    assert "1 connection(s) still waiting there cut" in caplog.text
    assert outcome and isinstance(outcome[0], redis.RedisError)
    assert all(conn._sock is not None for conn in idle)
    assert served_port(client) == redis_pair.replica.port     # the idle ones moved
