"""uWSGI with two workers under resil-run: every worker routes, follows signals and
reports as an agent of its own (uWSGI forks in C, past Python's fork hooks)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from resil.config import load_config
from resil.control import open_control_plane
from servers.ports import free_port

BIN = Path(sys.executable).parent

APP = textwrap.dedent("""
    import os, threading, time
    import redis

    # Without --lazy-apps this runs in the master, before the workers are forked: the
    # master's agent starts watching, and each worker must become an agent of its own.
    redis.Redis(host="cache").ping()

    def application(environ, start_response):
        time.sleep(0.3)     # keep a worker busy so that concurrent requests spread
        port = redis.Redis(host="cache").config_get("port")["port"]
        # CPython's fork hooks ran in this worker: the master's threads are gone from it.
        announced = not any(t.name == "resil-admin" for t in threading.enumerate())
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{os.getpid()} {port} {announced}".encode()]
""")


def get(url: str) -> tuple[int, int]:
    with urllib.request.urlopen(url, timeout=10) as response:
        pid, port, announced = response.read().decode().split()
    assert announced == "True", "uWSGI forked past CPython's fork hooks"
    return int(pid), int(port)


def sample(url: str, n: int = 6) -> set[tuple[int, int]]:
    with ThreadPoolExecutor(n) as pool:
        return set(pool.map(get, [url] * n))


@pytest.mark.parametrize("mode", [[], ["--lazy-apps"], ["--enable-threads"],
                                  ["--threads", "4"]],
                         ids=["default", "lazy-apps", "enable-threads", "threads"])
def test_two_workers_route_follow_a_switch_and_report_as_themselves(
        pair_config, redis_pair, publish, tmp_path, mode):
    (tmp_path / "app.py").write_text(APP)
    admin = free_port()
    pair_config.write_text(pair_config.read_text().replace(
        'listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{admin}"'))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "RESIL_CONFIG": str(pair_config)}
    proc = subprocess.Popen([str(BIN / "resil-run"), "uwsgi", "--http", f"127.0.0.1:{port}",
                             "--wsgi-file", "app.py", "--master", "--processes", "2",
                             "--die-on-term", "--disable-logging", *mode],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                get(url)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()         # its stderr ends only when it does
                    raise AssertionError(proc.communicate()[1][-3000:]) from None
                time.sleep(0.1)
        seen = sample(url)
        workers = {pid for pid, _ in seen}
        assert len(workers) == 2, seen                            # both workers answered
        assert {p for _, p in seen} == {redis_pair.primary.port}
        # One admin endpoint for the instance, served by the master (resil-run exec'd
        # uwsgi, so the master is the process we started); workers serve none.
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/healthz", timeout=5) as r:
            assert json.loads(r.read())["pid"] == proc.pid
        publish(cache="b")
        time.sleep(0.3)
        seen = sample(url)
        assert {p for _, p in seen} == {redis_pair.replica.port}  # each worker's watch runs
        # Each worker reports as an agent of its own, a worker of the master's: a switch
        # waits for each of them, not for one shared heartbeat.
        config = load_config(pair_config)
        plane = open_control_plane(config.control_url, config.topology, config.signing_key)
        master = f"{socket.gethostname()}:{proc.pid}"
        deadline = time.monotonic() + 5
        while True:
            beats = {b["pid"]: b for b in plane.agents() if b.get("parent") == master}
            if workers <= set(beats) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert workers <= set(beats), (workers, plane.agents())
        assert all(beats[pid]["id"] != master for pid in workers)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, proc.stderr.read()[-3000:]
