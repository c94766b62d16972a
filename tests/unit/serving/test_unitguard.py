"""Routing keys read from WSGI environs and ASGI scopes, and the wrong-unit decision."""

from __future__ import annotations

import io
import json
from wsgiref.util import setup_testing_defaults

import pytest

from resil import context, counters
from resil.agent import Agent
from resil.config import load_config
from resil.serving.forward import end_to_end
from resil.serving.routekey import cookie_value, key_from_environ, key_from_scope
from resil.serving.unitguard import judge, serve_wsgi, wsgi_request
from resil.state import RouteRule, bucket, make_signal

HEADER = ("header", "X-User-Id")
COOKIE = ("cookie", "uid")
QUERY = ("query", "user")


def environ(**extra: str) -> dict:
    env: dict = {}
    setup_testing_defaults(env)
    env.update(extra)
    return env


def scope(headers: list[tuple[bytes, bytes]] = (), query: bytes = b"") -> dict:
    return {"type": "http", "method": "POST", "path": "/", "query_string": query,
            "headers": list(headers)}


# ------------------------------------------------------------------ extraction

def test_header_key():
    assert key_from_environ(HEADER, environ(HTTP_X_USER_ID="1234")) == "1234"
    assert key_from_scope(HEADER, scope([(b"x-user-id", b"1234")])) == "1234"


def test_header_key_is_trimmed_and_empty_is_none():
    assert key_from_environ(HEADER, environ(HTTP_X_USER_ID="  42 ")) == "42"
    assert key_from_environ(HEADER, environ(HTTP_X_USER_ID="  ")) is None
    assert key_from_scope(HEADER, scope([(b"x-user-id", b"")])) is None


def test_utf8_key_reads_the_same_over_wsgi_and_asgi():
    raw = "张三".encode()
    wsgi = key_from_environ(HEADER, environ(HTTP_X_USER_ID=raw.decode("latin-1")))
    asgi = key_from_scope(HEADER, scope([(b"x-user-id", raw)]))
    assert wsgi == asgi == "张三"


def test_cookie_key():
    cookie = "theme=dark; uid=alice; lang=en"
    assert key_from_environ(COOKIE, environ(HTTP_COOKIE=cookie)) == "alice"
    assert key_from_scope(COOKIE, scope([(b"cookie", cookie.encode())])) == "alice"


def test_cookie_key_from_several_cookie_headers():
    headers = [(b"cookie", b"theme=dark"), (b"cookie", b"uid=bob")]
    assert key_from_scope(COOKIE, scope(headers)) == "bob"


def test_quoted_cookie_value():
    assert cookie_value('uid="a b"', "uid") == "a b"


@pytest.mark.parametrize("header", [
    'broken="unterminated; uid=carol',          # SimpleCookie stops at the bad cookie
    "a=b; ,,; uid=carol",
    "uid=carol; $Version=1; x",
    "=novalue; uid=carol",
])
def test_malformed_cookies_do_not_hide_the_key(header):
    assert cookie_value(header, "uid") == "carol"


@pytest.mark.parametrize("header", ["", ";;;", "uid", "uid=", "other=1", '"uid=x"', "\x00\x01"])
def test_cookie_without_the_key(header):
    assert key_from_environ(COOKIE, environ(HTTP_COOKIE=header)) is None


def test_query_key():
    assert key_from_environ(QUERY, environ(QUERY_STRING="a=1&user=77&user=88")) == "77"
    assert key_from_scope(QUERY, scope(query=b"user=%E5%BC%A0&b=2")) == "张"
    assert key_from_environ(QUERY, environ(QUERY_STRING="user=&a=1")) is None
    assert key_from_environ(QUERY, environ(QUERY_STRING="%%%&&=")) is None


def test_propagated_header_is_the_fallback():
    env = environ(HTTP_X_RESIL_ROUTE_KEY="dave")
    assert key_from_environ(HEADER, env) == "dave"
    assert key_from_environ(None, env) == "dave"
    assert key_from_environ(HEADER, {**env, "HTTP_X_USER_ID": "erin"}) == "erin"
    assert key_from_scope(COOKIE, scope([(b"x-resil-route-key", b"dave")])) == "dave"
    assert key_from_scope(None, scope([(b"x-resil-route-key", b"dave")])) == "dave"


def test_no_key_anywhere():
    assert key_from_environ(HEADER, environ()) is None
    assert key_from_environ(None, environ(HTTP_X_USER_ID="1")) is None
    assert key_from_scope(QUERY, scope()) is None


# ------------------------------------------------------------------ decision

