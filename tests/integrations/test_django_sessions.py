"""The Django session engine (resil.contrib.django.sessions) against a real Redis pair and
a real Django: Django's session contract, sync and async; signed keys and tampering;
Redis trouble through Django's request handling (the test Client, WSGI and ASGI)."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import re
import time
from datetime import timedelta

import pytest
import redis

import resil
from resil import context, counters, registry
from resil.config import load_config
from resil.sessions import KEY_PREFIX, SessionTooLarge, new_id, sign, unsign
from servers.config import resil_toml
from servers.ports import free_port

SECRET = "test-secret-" + "k" * 40
OLD_SECRET = "old-secret-" + "o" * 40
SETTINGS = dict(
    DEBUG=False, SECRET_KEY=SECRET, SECRET_KEY_FALLBACKS=[OLD_SECRET], ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"], INSTALLED_APPS=[], DATABASES={},
    MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware",
                f"{__name__}.touching"],
    SESSION_ENGINE="django.contrib.sessions.backends.db",
)
KEY = re.compile(r"^[A-Za-z0-9_-]{32}\.[A-Za-z0-9_-]{27}$")


# ------------------------------------------------------------------ a tiny project

def touching(get_response):
    """A middleware that reads the session before the view, on /touched."""
    def middleware(request):
        if request.path == "/touched":
            request.session.get("user")
        return get_response(request)
    return middleware


def me(request):
    from django.http import JsonResponse
    return JsonResponse({"user": request.session.get("user"),
                         "cart": request.session.get("cart", [])})


def add(request):
    from django.http import JsonResponse
    request.session["cart"] = request.session.get("cart", []) + [request.GET["item"]]
    return JsonResponse({"cart": request.session["cart"]})


def broken(request):
    """A view that reads the session, changes it, and then fails."""
    from django.http import HttpResponseServerError
    request.session["seen"] = request.session.get("seen", 0) + 1
    return HttpResponseServerError("broken")


def _urls():
    from django.urls import path
    return [path("me", me), path("touched", me), path("add", add), path("broken", broken)]


urlpatterns: list = []


class PickleSerializer:
    """What an old project may still have as SESSION_SERIALIZER."""

    def dumps(self, obj):
        return pickle.dumps(obj)

    def loads(self, data):
        return pickle.loads(data)


@pytest.fixture(scope="module", autouse=True)
def django_settings():
    """Django configured for this module only (other tests configure their own)."""
    from django.conf import settings
    from django.test.utils import override_settings
    from django.utils.functional import empty
    configured_here = not settings.configured
    if configured_here:
        settings.configure(**SETTINGS)
    urlpatterns[:] = _urls()
    # (INSTALLED_APPS and DATABASES are not overridden: they are read once)
    with override_settings(**{k: v for k, v in SETTINGS.items()
                              if k not in ("INSTALLED_APPS", "DATABASES")}):
        yield settings
    if configured_here:
        settings._wrapped = empty


@pytest.fixture
def toml(tmp_path, redis_pair):
    return resil_toml((tmp_path / "state.json").as_uri(), redis=redis_pair) + \
        '\n[sessions]\nresource = "cache"\n'


@pytest.fixture
def agent(toml, write_config):
    return resil.start(write_config(toml))


@pytest.fixture
def primary(redis_pair):
    client = redis.Redis(port=redis_pair.primary.port)
    with context.bypass():     # this server itself, whatever resil routes to
        yield client


def dead(toml: str, write_config, on_error: str):
    """Start the agent on a config whose cache has nothing listening (both units)."""
    port = free_port()          # nothing listens there (the admin endpoint is elsewhere)
    text = re.sub(r"endpoints = .*", f'endpoints = {{ a = "127.0.0.1:{port}", '
                  f'b = "127.0.0.1:{free_port()}" }}', toml)
    config = load_config(write_config(text, name="dead.toml"),
                         env={"RESIL_SESSIONS_ON_ERROR": on_error})
    return resil.start(config)


def engine():
    from resil.contrib.django.sessions import SessionStore
    return SessionStore


def sid_of(key: str) -> str:
    sid = unsign(key, [SECRET])
    assert sid is not None, key
    return sid


# ------------------------------------------------------------------ no settings change

def test_the_default_engine_gets_resils_store_and_a_chosen_one_is_left_alone(
        agent, caplog, toml, write_config):
    from django.contrib.sessions.backends import db, signed_cookies
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.test.utils import override_settings

    assert SessionMiddleware(lambda r: None).SessionStore is engine()
    caplog.set_level(logging.INFO, logger="resil")
    with override_settings(SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies"):
        for _ in range(2):
            assert SessionMiddleware(lambda r: None).SessionStore is signed_cookies.SessionStore
    told = [r.getMessage() for r in caplog.records if "left alone" in r.getMessage()]
    assert len(told) == 1 and "signed_cookies" in told[0], "said once, at INFO"
    with override_settings(SESSION_ENGINE="resil.contrib.django.sessions"):
        assert SessionMiddleware(lambda r: None).SessionStore is engine()
    from django.core.handlers import exception
    assert hasattr(SessionMiddleware.__dict__["__init__"], "__wrapped__")
    assert hasattr(exception.response_for_exception, "__wrapped__")
    resil.stop()
    assert not hasattr(SessionMiddleware.__dict__["__init__"], "__wrapped__"), "unpatched"
    assert not hasattr(exception.response_for_exception, "__wrapped__")
    assert SessionMiddleware(lambda r: None).SessionStore is db.SessionStore
    resil.start(write_config(toml.replace('[sessions]\nresource = "cache"', ""),
                             name="plain.toml"))
    assert SessionMiddleware(lambda r: None).SessionStore is db.SessionStore, \
        "no [sessions] resource: Django's own engine"


# ------------------------------------------------------------------ the contract, sync

def test_save_load_exists_delete(agent, primary):
    from django.conf import settings
    Store = engine()
    s = Store()
    assert s.session_key is None and s.is_empty()
    s["user"] = 7
    s["cart"] = ["book"]
    s.save()
    key = s.session_key
    assert KEY.match(key) and len(key) == 60
    sid = sid_of(key)
    assert primary.hgetall(KEY_PREFIX + sid)[b"d:user"] == b"7"
    assert settings.SESSION_COOKIE_AGE - 2 < primary.ttl(KEY_PREFIX + sid) \
        <= settings.SESSION_COOKIE_AGE
    other = Store(key)
    assert other["user"] == 7 and other["cart"] == ["book"]
    assert other.exists(key) and not other.exists(sign(new_id(), SECRET))
    other.delete()
    assert not Store().exists(key) and not primary.exists(KEY_PREFIX + sid)
    again = Store(key)
    assert again.load() == {} and again.session_key is None, "a gone session loses its key"


def test_concurrent_saves_of_different_keys_merge_and_a_delete_wins(agent, primary):
    Store = engine()
    s = Store()
    s["user"] = 1
    s.save()
    first, second = Store(s.session_key), Store(s.session_key)
    first["cart"] = ["book"]
    second["theme"] = "dark"
    first.save()
    second.save()
    assert dict(Store(s.session_key).items()) == {"user": 1, "cart": ["book"], "theme": "dark"}
    third = Store(s.session_key)
    third["cart"] = ["pen"]
    fourth = Store(s.session_key)
    fourth["theme"] = "light"
    fourth.save()
    third.save()
    assert dict(Store(s.session_key).items()) == {"user": 1, "cart": ["pen"], "theme": "light"}
    # Only changed keys are written: a value changed behind this instance's back, in a key
    # it did not touch, is kept.
    fifth = Store(s.session_key)
    fifth["n"] = 1
    primary.hset(KEY_PREFIX + sid_of(s.session_key), "d:user", "99")
    fifth.save()
    assert Store(s.session_key)["user"] == 99
    # A logout (delete) wins over a concurrent save.
    from django.contrib.sessions.backends.base import UpdateError
    late = Store(s.session_key)
    late["cart"] = ["late"]
    Store(s.session_key).flush()
    with pytest.raises(UpdateError):
        late.save()
    assert not primary.exists(KEY_PREFIX + sid_of(s.session_key))


def test_must_create_create_and_update_errors(agent, primary):
    from django.contrib.sessions.backends.base import CreateError, UpdateError
    Store = engine()
    s = Store()
    s.create()
    assert s.modified and s.exists(s.session_key)
    assert primary.hgetall(KEY_PREFIX + sid_of(s.session_key)).keys() == {b"m:created"}
    clash = Store(s.session_key)
    clash["x"] = 1
    with pytest.raises(CreateError):
        clash.save(must_create=True)
    assert Store(s.session_key).get("x") is None, "nothing written by a refused create"
    gone = Store(sign(new_id(), SECRET))         # well signed, never stored
    with pytest.raises(UpdateError):
        gone.save()
    s.delete()
    with pytest.raises(UpdateError):             # read before, deleted since
        s["y"] = 2
        s.save()


def test_cycle_key_moves_the_data_and_deletes_the_old_key(agent, primary):
    Store = engine()
    s = Store()
    s["user"] = "ada"
    s.save()
    old = s.session_key
    s.cycle_key()
    assert s.session_key != old and KEY.match(s.session_key)
    assert not primary.exists(KEY_PREFIX + sid_of(old))
    assert Store(s.session_key)["user"] == "ada"
    s["cart"] = ["after"]
    s.save()
    assert dict(Store(s.session_key).items()) == {"user": "ada", "cart": ["after"]}
    fresh = Store()                              # no key yet: cycle_key creates one
    fresh["a"] = 1
    fresh.cycle_key()
    assert Store(fresh.session_key)["a"] == 1


def test_clear_and_flush(agent, primary):
    Store = engine()
    s = Store()
    s.update({"a": 1, "b": 2})
    s.save()
    cleared = Store(s.session_key)
    cleared.clear()                              # never read: save reads it to delete keys
    cleared["c"] = 3
    cleared.save()
    assert dict(Store(s.session_key).items()) == {"c": 3}
    key = s.session_key
    cleared.flush()
    assert cleared.session_key is None and cleared.is_empty()
    assert not primary.exists(KEY_PREFIX + sid_of(key))


def test_expiry_is_the_redis_ttl(agent, primary):
    from django.test.utils import override_settings
    Store = engine()

    def ttl(s) -> int:
        return primary.ttl(KEY_PREFIX + sid_of(s.session_key))
    s = Store()
    s["x"] = 1
    with override_settings(SESSION_COOKIE_AGE=1000):
        s.save()
        assert 998 <= ttl(s) <= 1000
        s.set_expiry(300)
        s.save()
        assert 298 <= ttl(s) <= 300 and not s.get_expire_at_browser_close()
        s.set_expiry(timedelta(seconds=120))
        s.save()
        assert 118 <= ttl(s) <= 120
        s.set_expiry(0)                          # at browser close: the cookie age in Redis
        s.save()
        assert s.get_expire_at_browser_close() and 998 <= ttl(s) <= 1000
        s.set_expiry(None)
        s.save()
        assert "_session_expiry" not in Store(s.session_key)
        with override_settings(SESSION_EXPIRE_AT_BROWSER_CLOSE=True):
            assert s.get_expire_at_browser_close()
            s.save()
            assert 998 <= ttl(s) <= 1000
        s.set_expiry(timedelta(seconds=-5))      # already past: gone at once
        s.save()
    time.sleep(0.05)
    assert Store(s.session_key).load() == {}


def test_the_sessionbase_contract_for_unknown_and_expired_sessions(agent, primary):
    """What Django's own backends do: an unknown or invalid key loads as empty, without
    creating a record, and loses its key; a session saved with an expiry already past is
    not loaded again, new or not."""
    Store = engine()
    for key in ("unknown-key", sign(new_id(), SECRET), None):
        s = Store(key)
        assert s.load() == {} and s.session_key is None
        assert s.is_empty() and not s.modified
    before = set(primary.keys(KEY_PREFIX + "*"))
    Store("unknown-key").load()
    assert set(primary.keys(KEY_PREFIX + "*")) == before
    s = Store()
    s["x"] = 1
    s.set_expiry(-timedelta(seconds=10))        # a new session, already expired
    s.save()
    assert Store(s.session_key).load() == {}
    s = Store()
    s["x"] = 1
    s.save()
    s.set_expiry(-timedelta(seconds=10))        # an existing one made expired
    s.save()
    assert Store(s.session_key).load() == {}


@pytest.mark.parametrize("cookie", ["unknown-key", "signed-but-unknown"])
def test_the_middleware_with_a_cookie_of_no_session_on_2xx_and_5xx(agent, primary, cookie):
    """Django's SessionMiddleware reads the session on every path, a 5xx included: a
    cookie that names no session is an empty session there, never an error; a failed
    request stores nothing, and a change is saved under a new key."""
    before = set(primary.keys(KEY_PREFIX + "*"))
    c = client()
    c.cookies["sessionid"] = cookie if cookie == "unknown-key" else sign(new_id(), SECRET)
    answer = c.get("/broken")
    assert answer.status_code == 500 and answer.content == b"broken"
    assert set(primary.keys(KEY_PREFIX + "*")) == before      # a 5xx saves nothing
    assert c.get("/me").json() == {"user": None, "cart": []}
    assert set(primary.keys(KEY_PREFIX + "*")) == before      # nothing to save either
    sent = c.cookies["sessionid"].value
    assert c.get("/add?item=pen").json() == {"cart": ["pen"]}  # a change: a new session
    key = c.cookies["sessionid"].value
    assert key != sent and KEY.match(key)
    assert set(primary.keys(KEY_PREFIX + "*")) == before | {(KEY_PREFIX + sid_of(key)).encode()}


def test_clear_expired_is_a_no_op(agent):
    Store = engine()
    s = Store()
    s["x"] = 1
    s.save()
    assert Store.clear_expired() is None
    assert asyncio.run(Store.aclear_expired()) is None
    assert Store(s.session_key)["x"] == 1


# ------------------------------------------------------------------ the contract, async

def test_every_async_method(agent, primary):
    from django.contrib.sessions.backends.base import CreateError, UpdateError
    Store = engine()

    async def main() -> None:
        s = Store()
        await s.aset("user", "ada")
        assert await s.aget("user") == "ada" and await s.ahas_key("user")
        assert await s.asetdefault("cart", []) == []
        await s.aupdate({"theme": "dark"})
        assert set(await s.akeys()) == {"user", "cart", "theme"}
        assert "ada" in list(await s.avalues())
        assert ("theme", "dark") in list(await s.aitems())
        assert await s.apop("theme") == "dark"
        await s.aset_test_cookie()
        assert await s.atest_cookie_worked()
        await s.adelete_test_cookie()
        await s.asave()
        key = s.session_key
        assert KEY.match(key) and await s.aexists(key)
        other = Store(key)
        assert await other.aload() == {"user": "ada", "cart": []}
        assert await other.aget("user") == "ada"

        clash = Store(key)
        with pytest.raises(CreateError):
            await clash.asave(must_create=True)

        await s.aset_expiry(200)
        assert await s.aget_expiry_age() == 200
        assert not await s.aget_expire_at_browser_close()
        assert (await s.aget_expiry_date()).timestamp() > time.time() + 190
        await s.asave()
        assert 198 <= primary.ttl(KEY_PREFIX + sid_of(key)) <= 200
        await s.aset_expiry(0)
        assert await s.aget_expire_at_browser_close()
        await s.aset_expiry(None)

        await s.acycle_key()
        assert s.session_key != key and not await s.aexists(key)
        assert (await Store(s.session_key).aload())["user"] == "ada"

        created = Store()
        await created.acreate()
        assert await created.aexists(created.session_key)

        late = Store(s.session_key)
        await late.aset("cart", ["late"])
        await Store(s.session_key).adelete(s.session_key)
        with pytest.raises(UpdateError):
            await late.asave()

        await created.aflush()
        assert created.session_key is None
        await Store.aclear_expired()
    asyncio.run(main())


# ------------------------------------------------------------------ keys and tampering

def test_tampered_keys_are_refused_before_redis_is_asked(agent, primary):
    Store = engine()
    s = Store()
    s["user"] = "ada"
    s.save()
    sid = sid_of(s.session_key)

    def hgetalls() -> int:
        return int(primary.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0))
    forged = [
        f"{new_id()}.{new_id()[:27]}",                        # a random id and MAC
        f"{sid}.{new_id()[:27]}",                             # a real id, a random MAC
        s.session_key[:-1] + ("A" if s.session_key[-1] != "A" else "B"),   # altered MAC
        sign(sid, "another-secret"),                          # signed with another secret
        sid,                                                  # the bare id
        "../../etc/passwd", "x" * 60, "",
    ]
    before = hgetalls()
    for key in forged:
        tampered = Store(key)
        assert tampered.session_key is None, key
        assert tampered.get("user") is None and not tampered.exists(key)
    assert hgetalls() == before, "no forged key reached Redis"
    assert counters.stats()["session_key_rejected"] == len(forged) - 1   # "" is no key


def test_fallback_secrets_are_accepted_and_the_key_re_signed(agent, django_settings):
    Store = engine()
    s = Store()
    s["user"] = "ada"
    s.save()
    sid = sid_of(s.session_key)
    old = Store(sign(sid, OLD_SECRET))
    assert old.session_key == sign(sid, OLD_SECRET)
    assert old["user"] == "ada"
    assert old.session_key == sign(sid, SECRET) and old.modified, "re-signed for the cookie"
    old.save()
    assert Store(old.session_key)["user"] == "ada"


def test_a_planted_pickle_is_rejected_never_unpickled(agent, primary):
    class Boom:
        def __reduce__(self):
            return (exec, ("import os; os.environ['RESIL_DJANGO_PWNED'] = '1'",))
    Store = engine()
    sid = new_id()
    primary.hset(KEY_PREFIX + sid, mapping={"d:user": pickle.dumps(Boom()), "m:created": "1"})
    s = Store(sign(sid, SECRET))
    assert s.load() == {} and s.session_key is None
    assert "RESIL_DJANGO_PWNED" not in os.environ
    assert counters.stats()["session_rejected"] == 1
    primary.set(KEY_PREFIX + sid, pickle.dumps({"user": "ada"}))     # not even a hash
    assert Store(sign(sid, SECRET)).load() == {}
    assert "RESIL_DJANGO_PWNED" not in os.environ
    assert counters.stats()["session_rejected"] == 2
    # A project's SESSION_SERIALIZER, even one that unpickles, is never consulted.
    from django.test.utils import override_settings
    with override_settings(SESSION_SERIALIZER=f"{__name__}.PickleSerializer"):
        assert Store(sign(sid, SECRET)).load() == {}
    assert "RESIL_DJANGO_PWNED" not in os.environ


def test_an_oversized_session_is_refused_naming_the_key(agent, primary):
    Store = engine()
    s = Store()
    s["user"] = 1
    s["blob"] = "x" * 70000
    with pytest.raises(SessionTooLarge, match="'blob'"):
        s.save()
    assert s.session_key is None or not primary.exists(KEY_PREFIX + sid_of(s.session_key))
    with pytest.raises(TypeError):              # JSON only
        bad = Store()
        bad["when"] = object()
        bad.save()


# ------------------------------------------------------------------ the store, the app

def test_one_store_per_agent_and_clear_configuration_errors(toml, write_config, monkeypatch):
    from django.apps import AppConfig
    from django.core.exceptions import ImproperlyConfigured
    from django.test.utils import override_settings

    from resil.contrib.django.apps import ResilConfig
    from resil.contrib.django.sessions import shared_store

    app = AppConfig.create("resil.contrib.django")
    assert isinstance(app, ResilConfig) and app.label == "resil"
    monkeypatch.setenv("RESIL_CONFIG", str(write_config(toml)))
    with override_settings(SESSION_ENGINE="resil.contrib.django.sessions"):
        app.ready()                             # starts the agent
        assert registry.runtime() is not None
        store = shared_store()
        assert shared_store() is store and store.config is registry.runtime().config
        resil.stop()
        assert shared_store() is not store, "a new agent, a new store (started on use)"
        resil.stop()
        monkeypatch.setenv("RESIL_CONFIG", str(write_config(
            toml.replace('[sessions]\nresource = "cache"', ""), name="plain.toml")))
        with pytest.raises(ImproperlyConfigured, match=r"\[sessions\] resource"):
            app.ready()
        resil.stop()
        monkeypatch.setenv("RESIL_CONFIG", str(write_config(toml) .parent / "missing.toml"))
        with pytest.raises(ImproperlyConfigured, match="not found"):
            app.ready()
        monkeypatch.setenv("RESIL_DISABLED", "1")
        with pytest.raises(ImproperlyConfigured, match="disabled"):
            app.ready()
    app.ready()         # Django's own engine and resil disabled: nothing to do, no error
    assert registry.runtime() is None


# ------------------------------------------------------------------ through Django

def client():
    from django.test import Client
    return Client()


def test_requests_share_the_session_through_the_middleware(agent, primary):
    c = client()
    assert c.get("/add?item=book").json() == {"cart": ["book"]}
    key = c.cookies["sessionid"].value
    assert KEY.match(key), "the cookie carries the signed key"
    assert c.get("/add?item=pen").json() == {"cart": ["book", "pen"]}
    other = client()                             # another instance, same cookie
    other.cookies["sessionid"] = key
    assert other.get("/me").json() == {"user": None, "cart": ["book", "pen"]}
    assert primary.exists(KEY_PREFIX + sid_of(key))


@pytest.mark.parametrize("path", ["/me", "/touched"])
def test_fail_answers_503_wherever_the_session_is_first_read(toml, write_config, caplog, path):
    dead(toml, write_config, "fail")
    c = client()
    assert c.get(path).status_code == 200, "no cookie: no session to read, no Redis needed"
    c.cookies["sessionid"] = sign(new_id(), SECRET)
    with caplog.at_level(logging.INFO):
        answer = c.get(path)
    assert answer.status_code == 503
    assert answer.content == b"session store unavailable\n"
    assert not [r for r in caplog.records if r.exc_info], "no traceback logged"
    assert [r.status_code for r in caplog.records if hasattr(r, "status_code")] == [503]
    assert counters.stats()["session_unavailable"] == 1
    assert "session_degraded" not in counters.stats()


def test_degrade_serves_an_empty_session_and_a_change_is_a_503(toml, write_config, caplog):
    from django.test.utils import override_settings
    dead(toml, write_config, "degrade")
    c = client()
    key = sign(new_id(), SECRET)
    c.cookies["sessionid"] = key
    answer = c.get("/me")
    assert answer.status_code == 200 and answer.json() == {"user": None, "cart": []}
    assert "sessionid" not in answer.cookies or answer.cookies["sessionid"].value == key
    with caplog.at_level(logging.INFO):
        answer = c.get("/add?item=book")
    assert answer.status_code == 503
    assert answer.content == b"session store unavailable: the change was not saved\n"
    assert not [r for r in caplog.records if r.exc_info]
    assert "sessionid" not in answer.cookies, "no cookie for a session that was not saved"
    with override_settings(SESSION_SAVE_EVERY_REQUEST=True):
        assert c.get("/me").status_code == 200, "an unchanged session loses nothing"
    fresh = client()                             # a new session cannot be created either
    assert fresh.get("/add?item=pen").status_code == 503
    stats = counters.stats()
    assert stats["session_degraded"] == 3 and stats["session_unsaved"] == 2
    assert stats["session_unavailable"] == 4     # three loads, one create


def test_redis_trouble_over_asgi(toml, write_config):
    from django.test import AsyncClient
    dead(toml, write_config, "fail")

    async def main() -> list[int]:
        c = AsyncClient()
        c.cookies["sessionid"] = sign(new_id(), SECRET)
        return [(await c.get(p)).status_code for p in ("/me", "/touched")]
    assert asyncio.run(main()) == [503, 503]
    resil.stop()
    dead(toml, write_config, "degrade")

    async def degraded() -> list[int]:
        c = AsyncClient()
        c.cookies["sessionid"] = sign(new_id(), SECRET)
        return [(await c.get(p)).status_code for p in ("/me", "/add?item=x")]
    assert asyncio.run(degraded()) == [200, 503]
