"""`resil db switch` on a Redis pair while 8 threads write: no error, no lost write."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

import resil
from functional.writers import Tally, Writers
from resil import context, counters, registry
from servers import RedisPair
from servers.config import resil_toml
from servers.ports import wait_until

RESIL = str(Path(sys.executable).parent / "resil")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with RedisPair(tmp_path_factory.mktemp("switch-redis")) as pair:
        yield pair


@pytest.fixture
def config(pair, write_config, tmp_path):
    return write_config(resil_toml((tmp_path / "state.json").as_uri(), redis=pair))


def switch(config: Path, to: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RESIL, "db", "switch", "cache", "--to", to, "--config", str(config),
                           *extra], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ))


def start_writers(client: redis.Redis) -> Writers:
    writers = Writers()
    for i in range(4):
        def incr(tally: Tally, seq: int) -> None:
            value = client.incr(f"count:{tally.name}")
            tally.acked.append(("incr", tally.name, value))
        writers.add(f"incr{i}", incr)
    for i in range(4):
        def setter(tally: Tally, seq: int) -> None:
            client.set(f"set:{tally.name}:{seq}", seq)
            tally.acked.append(("set", tally.name, seq))
        writers.add(f"set{i}", setter)
    writers.start()
    return writers


def test_switch_under_load_ten_times(pair, config):
    resil.start(config)
    client = redis.Redis(host="cache", socket_timeout=10, decode_responses=True)
    for key in client.keys("count:*") + client.keys("set:*"):
        client.delete(key)
    writers = start_writers(client)
    try:
        time.sleep(0.3)
        for i, to in enumerate(["b", "a"] * 5):
            before, began = writers.acked, time.monotonic()
            out = switch(config, to)
            assert out.returncode == 0, out.stdout + out.stderr
            time.sleep(0.3)
            assert writers.acked > before, f"switch {i + 1}: writes did not resume"
            assert not writers.errors, writers.errors[:3]
            assert max(writers.pauses_since(began)) < 1.0, (writers.pauses_since(began), out.stdout)
    finally:
        writers.stop()
    assert not writers.errors, writers.errors[:3]
    primary = pair.primary.client()
    bypass = context.bypass()      # read the server itself, not what resil routes to
    bypass.__enter__()
    assert primary.info("replication")["role"] == "master"
    for tally in writers.tallies:
        if tally.name.startswith("incr"):
            # Every acknowledged INCR is counted: the counter equals the last value acked,
            # and the acked values are exactly 1..n (no increment lost or applied twice).
            values = [a[2] for a in tally.acked]
            assert values == list(range(1, len(values) + 1)), tally.name
            assert int(primary.get(f"count:{tally.name}")) == values[-1]
        else:
            keys = {f"set:{tally.name}:{a[2]}" for a in tally.acked}
            assert all(primary.exists(k) for k in keys), tally.name
    bypass.__exit__()
    assert writers.acked > 1000
    print(f"\nacked {writers.acked}, longest pause {writers.longest_pause() * 1000:.0f} ms, "
          f"stats {counters.stats()}")


def test_aborted_switch_keeps_the_old_primary(pair, config):
    resil.start(config)
    client = redis.Redis(host="cache", socket_timeout=10)
    writers = start_writers(client)
    try:
        time.sleep(0.2)
        out = switch(config, "a", "--dry-run")     # "a" is already the primary
        assert out.returncode == 1 and "already the primary" in out.stderr
        with context.bypass():     # else resil routes this to the primary
            pair.replica.client().execute_command("REPLICAOF", "NO", "ONE")   # breaks precheck
        out = switch(config, "b")
        assert out.returncode == 1 and "not a replica" in out.stderr
        before = writers.acked
        time.sleep(0.3)
        assert writers.acked > before
    finally:
        writers.stop()
        with context.bypass():
            pair.replica.client().execute_command("REPLICAOF", "127.0.0.1",
                                                  str(pair.primary.port))
    assert not writers.errors, writers.errors[:3]


def test_a_write_held_by_a_switch_takes_over_a_connection_made_during_the_lock(pair, config):
    """While the switch holds writes, a spare connection to the target opens with the
    pool's own arguments (database, client name); at the publish the pooled connection
    takes it over (no connect then, when every held write would connect at once): the
    same object, now on the new primary, and the write runs once, there."""
    resil.start(config)
    client = redis.Redis(host="cache", db=3, client_name="held-app", socket_timeout=10)
    client.get("warm")                                  # one pooled connection, on a
    pool = client.connection_pool
    (conn,) = pool._available_connections
    taken = counters.stats().get("redis_spares_taken", 0)
    switching = subprocess.Popen([RESIL, "db", "switch", "cache", "--to", "b", "--config",
                                  str(config), "--pause-after", "drain:0.5",
                                  "--drain-timeout", "1"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env=dict(os.environ))
    try:
        deadline = time.monotonic() + 10
        while "cache" not in registry.runtime().state.locks:
            if time.monotonic() > deadline or switching.poll() is not None:
                switching.kill()
                raise AssertionError(f"the switch never locked: {switching.communicate()[0]}")
            time.sleep(0.01)
        assert client.incr("held") == 1                 # held, then moved
        name = client.client_getname()
        checked_out = pool.get_connection()
        port = checked_out.port
        pool.release(checked_out)
    finally:
        out = switching.communicate(timeout=30)[0]
    assert switching.returncode == 0, out
    assert (name, port) == ("held-app", pair.replica.port)
    assert pool._available_connections == [conn]        # the same object, moved
    assert conn._sock.gettimeout() == 10                # with its own socket timeout
    assert counters.stats().get("redis_spares_taken", 0) == taken + 1
    with context.bypass():
        assert pair.replica.client(db=3).get("held") == "1"     # once, on the new primary
    assert switch(config, "a").returncode == 0


def named(server, name: str) -> int:
    """How many client connections called ``name`` the Redis ``server`` has now."""
    with context.bypass():
        return sum(1 for c in server.client().client_list() if c.get("name") == name)


def test_spares_open_ahead_of_the_lock_and_those_not_taken_close_at_the_publish(pair, config):
    """A planned switch first publishes its intent: the agent opens a spare to the target
    for every pooled connection while writes still flow, so the handshakes are over
    before the lock holds anything. A held write takes one of them (not a new one); the
    others are closed at the publish."""
    resil.start(config)
    client = redis.Redis(host="cache", db=3, client_name="prep-app", socket_timeout=10)
    pool = client.connection_pool
    conns = [pool.get_connection() for _ in range(3)]   # three pooled connections on a
    for conn in conns:
        pool.release(conn)
    stats = counters.stats()
    prepared, taken = stats.get("spares_prepared", 0), stats.get("redis_spares_taken", 0)
    failures = stats.get("redis_spare_failures", 0)
    switching = subprocess.Popen([RESIL, "db", "switch", "cache", "--to", "b", "--config",
                                  str(config), "--pause-after", "lock:0.5"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env=dict(os.environ))
    try:
        assert wait_until(lambda: "cache" in registry.runtime().state.locks
                          or switching.poll() is not None, 10)
        # At least: the pools of earlier tests that are still alive get theirs too.
        assert counters.stats().get("spares_prepared", 0) >= prepared + 3
        assert named(pair.replica, "prep-app") == 3     # open before any write was held
        assert client.incr("prepared") == 1             # held, then on a spare
    finally:
        out = switching.communicate(timeout=30)[0]
    assert switching.returncode == 0, out
    assert "\nspares " in out and "1/1 agent(s) opened spare connections to b" in out, out
    assert counters.stats().get("redis_spares_taken", 0) == taken + 1
    assert counters.stats().get("redis_spare_failures", 0) == failures
    assert wait_until(lambda: named(pair.replica, "prep-app") == 1, 10), \
        "the two spares no write took were not closed"
    with context.bypass():
        assert pair.replica.client(db=3).get("prepared") == "1"
    assert switch(config, "a").returncode == 0


def test_the_spares_a_switch_discards_are_freed_at_once(pair, config, monkeypatch):
    """Taken or closed, a spare connection is freed by reference counting, not left to
    the cyclic collector: every switch discards about as many per process as their pools
    have connections, and left to the collector they made every process's full
    collection fall due in the same switch (a stall of all writers at once)."""
    import gc
    import weakref

    from resil.integrations import _spare
    resil.start(config)
    client = redis.Redis(host="cache", client_name="freed-app", socket_timeout=10)
    pool = client.connection_pool
    conns = [pool.get_connection() for _ in range(3)]
    for conn in conns:
        pool.release(conn)
    refs: list[weakref.ref[object]] = []
    add = _spare.PREPARED.add

    def recording_add(resource: str, owner: object, spare: _spare.Spare) -> None:
        refs.append(weakref.ref(spare.conn))
        add(resource, owner, spare)

    monkeypatch.setattr(_spare.PREPARED, "add", recording_add)
    gc.disable()
    try:
        switching = subprocess.Popen([RESIL, "db", "switch", "cache", "--to", "b",
                                      "--config", str(config), "--pause-after", "lock:0.3"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=dict(os.environ))
        try:
            assert wait_until(lambda: "cache" in registry.runtime().state.locks
                              or switching.poll() is not None, 10)
            assert client.incr("freed") == 1            # held, then on a spare
        finally:
            out = switching.communicate(timeout=30)[0]
        assert switching.returncode == 0, out
        assert wait_until(lambda: named(pair.replica, "freed-app") == 1, 10)
        assert len(refs) >= 3
        assert [ref for ref in refs if ref() is not None] == []
    finally:
        gc.enable()
    assert switch(config, "a").returncode == 0


def test_spares_of_a_switch_that_never_locks_close_when_its_intent_lapses(pair, config):
    """The operator's switch dies between its intent and its lock: the spares the agents
    opened are closed once the intent lapses, and writes never stopped."""
    from resil.config import load_config
    from resil.control import open_control_plane
    from resil.state import ControlState, Intent
    resil.start(config)
    client = redis.Redis(host="cache", client_name="lapse-app", socket_timeout=10)
    client.set("lapse", 1)
    cfg = load_config(config)
    plane = open_control_plane(cfg.control_url, cfg.topology, cfg.signing_key)
    stored = plane.load()
    state = stored.state if stored else ControlState.initial(cfg.topology)
    plane.publish(state.evolve(intents={"cache": Intent("gone/1", "b", time.time() + 1.0)}),
                  issuer="test")
    assert wait_until(lambda: named(pair.replica, "lapse-app") == 1, 10)
    assert client.incr("lapse") == 2                    # nothing is held by an intent
    assert wait_until(lambda: named(pair.replica, "lapse-app") == 0, 5), \
        "the spare outlived the intent"
    assert named(pair.primary, "lapse-app") == 1


def test_readonly_from_a_demoted_primary_is_a_switch_signal(pair, config):
    """A write refused with READONLY waits for the new primary and is retried there once."""
    import threading

    from resil.config import load_config
    from resil.control import open_control_plane
    from resil.state import ControlState
    resil.start(config)
    client = redis.Redis(host="cache", socket_timeout=5)
    client.set("before", 1)
    old, new = pair.primary.client(), pair.replica.client()
    cfg = load_config(config)
    plane = open_control_plane(cfg.control_url, cfg.topology, None)
    # Someone else demoted the primary behind resil's back; the new state comes 0.3 s later.
    with context.bypass():     # (connections open lazily: the commands go inside)
        new.execute_command("REPLICAOF", "NO", "ONE")
        old.execute_command("REPLICAOF", "127.0.0.1", str(pair.replica.port))
    timer = threading.Timer(0.3, lambda: plane.publish(
        ControlState.initial(cfg.topology).evolve(primaries={"cache": "b"}), issuer="test"))
    timer.start()
    try:
        began = time.monotonic()
        assert client.set("after", 2)                   # READONLY, then retried on b
        assert 0.25 < time.monotonic() - began < 2
        with context.bypass():
            assert new.get("after") == "2"
        assert counters.stats().get("redis_replayed") == 1
    finally:
        timer.join()
        with context.bypass():
            old.execute_command("REPLICAOF", "NO", "ONE")   # put the pair back: a primary
            new.execute_command("REPLICAOF", "127.0.0.1", str(pair.primary.port))


def test_asyncio_client_follows_switches_without_errors(pair, config):
    import asyncio

    import redis.asyncio
    resil.start(config)

    async def main() -> tuple[dict[str, int], list[str], int]:
        client = redis.asyncio.Redis(host="cache", socket_timeout=10)
        for key in await client.keys("acount:*"):
            await client.delete(key)
        acked: dict[str, int] = {}
        errors: list[str] = []
        stop = asyncio.Event()

        async def writer(name: str) -> None:
            while not stop.is_set():
                try:
                    acked[name] = int(await client.incr(f"acount:{name}"))
                except Exception as exc:
                    errors.append(repr(exc))
                    await asyncio.sleep(0.01)
        tasks = [asyncio.create_task(writer(f"t{i}")) for i in range(4)]
        await asyncio.sleep(0.3)
        for to in ("b", "a", "b", "a"):
            out = await asyncio.to_thread(switch, config, to)
            assert out.returncode == 0, out.stdout + out.stderr
            await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*tasks)
        port = int((await client.config_get("port"))["port"])
        await client.aclose()
        return acked, errors, port

    acked, errors, port = asyncio.run(main())
    assert not errors, errors[:3]
    assert port == pair.primary.port
    with context.bypass():
        primary = pair.primary.client()
        for name, value in acked.items():       # every acknowledged INCR is there, once
            assert int(primary.get(f"acount:{name}")) == value
    assert counters.stats().get("redis_connections_moved", 0) >= 4
