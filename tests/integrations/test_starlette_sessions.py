"""Starlette's SessionMiddleware, unchanged, keeps its sessions in Redis under the agent
(resil.contrib.starlette), in-process against a real Redis pair."""

from __future__ import annotations

import json
from base64 import b64encode

import itsdangerous
import pytest
import redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import resil
from resil import counters
from resil.contrib.starlette import regenerate
from resil.sessions import KEY_PREFIX, unsign
from servers.config import resil_toml
from servers.ports import free_port

SECRET = "s3cret"


@pytest.fixture
def config_path(write_config, tmp_path, redis_pair):
    return write_config(resil_toml((tmp_path / "state.json").as_uri(), redis=redis_pair)
                        + '\n[sessions]\nresource = "cache"\n')


def make_app(calls: list[str] | None = None) -> Starlette:
    async def login(request: Request):
        request.session["user"] = request.path_params["user"]
        regenerate(request.session)
        return PlainTextResponse("ok")

    async def add(request: Request):
        request.session["cart"] = [*request.session.get("cart", []),
                                   request.path_params["item"]]
        return PlainTextResponse("ok")

    async def me(request: Request):
        if calls is not None:
            calls.append("me")
        return JSONResponse({"user": request.session.get("user"),
                             "cart": request.session.get("cart", [])})

    async def logout(request: Request):
        request.session.clear()
        return PlainTextResponse("bye")

    return Starlette(routes=[Route("/login/{user}", login, methods=["POST"]),
                             Route("/cart/{item}", add, methods=["POST"]),
                             Route("/me", me), Route("/logout", logout, methods=["POST"])],
                     middleware=[Middleware(SessionMiddleware, secret_key=SECRET,
                                            max_age=3600)])


def set_cookie(answer) -> str:
    """The session cookie's value the response sets."""
    return answer.headers["set-cookie"].split(";")[0].split("=", 1)[1]


def stored(redis_pair, sid: str) -> dict[bytes, bytes]:
    return redis.Redis(port=redis_pair.primary.port).hgetall(KEY_PREFIX + sid)


def test_sessions_live_in_redis_and_any_instance_reads_them(config_path, redis_pair):
    resil.start(config_path)
    one, two = TestClient(make_app()), TestClient(make_app())   # two instances
    answer = one.post("/login/ada")
    assert answer.status_code == 200
    cookie = one.cookies["session"]
    sid = unsign(cookie, [SECRET])
    assert sid is not None, "the cookie holds only a signed id"
    assert "Max-Age=3600" in answer.headers["set-cookie"]
    assert "httponly" in answer.headers["set-cookie"].lower()
    assert stored(redis_pair, sid)[b"d:user"] == b'"ada"'
    ttl = redis.Redis(port=redis_pair.primary.port).ttl(KEY_PREFIX + sid)
    assert 3500 < ttl <= 3600                       # the middleware's max_age
    two.cookies.set("session", cookie)
    assert two.post("/cart/tea").status_code == 200
    assert one.get("/me").json() == {"user": "ada", "cart": ["tea"]}
    assert "Cookie" in one.get("/me").headers["vary"]
    assert "set-cookie" not in one.get("/me").headers     # read only: nothing written


def test_logout_deletes_the_session_and_its_id(config_path, redis_pair):
    resil.start(config_path)
    client = TestClient(make_app())
    client.post("/login/ada")
    old = client.cookies["session"]
    sid = unsign(old, [SECRET])
    answer = client.post("/logout")
    assert "expires=Thu, 01 Jan 1970" in answer.headers["set-cookie"]
    assert stored(redis_pair, sid) == {}
    thief = TestClient(make_app())
    thief.cookies.set("session", old)
    assert thief.get("/me").json() == {"user": None, "cart": []}


def test_login_regenerates_the_id(config_path, redis_pair):
    resil.start(config_path)
    client = TestClient(make_app())
    client.post("/cart/tea")
    before = unsign(client.cookies["session"], [SECRET])
    client.post("/login/ada")
    after = unsign(client.cookies["session"], [SECRET])
    assert before != after and stored(redis_pair, before) == {}
    assert client.get("/me").json() == {"user": "ada", "cart": ["tea"]}


def test_a_cookie_session_of_starlettes_own_moves_in(config_path, redis_pair):
    resil.start(config_path)
    signer = itsdangerous.TimestampSigner(SECRET)
    own = signer.sign(b64encode(json.dumps({"user": "bob"}).encode())).decode()
    client = TestClient(make_app())
    client.cookies.set("session", own)
    moved = counters.stats().get("session_moved_in", 0)
    answer = client.get("/me")
    assert answer.json() == {"user": "bob", "cart": []}
    sid = unsign(set_cookie(answer), [SECRET])
    assert sid is not None and stored(redis_pair, sid)[b"d:user"] == b'"bob"'
    assert counters.stats().get("session_moved_in", 0) == moved + 1


def test_without_a_sessions_resource_starlette_keeps_its_cookie(write_config, tmp_path,
                                                               redis_pair):
    resil.start(write_config(resil_toml((tmp_path / "state.json").as_uri(),
                                        redis=redis_pair)))
    client = TestClient(make_app())
    client.post("/login/ada")
    assert unsign(client.cookies["session"], [SECRET]) is None
    assert client.get("/me").json()["user"] == "ada"


@pytest.mark.parametrize("on_error", ["fail", "degrade"])
def test_an_unreachable_store_never_loses_a_change_silently(write_config, tmp_path,
                                                           on_error):
    dead = free_port()
    resil.start(write_config(f"""
        unit = "a"
        units = ["a"]
        [control]
        url = "{(tmp_path / 'state.json').as_uri()}"
        [resources.cache]
        kind = "redis"
        endpoints = {{ a = "127.0.0.1:{dead}" }}
        connect_timeout = 0.5
        [sessions]
        resource = "cache"
        on_error = "{on_error}"
    """))
    calls: list[str] = []
    client = TestClient(make_app(calls))
    from resil.sessions import new_id, sign
    client.cookies.set("session", sign(new_id(), SECRET))
    answer = client.get("/me")
    if on_error == "fail":
        assert answer.status_code == 503 and calls == []    # refused before the app
    else:
        assert answer.status_code == 200 and calls == ["me"]
        assert answer.json() == {"user": None, "cart": []}   # an empty session
    changed = client.post("/cart/tea")
    assert changed.status_code == 503                        # never a false "ok"
    assert "session store unavailable" in changed.text
