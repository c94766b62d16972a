"""Flask sessions in Redis (resil.contrib.flask), in-process against a real Redis pair."""

from __future__ import annotations

import datetime
import json

import flask
import pytest
import redis
from flask.sessions import SecureCookieSessionInterface

import resil
from resil import counters, registry
from resil.contrib.flask import Resil, regenerate
from resil.sessions import KEY_PREFIX, unsign
from servers.config import resil_toml


@pytest.fixture
def config_path(write_config, tmp_path, redis_pair):
    return write_config(resil_toml((tmp_path / "state.json").as_uri(), redis=redis_pair)
                        + '\n[sessions]\nresource = "cache"\n')


def make_app() -> flask.Flask:
    app = flask.Flask("shop")
    app.secret_key = "s3cret"

    @app.post("/login/<user>")
    def login(user: str):
        flask.session["user"] = user
        regenerate()
        return "ok"

    @app.post("/cart/<item>")
    def add(item: str):
        flask.session["cart"] = [*flask.session.get("cart", []), item]
        return "ok"

    @app.get("/me")
    def me():
        return {"user": flask.session.get("user"), "cart": flask.session.get("cart", [])}

    @app.post("/logout")
    def logout():
        flask.session.clear()
        return "bye"

    @app.post("/blob")
    def blob():
        flask.session["blob"] = "x" * 100_000
        return "ok"

    @app.get("/types")
    def types():
        if "when" not in flask.session:
            flask.session["when"] = datetime.datetime(2026, 11, 23, 12, 0,
                                                      tzinfo=datetime.timezone.utc)
            flask.session["pair"] = (1, 2)
            return "set"
        return {"when": flask.session["when"].isoformat(),
                "pair_is_tuple": isinstance(flask.session["pair"], tuple)}
    return app


def cookie_of(client: flask.testing.FlaskClient) -> str | None:
    found = client.get_cookie("session")
    return found.value if found else None


def test_sessions_live_in_redis_and_the_cookie_is_a_signed_id(config_path, redis_pair):
    resil.start(config_path)
    app = make_app()
    Resil(app)
    client = app.test_client()
    assert client.post("/login/ada").status_code == 200
    sid = unsign(cookie_of(client), ["s3cret"])
    assert sid is not None, "the cookie holds only a signed id"
    stored = redis.Redis(port=redis_pair.primary.port).hgetall(KEY_PREFIX + sid)
    assert json.loads(stored[b"d:user"]) == "ada"
    client.post("/cart/book")
    client.post("/cart/pen")
    assert client.get("/me").json == {"user": "ada", "cart": ["book", "pen"]}
    assert client.get("/types").data == b"set"
    assert client.get("/types").json == {"when": "2026-11-23T12:00:00+00:00",
                                          "pair_is_tuple": True}


def test_login_and_clear_rotate_the_id(config_path, redis_pair):
    resil.start(config_path)
    app = make_app()
    Resil(app)
    client = app.test_client()
    client.post("/cart/book")
    before = unsign(cookie_of(client), ["s3cret"])
    client.post("/login/ada")
    after = unsign(cookie_of(client), ["s3cret"])
    assert before != after, "a login gives the session a new id (no fixation)"
    primary = redis.Redis(port=redis_pair.primary.port)
    assert not primary.exists(KEY_PREFIX + before)
    assert client.get("/me").json == {"user": "ada", "cart": ["book"]}
    client.post("/logout")
    assert cookie_of(client) is None and not primary.exists(KEY_PREFIX + after)


def test_flask_settings_are_honoured(config_path):
    resil.start(config_path)
    app = make_app()
    app.config.update(SESSION_COOKIE_NAME="sid", SESSION_COOKIE_DOMAIN="shop.test",
                      SESSION_COOKIE_PATH="/app", SESSION_COOKIE_SECURE=True,
                      SESSION_COOKIE_SAMESITE="Strict",
                      PERMANENT_SESSION_LIFETIME=datetime.timedelta(minutes=5))

    @app.post("/perm")
    def perm():
        flask.session.permanent = True
        flask.session["x"] = 1
        return "ok"
    Resil(app)
    client = app.test_client()
    header = client.post("/perm").headers["Set-Cookie"]
    for part in ("sid=", "Domain=shop.test", "Path=/app", "Secure", "HttpOnly",
                 "SameSite=Strict", "Expires="):
        assert part in header, (part, header)
    sid = unsign(header.split(";")[0].split("=", 1)[1], ["s3cret"])
    store = app.session_interface.store
    assert 290 < store.ttl(sid) <= 300


