"""Stateless Django instances: one plain Django project (contrib.auth, contrib.sessions,
SQLite for the users; no setting of resil) served by `manage.py runserver` under
`resil-run`, one instance in unit a and one in unit b, their sessions in a real Redis pair.

One cookie jar, no sticky routing: a login on one instance, a cart filled on the other,
read on the first; a planned Redis switch there and back while the cart is written; a
`kill -9` of one instance. Then the same project with Redis unreachable, with
`on_error = "fail"` and `"degrade"`; and the explicit set-up (INSTALLED_APPS and
SESSION_ENGINE, no `resil-run`) sharing the same sessions.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests

from resil.sessions import KEY_PREFIX, new_id, sign, unsign
from servers.config import PASSWORDS, resil_toml
from servers.ports import free_port
from servers.redis import RedisPair

BIN = Path(sys.executable).parent
SECRET = "shop-secret-" + "s" * 40

SETTINGS = textwrap.dedent(f"""
    from pathlib import Path

    BASE = Path(__file__).resolve().parent
    SECRET_KEY = "{SECRET}"
    DEBUG = False
    ALLOWED_HOSTS = ["127.0.0.1"]
    USE_TZ = True
    INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth",
                      "django.contrib.sessions"]
    MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware",
                  "django.contrib.auth.middleware.AuthenticationMiddleware"]
    ROOT_URLCONF = "shop_urls"
    DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3",
                               "NAME": BASE / "db.sqlite3"}}}}
    SESSION_COOKIE_AGE = 3600
""")

# The documented explicit set-up, for a project run without resil-run.
EXPLICIT = textwrap.dedent("""
    from shop_settings import *  # noqa: F403

    INSTALLED_APPS = [*INSTALLED_APPS, "resil.contrib.django"]  # noqa: F405
    SESSION_ENGINE = "resil.contrib.django.sessions"
""")

URLS = textwrap.dedent("""
    import os
    from django.contrib.auth import authenticate, login, logout
    from django.http import JsonResponse
    from django.urls import path

    def answer(request, **extra):
        return JsonResponse({"unit": os.environ["APP_UNIT"], **extra})

    def do_login(request):
        user = authenticate(request, username=request.POST["username"],
                            password=request.POST["password"])
        if user is None:
            return JsonResponse({"error": "bad credentials"}, status=403)
        login(request, user)
        return answer(request, user=user.username)

    def do_logout(request):
        logout(request)
        return answer(request)

    def add(request, item):
        request.session["cart"] = request.session.get("cart", []) + [item]
        return answer(request, cart=request.session["cart"])

    def me(request):
        user = request.user.username if request.user.is_authenticated else None
        return answer(request, user=user, cart=request.session.get("cart", []))

    urlpatterns = [path("login", do_login), path("logout", do_logout),
                   path("cart/<item>", add), path("me", me)]
