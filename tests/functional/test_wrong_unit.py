"""Wrong-unit protection end to end: two instances of one Flask app, one in unit a and
one in unit b, each run by `resil-run` with its own resil.toml over one file control
plane, with routing rules published by `resil traffic rules`."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from servers.ports import free_port

BIN = Path(sys.executable).parent
RULES = [{"unit": "a", "range": [0, 999]}, {"unit": "b", "range": [1000, 1999]},
         {"unit": "b", "keys": ["bob"]}]

APP = textwrap.dedent("""
    import os
    from flask import Flask, jsonify, request
    from resil import context

    app = Flask(__name__)
    seen = []

    @app.route("/orders", methods=["GET", "POST", "PUT", "DELETE"])
    def orders():
        seen.append([request.method, context.route_key.get()])
        answer = jsonify(unit=os.environ["APP_UNIT"], method=request.method,
                         route_key=context.route_key.get(), body=request.get_data(as_text=True),
                         query=request.args.get("q"),
                         forwarded_from=request.headers.get("X-Resil-Forwarded-From"))
        answer.status_code = 201 if request.method == "POST" else 200
        answer.headers["X-Served-By"] = os.environ["APP_UNIT"]
        answer.set_cookie("c1", "1")
        answer.set_cookie("c2", "2")
        return answer

    @app.get("/seen")
    def seen_view():
        return jsonify(seen)