def test_tampered_cookies_are_rejected_before_redis(config_path, redis_pair):
    resil.start(config_path)
    app = make_app()
    Resil(app)
    client = app.test_client()
    client.post("/login/ada")
    good = cookie_of(client)
    sid, mac = good.split(".")
    for forged in (sid + "." + mac[::-1], "A" * 32 + "." + mac, sid, "garbage"):
        other = app.test_client()
        other.set_cookie("session", forged)
        assert other.get("/me").json["user"] is None
    other = app.test_client()
    other.set_cookie("session", good)
    assert other.get("/me").json["user"] == "ada"
    app.config["SECRET_KEY_FALLBACKS"] = ["s3cret"]
    app.secret_key = "rotated"
    assert other.get("/me").json["user"] == "ada", "fallback secrets still open it"


def test_oversized_values_are_a_clear_error(config_path, caplog):
    resil.start(config_path)
    app = make_app()
    Resil(app)
    answer = app.test_client().post("/blob")
    assert answer.status_code == 500
    assert "max_size" in caplog.text and "'blob'" in caplog.text


def test_flask_cookie_sessions_move_in_without_a_logout(config_path, redis_pair):
    app = make_app()
    old = app.test_client()
    old.post("/login/ada")      # Flask's own signed-cookie session, before resil
    old_cookie = cookie_of(old)
    assert SecureCookieSessionInterface().get_signing_serializer(app).loads(old_cookie)
    resil.start(config_path)
    Resil(app)
    client = app.test_client()
    client.set_cookie("session", old_cookie)
    assert client.get("/me").json == {"user": "ada", "cart": []}
    assert unsign(cookie_of(client), ["s3cret"]) is not None, "the cookie was replaced"
    assert counters.stats()["session_moved_in"] == 1
    assert client.get("/me").json["user"] == "ada"


def test_unreachable_redis_fails_or_degrades(write_config, tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    for policy in ("fail", "degrade"):
        registry.reset()
        path = write_config(
            f'unit = "a"\n[control]\nurl = "{(tmp_path / "s.json").as_uri()}"\n'
            '[admin]\nlisten = "off"\n[resources.cache]\nkind = "redis"\n'
            f'endpoints = {{ a = "127.0.0.1:{dead}" }}\n'
            f'[sessions]\nresource = "cache"\non_error = "{policy}"\n')
        resil.start(path)
        app = make_app()
        Resil(app)
        client = app.test_client()
        from resil.sessions import new_id, sign
        client.set_cookie("session", sign(new_id(), "s3cret"))
        me = client.get("/me")
        add = client.post("/cart/book")
        if policy == "fail":
            assert me.status_code == 503 and add.status_code == 503
        else:
            assert me.status_code == 200 and me.json == {"user": None, "cart": []}
            assert add.status_code == 503, "a change that cannot be saved is not a success"
            assert b"not saved" in add.data


def test_concurrent_requests_keep_each_others_changes(config_path):
    import threading
    import time
    resil.start(config_path)
    app = make_app()

    @app.post("/slow-theme")
    def slow_theme():
        flask.session.get("user")           # loaded before the other request saves
        time.sleep(0.3)
        flask.session["theme"] = "dark"
        return "ok"
    Resil(app)
    client = app.test_client()
    client.post("/login/ada")
    cookie = cookie_of(client)
    results = []

    def call(path: str) -> None:
        other = app.test_client()
        other.set_cookie("session", cookie)
        results.append(other.post(path).status_code)
    slow = threading.Thread(target=call, args=("/slow-theme",))
    slow.start()
    time.sleep(0.1)
    call("/cart/book")                      # saved while /slow-theme still runs
    slow.join()
    assert results == [200, 200]
    sid = unsign(cookie, ["s3cret"])
    data = app.session_interface.store.load(sid).data
    assert data == {"user": "ada", "cart": ["book"], "theme": "dark"}


def test_resil_app_starts_the_agent_when_none_runs(config_path, monkeypatch):
    monkeypatch.setenv("RESIL_CONFIG", str(config_path))
    app = make_app()
    Resil().init_app(app)
    assert registry.runtime() is not None
    client = app.test_client()
    client.post("/login/ada")
    assert client.get("/me").json["user"] == "ada"


def test_without_a_sessions_resource_resil_app_says_so(write_config, tmp_path):
    resil.start(write_config(f'unit = "a"\nunits = ["a"]\n[control]\n'
                             f'url = "{(tmp_path / "s.json").as_uri()}"\n'
                             '[admin]\nlisten = "off"\n'))
    with pytest.raises(RuntimeError, match=r"\[sessions\] resource"):
        Resil(make_app())
