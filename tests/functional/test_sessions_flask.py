"""Stateless Flask instances: two instances of one plain Flask app (no resil code), one
in unit a and one in unit b, each under `resil-run`, their sessions in a real Redis pair.

One cookie jar, no sticky routing: a login on one instance, a cart filled on the other,
read on the first; a `kill -9` of one instance; a planned Redis switch mid-session.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from resil.sessions import KEY_PREFIX, unsign
from servers.config import PASSWORDS, resil_toml
from servers.ports import free_port
from servers.redis import RedisPair

BIN = Path(sys.executable).parent

APP = textwrap.dedent("""
    import os
    from flask import Flask, session

    app = Flask(__name__)
    app.secret_key = "shop-secret"

    @app.post("/login/<user>")
    def login(user):
        session["user"] = user
        return {"unit": os.environ["APP_UNIT"]}

    @app.post("/cart/<item>")
    def add(item):
        session["cart"] = session.get("cart", []) + [item]
        return {"unit": os.environ["APP_UNIT"], "cart": session["cart"]}

    @app.get("/me")
    def me():
        return {"unit": os.environ["APP_UNIT"], "user": session.get("user"),
                "cart": session.get("cart", [])}
""")


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Iterator[tuple[dict[str, int], dict[str, subprocess.Popen], Path,
                                             RedisPair]]:
    folder = tmp_path_factory.mktemp("flask-sessions")
    with RedisPair(folder / "redis") as pair:
        (folder / "app.py").write_text(APP)
        state = (folder / "state.json").as_uri()
        base = resil_toml(state, redis=pair) + '\n[sessions]\nresource = "cache"\n'
        (folder / "a.toml").write_text(base)
        (folder / "b.toml").write_text(base.replace('unit = "a"', 'unit = "b"', 1))
        ports = {"a": free_port(), "b": free_port()}
        procs = {u: start(folder, u, p) for u, p in ports.items()}
        try:
            for unit, port in ports.items():
                wait_serving(procs[unit], port)
            yield ports, procs, folder, pair
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def start(folder: Path, unit: str, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "resil-run"), "--config", str(folder / f"{unit}.toml"), "flask", "--app",
         "app", "run", "--port", str(port)], cwd=folder, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "APP_UNIT": unit})


def wait_serving(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/me", timeout=2)
            return
        except requests.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(proc.stderr.read()) from None
            time.sleep(0.1)


def test_a_session_lives_across_instances_units_a_kill_and_a_switch(shop):
    ports, procs, folder, pair = shop
    a, b = (f"http://127.0.0.1:{ports[u]}" for u in ("a", "b"))
    user = requests.Session()        # one cookie jar; cookies ignore the port
    assert user.post(f"{a}/login/ada", timeout=5).json()["unit"] == "a"
    sid = unsign(user.cookies["session"], ["shop-secret"])
    assert sid is not None, "the cookie is a signed session id, not Flask's cookie session"
    assert redis.Redis(port=pair.primary.port).hget(KEY_PREFIX + sid, "d:user") == b'"ada"'
    assert user.post(f"{b}/cart/book", timeout=5).json() == {"unit": "b", "cart": ["book"]}
    assert user.get(f"{a}/me", timeout=5).json() == {"unit": "a", "user": "ada",
                                                     "cart": ["book"]}
    for i in range(10):             # alternate without any stickiness
        target = a if i % 2 else b
        assert user.post(f"{target}/cart/{i}", timeout=5).status_code == 200
    assert user.get(f"{b}/me", timeout=5).json()["cart"] == ["book", *map(str, range(10))]

    switch = subprocess.run(
        [str(BIN / "resil"), "db", "switch", "cache", "--to", "b", "--config",
         str(folder / "a.toml")], capture_output=True, text=True, timeout=60,
        env={**os.environ, **PASSWORDS})
    assert switch.returncode == 0, switch.stdout + switch.stderr
    assert user.post(f"{a}/cart/after-switch", timeout=5).status_code == 200
    assert user.get(f"{b}/me", timeout=5).json()["cart"][-1] == "after-switch"

    os.killpg(procs["a"].pid, signal.SIGKILL)
    procs["a"].wait()
    me = user.get(f"{b}/me", timeout=5).json()
    assert me["user"] == "ada" and me["cart"][0] == "book" and len(me["cart"]) == 12
    assert user.post(f"{b}/cart/last", timeout=5).json()["cart"][-1] == "last"
