"""Same-unit reads (``reads = "local"``) with redis-py, against a real Redis pair.

The process runs in unit b, whose endpoint is the pair's replica; the primary is in
unit a. The key ``origin`` holds a different value on each server (written on the
replica itself while it accepted writes), so a read says which server answered it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

import resil
from resil import context, counters
from resil.integrations import _redis_reads
from servers.config import resil_toml
from servers.ports import wait_until


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    return wait_until(condition, timeout, interval=0.02)


@pytest.fixture
def configure(write_config, redis_pair, tmp_path) -> Callable[..., Path]:
    def make(max_lag: float = 1.0, read_your_writes: str = "connection") -> Path:
        text = resil_toml((tmp_path / "state.json").as_uri(), redis=redis_pair,
                          control="poll_interval = 0.02")
        text = text.replace('unit = "a"', 'unit = "b"', 1).replace(
            "[resources.cache]\n",
            f'[resources.cache]\nreads = "local"\nmax_lag = {max_lag}\n'
            f'read_your_writes = "{read_your_writes}"\n', 1)
        return write_config(text)
    return make


@pytest.fixture
def origin(redis_pair) -> Iterator[str]:
    """A key whose value names the server holding it."""
    key = f"origin-{uuid.uuid4().hex[:8]}"
    primary = redis_pair.primary.client()
    replica = redis_pair.replica.client()
    primary.set(key, "primary")
    redis_pair.wait_caught_up()
    replica.config_set("replica-read-only", "no")
    try:
        replica.set(key, "replica")
    finally:
        replica.config_set("replica-read-only", "yes")
    yield key
    _redis_reads.stop_watches()


@pytest.fixture(autouse=True)
def no_faults() -> Iterator[None]:
    yield
    assert counters.faults() == {}


def outcomes() -> dict[str, int]:
    prefix = "db_reads:cache:b:"
    return {k[len(prefix):]: int(v) for k, v in counters.stats().items()
            if k.startswith(prefix)}


def client(**kw) -> redis.Redis:
    kw.setdefault("socket_timeout", 5)
    return redis.Redis(host="cache", **kw)


def test_key_reads_go_to_the_own_units_replica_and_the_rest_to_the_primary(
        configure, origin, redis_pair):
    resil.start(configure())
    r = client(decode_responses=True)
    assert wait_for(lambda: r.get(origin) == "replica")
    assert r.mget([origin]) == ["replica"]
    assert r.strlen(origin) == len("replica")
    assert r.get("no-such-key-" + origin) is None        # a nil reply is a reply
    # Not key reads, or not the same on every server: the primary.
    assert r.eval("return redis.call('GET', KEYS[1])", 1, origin) == "primary"
    with r.pipeline() as pipe:
        assert pipe.get(origin).execute() == ["primary"]
    assert r.info("replication")["role"] == "master"
    local = outcomes()["local"]
    assert local >= 4
    # A single-connection client keeps its one connection.
    single = client(decode_responses=True, single_connection_client=True)
    assert single.get(origin) == "primary"
    single.close()


def test_a_client_reads_its_own_writes(configure, origin, redis_pair):
    resil.start(configure())
    r = client(decode_responses=True)
    assert wait_for(lambda: r.get(origin) == "replica")
    key = origin + "-w"
    for i in range(30):
        r.set(key, i)
        assert r.get(key) == str(i)             # never the replica's older value
    with r.pipeline() as pipe:                  # a pipeline's writes count for its pool
        pipe.set(key, "piped").execute()
    assert r.get(key) == "piped"
    assert outcomes()["fallback_wait"] >= 30
    # Once the replica's offset covers the write, reads are local again.
    assert wait_for(lambda: r.get(origin) == "replica", timeout=3)


def test_read_your_writes_holds_under_concurrent_clients(configure, origin):
    """Clients that write read their writes back (from the primary until the replica is
    known to hold them); clients that only read are served by the replica meanwhile."""
    resil.start(configure())
    probe = client(decode_responses=True)
    assert wait_for(lambda: probe.get(origin) == "replica")
    failures: list[str] = []
    answers: list[str] = []

    def writer(n: int) -> None:
        r = client(decode_responses=True)
        key = f"{origin}-{n}"
        for i in range(1, 101):
            r.incr(key)
            value = r.get(key)              # its own write: must be there
            if value is None or int(value) != i:
                failures.append(f"{key}: {value} after {i} increments")

    def reader() -> None:
        r = client(decode_responses=True)
        answers.extend(r.get(origin) for _ in range(200))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert answers.count("replica") > 500, outcomes()
    assert outcomes()["fallback_wait"] >= 300 - 10, outcomes()


@pytest.mark.adversarial
def test_a_frozen_replica_fails_no_read(configure, origin, redis_pair):
    resil.start(configure())
    r = client(decode_responses=True, socket_timeout=10)
    assert wait_for(lambda: r.get(origin) == "replica")
    redis_pair.replica.freeze()
    try:
        time.sleep(1.5)
        began = time.monotonic()
        while time.monotonic() - began < 1.0:
            assert r.get(origin) == "primary"
    finally:
        redis_pair.replica.thaw()
    assert outcomes().get("fallback_lag", 0) > 0
    assert wait_for(lambda: r.get(origin) == "replica", timeout=10)


@pytest.mark.adversarial
def test_a_replica_that_stops_replicating_is_skipped(configure, origin, redis_pair):
    resil.start(configure())
    r = client(decode_responses=True)
    assert wait_for(lambda: r.get(origin) == "replica")
    replica = redis_pair.replica.client()
    with context.bypass():
        replica.replicaof("no", "one")
    try:
        assert wait_for(lambda: r.get(origin) == "primary", timeout=3)
    finally:
        with context.bypass():      # resil would send these to the primary
            replica.replicaof("127.0.0.1", redis_pair.primary.port)
            redis_pair.wait_caught_up()


def test_the_asyncio_client_reads_locally_and_its_own_writes(configure, origin):
    import asyncio

    import redis.asyncio
    resil.start(configure())

    async def work() -> list[object]:
        r = redis.asyncio.Redis(host="cache", decode_responses=True)
        try:
            deadline = time.monotonic() + 5
            while await r.get(origin) != "replica" and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            seen: list[object] = [await r.get(origin)]
            key = origin + "-async"
            for i in range(20):                 # its own writes, at once
                await r.set(key, i)
                seen.append(await r.get(key) == str(i))
            async with r.pipeline() as pipe:    # a pipeline's writes count too
                await pipe.set(key, "piped").execute()
            seen.append(await r.get(key))
            # Other tasks keep being routed while a read is on the replica.
            results = await asyncio.gather(r.get(origin), r.set(key + "-x", 1),
                                           r.get(origin))
            seen.append(results[1])
            return seen
        finally:
            await r.aclose()

    seen = asyncio.run(work())
    assert seen[0] == "replica"
    assert seen[1:21] == [True] * 20
    assert seen[21] == "piped"
    assert seen[22] is True
    assert outcomes()["local"] >= 1 and outcomes()["fallback_wait"] >= 20


@pytest.mark.parametrize("scope", ["request", "connection"])
def test_a_request_that_wrote_reads_from_the_primary_through_any_client(
        configure, origin, scope):
    flask = pytest.importorskip("flask")
    resil.start(configure(read_your_writes=scope))
    writer, reader = client(decode_responses=True), client(decode_responses=True)
    assert wait_for(lambda: reader.get(origin) == "replica")
    app = flask.Flask(__name__)

    @app.post("/write")
    def write():
        writer.set(origin + "-req", "new")
        return {"seen": reader.get(origin)}     # another client, another pool

    seen = app.test_client().post("/write").json["seen"]
    assert seen == ("primary" if scope == "request" else "replica")
    assert reader.get(origin) == "replica"      # outside the request: local again
