"""redis-py (sync and asyncio) under the agent, against a real Redis primary and replica."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis
import redis.asyncio

import resil
from resil import counters
from resil.router import Router


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
    monkeypatch.setattr(Router, "resource", broken)
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
