"""A switch process killed (`kill -9`) or stopped (SIGTERM) at its later steps, for real.

`resil db switch --pause-after STEP:S` stops the switch for S seconds after STEP, with
writes held, so the signal lands exactly there:

- after fence (the old primary read-only or write-paused, nothing promoted): SIGTERM
  rolls back at once; after `kill -9` the lease lapses (3 s) and `resil monitor` rolls
  back from the servers (unfences the old primary, which no other server replaces);
- after promote (the target takes writes, the old primary fenced): SIGTERM lets the
  switch finish; after `kill -9` the monitor finishes it (publishes the promoted one)
  and retires the old one (Redis: its write pause ended, still refusing writes).

Every time: held writes resume within the lease + 1 s of the signal, no client error,
no acknowledged write lost, and a watcher polling both servers every 20 ms never sees
two writable primaries.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

import resil
from functional.writers import OneWriter
from resil import context
from resil.config import load_config
from resil.control import open_control_plane
from resil.ops.locks import TTL
from servers import MariaDBPair, RedisPair
from servers.config import PASSWORDS, resil_toml

pytestmark = pytest.mark.adversarial

BIN = Path(sys.executable).parent
CASES = [(step, how) for step in ("fence", "promote") for how in ("SIGKILL", "SIGTERM")]


def published(config: Path) -> tuple[dict[str, str], dict[str, object]]:
    cfg = load_config(config)
    stored = open_control_plane(cfg.control_url, cfg.topology, cfg.signing_key).load()
    return (dict(stored.state.primaries), dict(stored.state.locks)) if stored else ({}, {})


class Watcher:
    """Polls whether each server accepts writes; counts moments when both do."""

    def __init__(self, writable: dict[str, Callable[[], bool]]) -> None:
        self.writable = writable
        self.both = 0
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _check(self, unit: str) -> bool:
        try:
            return self.writable[unit]()
        except Exception:               # killed connections, a server mid-promotion
            return False

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            seen = [unit for unit in self.writable if self._check(unit)]
            self.rounds += 1
            if len(seen) > 1:
                # The servers are asked one after the other: the first may have been
                # fenced between its answer and the last one's promotion. Both were
                # writable at once only if the first still is after the last said so.
                self.both += any(self._check(unit) for unit in seen[:-1])

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def run_and_signal(config: Path, resource: str, step: str, how: str,
                   log: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """Start a switch to b that pauses after ``step``; send ``how`` during the pause;
    start a monitor (for an orphaned lock). Returns the switch's result and when the
    signal was sent."""
    monitor = subprocess.Popen(
        [str(BIN / "resil"), "monitor", "--config", str(config), "--interval", "0.2",
         "--failures", "2", "--timeout", "0.5", "--lease-ttl", "2"],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, env={**os.environ, **PASSWORDS})
    try:
        proc = subprocess.Popen(
            [str(BIN / "resil"), "db", "switch", resource, "--to", "b", "--config",
             str(config), "--drain-timeout", "1", "--pause-after", f"{step}:1.5"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **PASSWORDS})
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:            # the switch flushes every line
            lines.append(line)
            if line.startswith("pausing"):
                break
        else:
            pytest.fail("the switch never paused:\n" + "".join(lines) + proc.stderr.read())
        time.sleep(0.2)
        proc.send_signal(getattr(signal, how))
        sent = time.monotonic()
        out, err = proc.communicate(timeout=30)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, "".join(lines) + out,
                                             err)
        deadline = time.monotonic() + 10
        while published(config)[1]:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        time.sleep(0.5)
        return result, sent
    finally:
        monitor.terminate()
        monitor.wait(10)


def check_outcome(result: subprocess.CompletedProcess[str], step: str, how: str,
                  log: Path, config: Path) -> str:
    """The switch's exit and the monitor's word agree with the step; the new primary."""
    text = result.stdout + result.stderr
    assert "Traceback" not in text, text
    monitor = log.read_text()
    if how == "SIGKILL":
        assert result.returncode == -signal.SIGKILL, text
        said = "orphaned switch rolled back" if step == "fence" else \
            "orphaned switch finished: primary b"
        assert said in monitor, monitor
        assert f"at step {step}) outlived its holder's lease" in monitor, monitor
    elif step == "fence":
        assert result.returncode == 1, text
        assert "interrupted by SIGTERM; rolled back" in result.stderr, text
    else:
        assert result.returncode == 0, text
        assert "SIGTERM arrived after promote and waited for the switch to finish" \
            in result.stderr, text
    assert "came back writable" not in monitor, monitor
    primary = published(config)[0][next(iter(published(config)[0]))]
    assert primary == ("a" if step == "fence" else "b"), (primary, text, monitor)
    return primary


def check_writes(writer, watcher: Watcher, result: subprocess.CompletedProcess[str],
                 sent: float, what: str) -> None:
    """Held writes resumed within the lease + 1 s of the signal, none failed, and the
    watcher (which really ran) never saw two writable servers."""
    after = [t for t in writer.times if t > sent]
    assert after, "writes never resumed"
    resumed = after[0] - sent
    print(f"\n{what}: writes resumed {resumed:.2f} s after the signal; "
          f"{watcher.rounds} watcher rounds")
    assert resumed <= TTL + 1.0, (resumed, result.stdout)
    assert watcher.both == 0 and watcher.rounds > 10
    assert not writer.errors, writer.errors[:3]


# --------------------------------------------------------------------------- MySQL

@pytest.fixture
def mysql(tmp_path):
    with MariaDBPair(tmp_path / "mysql") as pair:
        pair.primary.root_sql("CREATE TABLE app.w (seq INT PRIMARY KEY)")
        pair.wait_caught_up()
        yield pair


def mysql_writable(server) -> Callable[[], bool]:
    """Whether ``server`` accepts writes, on one root connection (re-opened when a fence
    cuts it)."""
    held: list = []

    def writable() -> bool:
        try:
            if not held:
                held.append(server._root_connection(1.0))
            with held[0].cursor() as cur:
                cur.execute("SELECT @@read_only")
                return int(cur.fetchone()[0]) == 0
        except Exception:
            held.clear()
            raise
    return writable


@pytest.mark.parametrize("step,how", CASES)
def test_mysql_switch_signalled_after(mysql, write_config, tmp_path, monkeypatch, step, how):
    for key, value in PASSWORDS.items():
        monkeypatch.setenv(key, value)
    config = write_config(resil_toml((tmp_path / "state.json").as_uri(), mysql=mysql))
    resil.start(config)
    log = tmp_path / "monitor.log"
    with Watcher({"a": mysql_writable(mysql.primary), "b": mysql_writable(mysql.replica)}) \
            as watcher, OneWriter() as writer:
        time.sleep(0.3)
        result, sent = run_and_signal(config, "orders-db", step, how, log)
    primary = check_outcome(result, step, how, log, config)
    check_writes(writer, watcher, result, sent, f"{how} after {step}")
    server = mysql.primary if primary == "a" else mysql.replica
    other = mysql.replica if primary == "a" else mysql.primary
    assert mysql_writable(server)() and not mysql_writable(other)()
    rows = {r[0] for r in server.root_sql("SELECT seq FROM app.w")}
    assert set(writer.acked) <= rows


# --------------------------------------------------------------------------- Redis

class RedisWriter:
    """One redis-py client on ``cache`` (through the agent): ``SET w:<seq>`` every 10 ms."""

    def __init__(self) -> None:
        self.acked: list[int] = []
        self.times: list[float] = []
        self.errors: list[Exception] = []
        self.stop = threading.Event()
        self.client = redis.Redis(host="cache", socket_timeout=10)
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        seq = 0
        while not self.stop.is_set():
            seq += 1
            try:
                self.client.set(f"w:{seq}", seq)
                self.acked.append(seq)
                self.times.append(time.monotonic())
            except Exception as exc:
                self.errors.append(exc)
            time.sleep(0.01)

    def __enter__(self) -> RedisWriter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(15)


def redis_writable(server) -> Callable[[], bool]:
    def writable() -> bool:
        with context.bypass():
            client = server.client(socket_timeout=1)
            try:
                if client.info("replication")["role"] != "master":
                    return False
                fence = int(client.config_get("min-replicas-to-write")["min-replicas-to-write"])
                return fence < 1000000
            finally:
                client.close()
    return writable


@pytest.mark.parametrize("step,how", CASES)
def test_redis_switch_signalled_after(write_config, tmp_path, step, how):
    with RedisPair(tmp_path / "redis") as pair:
        config = write_config(resil_toml((tmp_path / "state.json").as_uri(), redis=pair))
        resil.start(config)
        log = tmp_path / "monitor.log"
        with Watcher({"a": redis_writable(pair.primary), "b": redis_writable(pair.replica)}) \
                as watcher, RedisWriter() as writer:
            time.sleep(0.3)
            result, sent = run_and_signal(config, "cache", step, how, log)
        primary = check_outcome(result, step, how, log, config)
        check_writes(writer, watcher, result, sent, f"{how} after {step}")
        server, other = (pair.primary, pair.replica) if primary == "a" else \
            (pair.replica, pair.primary)
        assert redis_writable(server)() and not redis_writable(other)()
        with context.bypass():
            client = server.client()
            missing = [s for s in writer.acked if not client.exists(f"w:{s}")]
            client.close()
        assert not missing, missing[:5]