""")


def toml(unit: str, state: Path, ports: dict[str, int], routing: str = "") -> str:
    endpoints = ", ".join(f'{u} = ["http://127.0.0.1:{p}"]' for u, p in ports.items())
    return textwrap.dedent(f"""
        unit = "{unit}"
        [control]
        url = "{state.as_uri()}"
        poll_interval = 0.01
        [admin]
        listen = "off"
        [routing]
        key = "header:X-User-Id"
        forward_to = "shop"
        {routing}
        [resources.shop]
        kind = "http"
        endpoints = {{ {endpoints} }}
    """)


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def json(self) -> object:
        return json.loads(self.body)


def call(port: int, method: str, path: str = "/orders", body: bytes = b"",
         **headers: str) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body or None,
                           headers={k.replace("_", "-"): v for k, v in headers.items()})
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def seen(port: int) -> list[list]:
    return call(port, "GET", "/seen").json    # type: ignore[return-value]


def resil_cli(*args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([str(BIN / "resil"), *args], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    return out


@dataclass
class Instance:
    unit: str
    port: int
    proc: subprocess.Popen[str]


def start(folder: Path, unit: str, port: int, config: Path, **env: str) -> Instance:
    proc = subprocess.Popen(
        [str(BIN / "resil-run"), "--config", str(config), "flask", "--app", "app", "run",
         "--port", str(port)], cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
             "APP_UNIT": unit, **env})
    return Instance(unit, port, proc)


def wait_serving(instance: Instance) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            call(instance.port, "GET", "/seen")
            return
        except OSError:
            if instance.proc.poll() is not None or time.monotonic() > deadline:
                stop(instance)
                raise AssertionError(instance.proc.stderr.read()) from None   # type: ignore
            time.sleep(0.1)


def stop(instance: Instance) -> None:
    if instance.proc.poll() is None:
        os.killpg(instance.proc.pid, signal.SIGTERM)
        instance.proc.wait(10)


def pair(folder: Path, **env: str) -> Iterator[tuple[Instance, Instance]]:
    """Instances in units a and b (each forwards to the other), rules published first."""
    folder.mkdir()
    (folder / "app.py").write_text(APP)
    state = folder / "state.json"
    ports = {"a": free_port(), "b": free_port()}
    for unit in ports:
        (folder / f"{unit}.toml").write_text(toml(unit, state, ports))
    (folder / "rules.json").write_text(json.dumps(RULES))
    resil_cli("traffic", "rules", str(folder / "rules.json"), "--config", str(folder / "a.toml"))
    instances = [start(folder, u, p, folder / f"{u}.toml", **env) for u, p in ports.items()]
    try:
        for instance in instances:
            wait_serving(instance)
        yield instances[0], instances[1]
    finally:
        for instance in instances:
            stop(instance)


@pytest.fixture(scope="module")
def rejecting(tmp_path_factory) -> Iterator[tuple[Instance, Instance]]:
    yield from pair(tmp_path_factory.mktemp("wrong-unit") / "reject")


@pytest.fixture(scope="module")
def forwarding(tmp_path_factory) -> Iterator[tuple[Instance, Instance]]:
    yield from pair(tmp_path_factory.mktemp("wrong-unit") / "forward",
                    RESIL_ROUTING_WRONG_UNIT="forward")


# ------------------------------------------------------------------ reject

def test_a_wrong_unit_write_is_refused_and_the_app_never_sees_it(rejecting):
    a, b = rejecting
    answer = call(a.port, "POST", body=b'{"item": 1}', X_User_Id="1500",
                  Content_Type="application/json")
    assert answer.status == 409
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["X-Resil-Home-Unit"] == "b"
    assert answer.json == {
        "error": "wrong_unit", "unit": "b", "key": "1500", "epoch": 1,
        "message": "routing key '1500' belongs to unit 'b'; this is unit 'a'"}
    assert ["POST", "1500"] not in seen(a.port) + seen(b.port)


def test_a_right_unit_write_passes_with_the_key_in_the_contextvar(rejecting):
    a, b = rejecting
    answer = call(a.port, "POST", "/orders?q=1", body=b"x", X_User_Id="17")
    assert answer.status == 201
    assert answer.json == {"unit": "a", "method": "POST", "route_key": "17", "body": "x",
                           "query": "1", "forwarded_from": None}
    answer = call(b.port, "PUT", X_User_Id="bob")
    assert answer.status == 200 and answer.json["unit"] == "b"   # type: ignore[index]


def test_reads_of_any_key_pass(rejecting):
    a, _ = rejecting
    for method in ("GET", "HEAD", "OPTIONS"):
        answer = call(a.port, method, X_User_Id="1500")
        assert answer.status == 200, method
    assert call(a.port, "GET", X_User_Id="bob").json["route_key"] == "bob"  # type: ignore


def test_keys_without_a_home_unit_pass(rejecting):
    a, _ = rejecting
    assert call(a.port, "POST", X_User_Id="5000").status == 201
    assert call(a.port, "POST", X_User_Id="carol").status == 201
    answer = call(a.port, "POST")                                    # no key at all
    assert answer.status == 201 and answer.json["route_key"] is None  # type: ignore[index]


def test_a_propagated_key_counts_when_the_configured_header_is_absent(rejecting):
    a, _ = rejecting
    answer = call(a.port, "DELETE", X_Resil_Route_Key="bob")
    assert answer.status == 409 and answer.json["unit"] == "b"    # type: ignore[index]
    answer = call(a.port, "GET", X_Resil_Route_Key="bob")
    assert answer.json["route_key"] == "bob"                       # type: ignore[index]


# ------------------------------------------------------------------ forward

def test_a_wrong_unit_write_is_forwarded_and_the_answer_relayed(forwarding):
    a, b = forwarding
    answer = call(a.port, "POST", "/orders?q=z%20y", body=b"hello", X_User_Id="1234")
    assert answer.status == 201
    assert answer.json == {"unit": "b", "method": "POST", "route_key": "1234",
                           "body": "hello", "query": "z y", "forwarded_from": "a"}
    assert answer.headers["X-Served-By"] == "b"
    assert answer.headers["X-Resil-Home-Unit"] == "b"
    assert sorted(answer.headers.get_all("Set-Cookie")) == ["c1=1; Path=/", "c2=2; Path=/"]
    assert ["POST", "1234"] in seen(b.port) and ["POST", "1234"] not in seen(a.port)


def test_a_forwarded_request_is_not_forwarded_again(forwarding):
    a, b = forwarding
    answer = call(a.port, "POST", X_User_Id="1235", X_Resil_Forwarded_From="b")
    assert answer.status == 409
    assert answer.json["forwarded_from"] == "b" and answer.json["unit"] == "b"  # type: ignore
    assert "not forwarded again" in answer.json["message"]                     # type: ignore
    assert ["POST", "1235"] not in seen(a.port) + seen(b.port)


def test_reads_are_not_forwarded(forwarding):
    a, _ = forwarding
    assert call(a.port, "GET", X_User_Id="1500").json["unit"] == "a"   # type: ignore


@pytest.fixture
def alone(tmp_path) -> Iterator[tuple[Instance, Path]]:
    """Unit a in forward mode; unit b's instance is down (nothing listens on its port)."""
    (tmp_path / "app.py").write_text(APP)
    state = tmp_path / "state.json"
    ports = {"a": free_port(), "b": free_port()}
    config = tmp_path / "a.toml"
    config.write_text(toml("a", state, ports, routing='wrong_unit = "forward"'))
    (tmp_path / "rules.json").write_text(json.dumps(RULES))
    resil_cli("traffic", "rules", str(tmp_path / "rules.json"), "--config", str(config))
    instance = start(tmp_path, "a", ports["a"], config)
    try:
        wait_serving(instance)
        yield instance, config
    finally:
        stop(instance)