@pytest.fixture
def agent(write_config, tmp_path):
    """A real agent of unit a over a file control plane, with rules: 0-99 and 'alice'
    live in b, hash bucket of 'zed' in a."""
    path = write_config(f"""
        unit = "a"
        [control]
        url = "{(tmp_path / 'state.json').as_uri()}"
        [admin]
        listen = "off"
        [routing]
        key = "header:X-User-Id"
        [resources.shop]
        kind = "http"
        endpoints = {{ a = ["http://127.0.0.1:1"], b = ["http://127.0.0.1:2"] }}
    """)
    agent = Agent(load_config(path, env={}))
    zed = bucket("zed")
    routes = (RouteRule("b", "range", 0, 99), RouteRule("b", "keys", keys=frozenset({"alice"})),
              RouteRule("a", "hash", zed, zed))
    state = agent.state.evolve(routes=routes)
    agent.apply(make_signal(state, issuer="test", issued_at=0.0, key=None))
    yield agent
    agent.stop()


def test_a_wrong_unit_write_is_misrouted(agent):
    wrong = judge(agent, "42", "POST", None)
    assert wrong is not None and (wrong.home, wrong.unit, wrong.epoch) == ("b", "a", 1)
    assert not wrong.forward
    assert judge(agent, "alice", "delete", None) is not None     # methods in any case


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE", "get"])
def test_reads_always_pass(agent, method):
    assert judge(agent, "42", method, None) is None


def test_right_unit_and_homeless_keys_pass(agent):
    assert judge(agent, "zed", "POST", None) is None
    assert judge(agent, "100", "POST", None) is None      # no rule claims it


def test_serve_wsgi_refuses_without_calling_the_app(agent):
    calls: list[str | None] = []

    def app(env, start_response):
        calls.append(context.route_key.get())
        start_response("200 OK", [])
        return [b"ok"]
    got: list = []
    body = serve_wsgi(agent, app, environ(REQUEST_METHOD="POST", HTTP_X_USER_ID="7"),
                      lambda status, headers: got.append((status, dict(headers))))
    assert calls == [] and got[0][0] == "409 Conflict"
    assert got[0][1]["X-Resil-Home-Unit"] == "b"
    assert json.loads(b"".join(body)) == {
        "error": "wrong_unit", "unit": "b", "key": "7", "epoch": 1,
        "message": "routing key '7' belongs to unit 'b'; this is unit 'a'"}
    assert counters.stats()["wrong_unit_rejected"] == 1
    assert b"".join(serve_wsgi(agent, app, environ(HTTP_X_USER_ID="7"),
                               lambda *a: None)) == b"ok"
    assert calls == ["7"] and context.route_key.get() is None


def test_the_key_is_reset_when_the_app_raises(agent):
    def app(env, start_response):
        raise KeyError("app's own")
    with pytest.raises(KeyError):
        serve_wsgi(agent, app, environ(HTTP_X_USER_ID="zed"), lambda *a: None)
    assert context.route_key.get() is None


def test_wsgi_request_keeps_the_body_readable():
    env = environ(REQUEST_METHOD="PUT", PATH_INFO="/a b/ü", QUERY_STRING="x=1",
                  CONTENT_LENGTH="5", CONTENT_TYPE="text/plain", HTTP_X_USER_ID="1",
                  HTTP_CONNECTION="close")
    env["PATH_INFO"] = "/a b/ü".encode().decode("latin-1")
    env["wsgi.input"] = io.BytesIO(b"hello and more")
    request = wsgi_request(env)
    assert (request.method, request.target, request.body) == ("PUT", "/a%20b/%C3%BC?x=1",
                                                              b"hello")
    assert ("X-User-Id", "1") in request.headers and ("Content-Type", "text/plain") \
        in request.headers
    assert env["wsgi.input"].read() == b"hello"


def test_hop_by_hop_headers_are_dropped():
    headers = [("Connection", "close, X-Secret"), ("X-Secret", "1"), ("Keep-Alive", "5"),
               ("Transfer-Encoding", "chunked"), ("Content-Length", "3"),
               ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
    assert end_to_end(headers) == [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]


def test_a_fault_in_resil_lets_the_request_through(agent):
    """A request resil cannot judge (here: no method at all) goes to the application."""
    def app(env, start_response):
        start_response("200 OK", [])
        return [context.route_key.get().encode()]
    env = environ(HTTP_X_USER_ID="7")
    env["REQUEST_METHOD"] = None
    assert serve_wsgi(agent, app, env, lambda *a: None) == [b"7"]
    assert counters.faults() == {"unit_guard.wsgi": 1}


def test_the_wsgi_layer_names_the_same_headers_as_routekey():
    from resil.serving import routekey as _routekey
    from resil.serving import wsgi as _wsgi
    assert _wsgi.PROPAGATED_WSGI == _routekey.PROPAGATED_WSGI
    assert _wsgi._PROPAGATED_ASGI == _routekey.PROPAGATED.encode()
