"""gunicorn with two workers under resil-run: every worker routes, and follows signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from servers.ports import free_port

BIN = Path(sys.executable).parent

APP = textwrap.dedent("""
    import os, time
    import redis

    # With --preload this runs in the master before fork: its watch thread starts there
    # and does not survive fork(), so each worker must start its own.
    redis.Redis(host="cache").ping()

    def app(environ, start_response):
        time.sleep(0.3)     # keep a worker busy so that concurrent requests spread
        port = redis.Redis(host="cache").config_get("port")["port"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{os.getpid()} {port}".encode()]
""")


def get(url: str) -> tuple[int, int]:
    with urllib.request.urlopen(url, timeout=10) as response:
        pid, port = response.read().decode().split()
    return int(pid), int(port)


def sample(url: str, n: int = 6) -> set[tuple[int, int]]:
    with ThreadPoolExecutor(n) as pool:
        return set(pool.map(get, [url] * n))


@pytest.mark.parametrize("preload", [False, True], ids=["lazy", "preload"])
def test_two_workers_route_and_follow_a_switch(pair_config, redis_pair, publish, tmp_path,
                                               preload):
    (tmp_path / "app.py").write_text(APP)
    admin = free_port()
    pair_config.write_text(pair_config.read_text().replace(
        'listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{admin}"'))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([str(BIN / "resil-run"), "gunicorn", "-w", "2", "-b",
                             f"127.0.0.1:{port}", *(["--preload"] if preload else []),
                             "app:app"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                get(url)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.1)
        seen = sample(url)
        assert len({pid for pid, _ in seen}) == 2, seen           # both workers answered
        assert {p for _, p in seen} == {redis_pair.primary.port}
        # One admin endpoint for the instance, served by the master (resil-run exec'd
        # gunicorn, so the master is the process we started); workers serve none.
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/healthz", timeout=5) as r:
            assert json.loads(r.read())["pid"] == proc.pid
        publish(cache="b")
        time.sleep(0.3)
        seen = sample(url)
        assert len({pid for pid, _ in seen}) == 2, seen
        assert {p for _, p in seen} == {redis_pair.replica.port}  # each worker's watch runs
        # The workers' counters add up in the master's /metrics (through their heartbeats).
        deadline = time.monotonic() + 5
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
                text = r.read().decode()
            moved = [line for line in text.splitlines()
                     if line.startswith('resil_events_total{event="signals_applied"}')]
            if moved and float(moved[0].split()[-1]) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert moved and float(moved[0].split()[-1]) >= 2, moved
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
    assert code == 0, proc.stderr.read()