def test_a_failed_forward_is_a_502_and_new_rules_apply_at_once(alone, tmp_path):
    a, config = alone
    answer = call(a.port, "POST", X_User_Id="1500")
    assert answer.status == 502 and answer.headers["X-Resil-Home-Unit"] == "b"
    assert answer.json["error"] == "wrong_unit_forward_failed"          # type: ignore
    assert "forwarding to unit 'b'" in answer.json["message"]           # type: ignore
    assert "ConnectionRefusedError" in answer.json["message"]           # type: ignore
    assert seen(a.port) == [["GET", None]] * len(seen(a.port))          # only /seen itself
    # A cut-over: key 1500 moves to unit a. The instance takes it once it has applied
    # the epoch (the file control plane is watched: well under a second).
    (tmp_path / "rules.json").write_text(json.dumps([{"unit": "a", "range": [0, 1999]}]))
    resil_cli("traffic", "rules", str(tmp_path / "rules.json"), "--config", str(config))
    deadline = time.monotonic() + 5
    while (answer := call(a.port, "POST", X_User_Id="1500")).status != 201:
        assert answer.status == 502 and time.monotonic() < deadline
        time.sleep(0.05)
    assert answer.json["unit"] == "a"                                   # type: ignore


# ------------------------------------------------------------------ Django over ASGI

def test_django_over_asgi(tmp_path, rejecting):
    """Django's ASGI handler driven in-process, as an ASGI server would: a wrong-unit
    write is refused without reaching the view, a read passes with the key set; with
    forwarding, the write goes to unit b's (Flask) instance of the rejecting pair."""
    import asyncio

    from django.conf import settings
    from django.http import JsonResponse
    from django.test.utils import override_settings
    from django.urls import path
    from django.utils.functional import empty

    import resil
    from resil import context, counters

    views: list[str | None] = []

    def view(request):
        views.append(context.route_key.get())
        return JsonResponse({"method": request.method, "route_key": context.route_key.get()})

    global urlpatterns
    urlpatterns = [path("orders", view)]
    _, b = rejecting
    state = tmp_path / "state.json"
    config = tmp_path / "a.toml"
    config.write_text(toml("a", state, {"a": free_port(), "b": b.port}))
    (tmp_path / "rules.json").write_text(json.dumps(RULES))
    resil_cli("traffic", "rules", str(tmp_path / "rules.json"), "--config", str(config))
    configured_here = not settings.configured
    if configured_here:
        settings.configure(DEBUG=False, SECRET_KEY="x" * 50, ROOT_URLCONF=__name__,
                           ALLOWED_HOSTS=["*"], INSTALLED_APPS=[])
    try:
        with override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"]):
            from django.core.handlers.asgi import ASGIHandler
            sent = run_asgi(asyncio, ASGIHandler, resil, config, {})
            assert sent[0]["status"] == 409
            assert json.loads(sent[1]["body"])["unit"] == "b"
            assert (b"x-resil-home-unit", b"b") in sent[0]["headers"]
            assert sent[2]["status"] == 200 and views == ["1500"]
            assert json.loads(sent[3]["body"])["route_key"] == "1500"
            assert counters.stats()["wrong_unit_rejected"] == 1
            resil.stop()
            sent = run_asgi(asyncio, ASGIHandler, resil, config,
                            {"RESIL_ROUTING_WRONG_UNIT": "forward"})
            assert sent[0]["status"] == 201 and views == ["1500", "1500"]
            assert json.loads(sent[1]["body"]) == {
                "unit": "b", "method": "POST", "route_key": "1500", "body": "hello",
                "query": "1", "forwarded_from": "a"}
    finally:
        if configured_here:     # leave Django unconfigured for tests that configure it
            settings._wrapped = empty


def run_asgi(asyncio, handler_class, resil, config: Path, env: dict[str, str]) -> list[dict]:
    """Start the agent, then send a POST and a GET of key 1500 through Django's ASGI
    handler; return the response messages."""
    from resil.config import load_config
    resil.start(load_config(config, env={**os.environ, **env}))
    handler = handler_class()
    sent: list[dict] = []

    def receiver():
        received: list[int] = []

        async def receive() -> dict:
            received.append(1)
            if len(received) == 1:
                return {"type": "http.request", "body": b"hello", "more_body": False}
            await asyncio.sleep(3600)   # Django cancels this when the response is sent
            return {"type": "http.disconnect"}
        return receive

    async def send(message: dict) -> None:
        sent.append(message)

    def scope(method: str) -> dict:
        return {"type": "http", "method": method, "path": "/orders", "query_string": b"q=1",
                "headers": [(b"host", b"test"), (b"x-user-id", b"1500")],
                "server": ("test", 80), "scheme": "http", "asgi": {"version": "3.0"}}

    async def main() -> None:
        await handler(scope("POST"), receiver(), send)
        await handler(scope("GET"), receiver(), send)
    asyncio.run(main())
    return sent