""")

MANAGE = textwrap.dedent("""
    import os
    import sys

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_settings")
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)
""")


@dataclass
class Instance:
    name: str
    port: int
    proc: subprocess.Popen[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start(folder: Path, name: str, config: Path | None, *, resil_run: bool = True,
          **env: str) -> Instance:
    port = free_port()
    command = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    if resil_run:
        assert config is not None
        command = [str(BIN / "resil-run"), "--config", str(config), *command]
    else:
        env = {**env, "RESIL_CONFIG": str(config)}
    proc = subprocess.Popen(
        command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
             "APP_UNIT": name, **env})
    return Instance(name, port, proc)


def wait_serving(*instances: Instance) -> None:
    for instance in instances:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{instance.url}/me", timeout=2)
                break
            except requests.ConnectionError:
                if instance.proc.poll() is not None or time.monotonic() > deadline:
                    stop(instance)
                    raise AssertionError(instance.proc.stderr.read()) from None  # type: ignore
                time.sleep(0.1)


def stop(instance: Instance, sig: int = signal.SIGTERM) -> str:
    """Stop the instance; return what it wrote on stderr."""
    if instance.proc.poll() is None:
        os.killpg(instance.proc.pid, sig)
    instance.proc.wait(10)
    return instance.proc.stderr.read()      # type: ignore[union-attr]


def manage(folder: Path, *args: str) -> None:
    out = subprocess.run([sys.executable, "manage.py", *args], cwd=folder, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "RESIL_DISABLED": "1"})
    assert out.returncode == 0, out.stdout + out.stderr


@dataclass
class Shop:
    folder: Path
    pair: RedisPair
    a: Instance
    b: Instance
    explicit: Instance


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Iterator[Shop]:
    folder = tmp_path_factory.mktemp("django-sessions")
    for name, text in {"manage.py": MANAGE, "shop_settings.py": SETTINGS,
                       "shop_explicit.py": EXPLICIT, "shop_urls.py": URLS}.items():
        (folder / name).write_text(text)
    manage(folder, "migrate", "--noinput")
    manage(folder, "shell", "-c", "from django.contrib.auth.models import User; "
                                  "User.objects.create_user('ada', password='pw')")
    with RedisPair(folder / "redis") as pair:
        base = resil_toml((folder / "state.json").as_uri(), redis=pair) + \
            '\n[sessions]\nresource = "cache"\n'
        (folder / "a.toml").write_text(base)
        (folder / "b.toml").write_text(base.replace('unit = "a"', 'unit = "b"', 1))
        instances = [start(folder, "a", folder / "a.toml"), start(folder, "b", folder / "b.toml"),
                     start(folder, "explicit", folder / "a.toml", resil_run=False,
                           DJANGO_SETTINGS_MODULE="shop_explicit")]
        try:
            wait_serving(*instances)
            yield Shop(folder, pair, *instances)
        finally:
            for instance in instances:
                stop(instance, signal.SIGKILL)


def switch(folder: Path, to: str) -> None:
    out = subprocess.run([str(BIN / "resil"), "db", "switch", "cache", "--to", to, "--config",
                          str(folder / "a.toml")], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **PASSWORDS})
    assert out.returncode == 0, out.stdout + out.stderr


def test_one_session_across_instances_units_a_switch_and_a_kill(shop):
    a, b, explicit = shop.a.url, shop.b.url, shop.explicit.url
    primary = redis.Redis(port=shop.pair.primary.port)
    user = requests.Session()       # one cookie jar; cookies ignore the port
    assert user.get(f"{a}/me", timeout=5).json() == {"unit": "a", "user": None, "cart": []}
    assert "sessionid" not in user.cookies, "no session written for a mere read"

    assert user.post(f"{a}/cart/pen", timeout=5).json()["cart"] == ["pen"]
    anonymous = user.cookies["sessionid"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}\.[A-Za-z0-9_-]{27}", anonymous)
    login = user.post(f"{a}/login", data={"username": "ada", "password": "pw"}, timeout=5)
    assert login.json() == {"unit": "a", "user": "ada"}
    key = user.cookies["sessionid"]
    sid = unsign(key, [SECRET])
    assert key != anonymous and sid is not None, "login() rotated the signed key"
    assert not primary.exists(KEY_PREFIX + unsign(anonymous, [SECRET])), "old key deleted"
    stored = primary.hgetall(KEY_PREFIX + sid)
    assert stored[b"d:cart"] == b'["pen"]' and b"d:_auth_user_id" in stored
    assert 3590 < primary.ttl(KEY_PREFIX + sid) <= 3600, "SESSION_COOKIE_AGE is the TTL"

    assert user.post(f"{b}/cart/book", timeout=5).json() == {"unit": "b",
                                                            "cart": ["pen", "book"]}
    assert user.get(f"{a}/me", timeout=5).json() == {"unit": "a", "user": "ada",
                                                     "cart": ["pen", "book"]}
    for i in range(10):             # alternate without any stickiness
        target = a if i % 2 else b
        assert user.post(f"{target}/cart/{i}", timeout=5).status_code == 200
    expected = ["pen", "book", *map(str, range(10))]
    assert user.get(f"{b}/me", timeout=5).json()["cart"] == expected
    assert user.get(f"{explicit}/me", timeout=5).json() == {
        "unit": "explicit", "user": "ada", "cart": expected}, "the explicit set-up shares it"
    with sqlite3.connect(shop.folder / "db.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM django_session").fetchone() == (0,), \
            "no session went to Django's database engine"

    # Planned switches there and back while the user keeps adding to the cart.
    acked: list[str] = []
    failures: list[str] = []
    done = threading.Event()

    slowest = [0.0]

    def shopping() -> None:
        n = 0
        while not done.is_set():
            target = (a, b, explicit)[n % 3]
            began = time.monotonic()
            reply = user.post(f"{target}/cart/s{n}", timeout=10)
            slowest[0] = max(slowest[0], time.monotonic() - began)
            if reply.status_code == 200:
                acked.append(f"s{n}")
            else:
                failures.append(f"{target} {reply.status_code} {reply.text[:200]}")
            n += 1
    shopper = threading.Thread(target=shopping)
    shopper.start()
    try:
        time.sleep(0.3)
        switch(shop.folder, "b")
        assert shop.pair.replica.info("replication")["role"] == "master"
        time.sleep(0.3)
        switch(shop.folder, "a")
        time.sleep(0.3)
    finally:
        done.set()
        shopper.join()
    assert not failures, failures[:3]
    assert len(acked) > 10
    print(f"\n{len(acked)} cart writes during two switches, slowest {slowest[0] * 1000:.0f} ms")
    me = user.get(f"{a}/me", timeout=5).json()
    assert me["user"] == "ada" and me["cart"] == expected + acked, "no acknowledged write lost"
    expected = me["cart"]

    assert stop(shop.a, signal.SIGKILL) is not None
    me = user.get(f"{b}/me", timeout=5).json()
    assert me == {"unit": "b", "user": "ada", "cart": expected}
    assert user.post(f"{b}/cart/last", timeout=5).json()["cart"] == expected + ["last"]
    assert user.post(f"{b}/logout", timeout=5).status_code == 200
    assert not primary.exists(KEY_PREFIX + sid), "logout deleted the session"
    assert user.get(f"{explicit}/me", timeout=5).json()["user"] is None


def test_redis_unreachable_fail_and_degrade(shop):
    port = free_port()              # nothing listens there
    text = re.sub(r"endpoints = .*", f'endpoints = {{ a = "127.0.0.1:{port}", '
                  f'b = "127.0.0.1:{free_port()}" }}', (shop.folder / "a.toml").read_text())
    config = shop.folder / "dead.toml"
    config.write_text(text)
    failing = start(shop.folder, "fail", config)
    degrading = start(shop.folder, "degrade", config, RESIL_SESSIONS_ON_ERROR="degrade")
    try:
        wait_serving(failing, degrading)
        cookie = {"sessionid": sign(new_id(), SECRET)}
        answer = requests.get(f"{failing.url}/me", cookies=cookie, timeout=10)
        assert answer.status_code == 503 and answer.text == "session store unavailable\n"
        answer = requests.get(f"{degrading.url}/me", cookies=cookie, timeout=10)
        assert answer.status_code == 200
        assert answer.json() == {"unit": "degrade", "user": None, "cart": []}
        answer = requests.post(f"{degrading.url}/cart/x", cookies=cookie, timeout=10)
        assert answer.status_code == 503
        assert answer.text == "session store unavailable: the change was not saved\n"
        assert "sessionid" not in answer.cookies
        assert requests.get(f"{failing.url}/me", timeout=10).status_code == 200, \
            "no cookie: no session to read"
    finally:
        logs = stop(failing) + stop(degrading)
    assert "Traceback" not in logs, logs[-2000:]
    assert '"GET /me HTTP/1.1" 503' in logs and '"POST /cart/x HTTP/1.1" 503' in logs
