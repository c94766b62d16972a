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
from resil import registry
from servers import RedisPair

RESIL = str(Path(sys.executable).parent / "resil")
CONFIG = """
unit = "a"
[control]
url = "{state}"
poll_interval = 0.01
heartbeat_interval = 0.2
[resources.cache]
kind = "redis"
primary = "a"
endpoints = {{ a = "127.0.0.1:{a}", b = "127.0.0.1:{b}" }}
aliases = ["cache"]
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with RedisPair(tmp_path_factory.mktemp("switch-redis")) as pair:
        yield pair


@pytest.fixture
def config(pair, write_config, tmp_path):
    return write_config(CONFIG.format(state=(tmp_path / "state.json").as_uri(),
                                      a=pair.primary.port, b=pair.replica.port))


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
    with registry.bypass():
        primary = pair.primary.client()
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
    assert writers.acked > 1000
    print(f"\nacked {writers.acked}, longest pause {writers.longest_pause() * 1000:.0f} ms, "
          f"stats {registry.stats()}")


def test_aborted_switch_keeps_the_old_primary(pair, config):
    resil.start(config)
    client = redis.Redis(host="cache", socket_timeout=10)
    writers = start_writers(client)
    try:
        time.sleep(0.2)
        out = switch(config, "a", "--dry-run")     # "a" is already the primary
        assert out.returncode == 1 and "already the primary" in out.stderr
        with registry.bypass():     # else resil routes this to the primary
            pair.replica.client().execute_command("REPLICAOF", "NO", "ONE")   # breaks precheck
        out = switch(config, "b")
        assert out.returncode == 1 and "not a replica" in out.stderr
        before = writers.acked
        time.sleep(0.3)
        assert writers.acked > before
    finally:
        writers.stop()
        with registry.bypass():
            pair.replica.client().execute_command("REPLICAOF", "127.0.0.1",
                                                  str(pair.primary.port))
    assert not writers.errors, writers.errors[:3]
