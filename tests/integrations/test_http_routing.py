"""Routing of HTTP calls (requests, urllib3, httpx) against real loopback servers.

Two units with two servers each; the agent runs in this process, in unit ``a``. Each
server answers with its unit and port, so every test sees where each call went.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import resil
from resil import context, counters, registry
from servers.web import HttpUnits

FAST = "eject_after = 2\neject_time = 0.3\nretry_budget_min = 100\n"


@pytest.fixture(scope="module")
def units() -> Iterator[HttpUnits]:
    with HttpUnits() as running:
        yield running


def start_agent(write_config: Callable[..., Path], tmp_path: Path, units: HttpUnits,
                extra: str = FAST, unit: str = "a", more: str = "") -> None:
    path = write_config(
        f'unit = "{unit}"\n[control]\nurl = "{(tmp_path / "state.json").as_uri()}"\n'
        'poll_interval = 0.01\n[admin]\nlisten = "off"\n'
        + units.toml("products", extra) + more)
    resil.start(path)


def test_requests_calls_stay_in_the_own_unit_and_spread(write_config, tmp_path, units):
    import requests
    start_agent(write_config, tmp_path, units)
    seen = Counter()
    with requests.Session() as session:
        for i in range(40):
            answer = session.get(f"http://products/items?page={i}", timeout=5).json()
            assert answer["path"] == f"/items?page={i}"
            assert answer["headers"]["x-resil-unit"] == "a"
            seen[(answer["unit"], answer["port"])] += 1
    assert {unit for unit, _ in seen} == {"a"}
    assert len(seen) == 2, "calls spread over both endpoints of the own unit"


def test_unrouted_calls_are_untouched(write_config, tmp_path, units):
    import requests
    start_agent(write_config, tmp_path, units, more='\n[resources.other]\nkind = "http"\n'
                'endpoints = { a = "http://other.example:80" }\n')
    server = units.servers["b"][0]
    answer = requests.get(f"http://localhost:{server.port}/x", timeout=5).json()
    assert answer["unit"] == "b" and "x-resil-unit" not in answer["headers"]


def test_urllib3_and_httpx_are_routed(write_config, tmp_path, units):
    import httpx
    import urllib3
    start_agent(write_config, tmp_path, units)
    answer = urllib3.PoolManager().request("GET", "http://products/u?q=1").json()
    assert (answer["unit"], answer["path"]) == ("a", "/u?q=1")
    with httpx.Client() as client:
        answer = client.post("http://products/h", content=b"payload").json()
    assert (answer["unit"], answer["body"], answer["method"]) == ("a", "payload", "POST")
    assert answer["headers"]["host"] == f"127.0.0.1:{answer['port']}"

    async def run() -> dict:
        async with httpx.AsyncClient() as client:
            return (await client.get("http://products/async")).json()
    answer = asyncio.run(run())
    assert (answer["unit"], answer["path"]) == ("a", "/async")


def test_httpx_knows_hosts_that_name_no_resource_without_hiding_one(write_config, tmp_path,
                                                                    units):
    """httpx calls to a host found to name no resource are left alone from the parsed
    URL; a call left alone for another reason (resil bypassed) is not taken for that,
    and a new configuration that makes the host a resource routes it."""
    import httpx
    start_agent(write_config, tmp_path, units)
    port = units.servers["b"][0].port
    router = registry.runtime().router
    with httpx.Client() as client:
        with context.bypass():          # an endpoint, called directly: left alone
            answer = client.get(f"http://127.0.0.1:{port}/x").json()
        assert answer["unit"] == "b" and "x-resil-unit" not in answer["headers"]
        answer = client.get(f"http://127.0.0.1:{port}/x").json()
        assert answer["unit"] == "a" and answer["headers"]["x-resil-unit"] == "a"
        for path in ("/y", "/z"):       # localhost is no resource: left alone each time
            answer = client.get(f"http://localhost:{port}{path}").json()
            assert (answer["unit"], answer["path"]) == ("b", path)
            assert "x-resil-unit" not in answer["headers"]
        remembered = [key for key in router.http_matches if isinstance(key, tuple)]
        assert remembered == [("httpx", "http", "localhost", port)]
        resil.stop()
        start_agent(write_config, tmp_path, units, more='\n[resources.local]\nkind = "http"\n'
                    f'endpoints = {{ a = "http://localhost:{port}" }}\n')
        answer = client.get(f"http://localhost:{port}/w").json()
        assert answer["headers"]["x-resil-unit"] == "a"


def test_httpx_headers_follow_each_attempt(write_config, tmp_path, units):
    """httpx's headers are set in place: resil's header once (an application's own
    value of it replaced), the Host of each attempt's endpoint, an own Host kept."""
    import httpx
    start_agent(write_config, tmp_path, units, extra=FAST + "retries = 1\n")
    with httpx.Client(headers={"X-Resil-Unit": "spoofed", "X-Other": "1"}) as client:
        answer = client.get("http://products/h").json()
        assert answer["headers"]["x-resil-unit"] == "a"
        assert answer["header_names"].count("x-resil-unit") == 1
        assert answer["headers"]["x-other"] == "1"
        assert answer["headers"]["host"] == f"127.0.0.1:{answer['port']}"
        # the retry goes to unit b: the Host header is that endpoint's, not the first's
        retried = client.get("http://products/status/503").json()
        assert retried["unit"] == "b"
        assert retried["headers"]["host"] == f"127.0.0.1:{retried['port']}"
        assert retried["header_names"].count("host") == 1
        own = client.get("http://products/h", headers={"Host": "api.example"}).json()
        assert own["headers"]["host"] == "api.example" and own["unit"] == "a"
        request = client.build_request("GET", "http://products/h")
        request.headers = httpx.Headers([*request.headers.multi_items(),
                                         ("x-resil-unit", "one"), ("x-resil-unit", "two")])
        twice = client.send(request).json()
        assert twice["header_names"].count("x-resil-unit") == 1
        assert twice["headers"]["x-resil-unit"] == "a"


def test_only_calls_safe_to_repeat_are_retried(write_config, tmp_path, units):
    import requests
    start_agent(write_config, tmp_path, units, extra="eject_after = 100\n")
    units.kill("a")
    try:
        with pytest.raises(requests.ConnectionError):   # the original error, not retried
            requests.post("http://products/order", data=b"1", timeout=5)
        assert counters.stats().get("http_retries:products", 0) == 0
        answer = requests.post("http://products/order", data=b"2", timeout=5,
                               headers={"Idempotency-Key": "k-2"}).json()
        assert (answer["unit"], answer["body"]) == ("b", "2")
        for method in ("GET", "PUT", "DELETE", "HEAD", "OPTIONS"):
            assert requests.request(method, "http://products/x", timeout=5).ok
        assert counters.stats()["http_retries:products"] == 6
    finally:
        units.start("a")


def test_ejected_endpoints_get_traffic_again_after_a_probe(write_config, tmp_path, units):
    import requests
    start_agent(write_config, tmp_path, units)
    units.kill("a")
    try:
        for _ in range(20):
            assert requests.get("http://products/x", timeout=5).json()["unit"] == "b"
        health = registry.router().health_snapshot()["products"]
        assert [h["state"] for h in health.values() if h["unit"] == "a"] == ["ejected"] * 2
    finally:
        units.start("a")
    import time
    time.sleep(0.35)            # eject_time: the next calls are the half-open probes
    seen = Counter(requests.get("http://products/x", timeout=5).json()["unit"]
                   for _ in range(20))
    assert seen["a"] >= 18, seen
    health = registry.router().health_snapshot()["products"]
    assert all(h["state"] == "healthy" for h in health.values())


def test_a_retryable_status_goes_to_the_other_unit(write_config, tmp_path, units):
    import httpx
    start_agent(write_config, tmp_path, units, extra=FAST + "retries = 1\n")
    with httpx.Client() as client:
        # /status/503 answers 503 everywhere: the one retry goes to unit b, answers 503
        # too, and the application gets that last answer (not an exception)
        answer = client.get("http://products/status/503")
        assert answer.status_code == 503 and answer.json()["unit"] == "b"
        assert counters.stats()["http_retries:products"] == 1
        assert client.get("http://products/status/500").json()["unit"] == "a"   # not listed


def test_active_checks_take_a_failing_endpoint_out_and_back(write_config, tmp_path):
    import requests
    down = tmp_path / "down"
    with HttpUnits(per_unit=1, env={"HTTP_APP_DOWN_FILE": str(down)}) as units:
        start_agent(write_config, tmp_path, units,
                    extra='health_path = "/healthz"\nhealth_interval = 0.1\n')
        assert requests.get("http://products/x", timeout=5).json()["unit"] == "a"
        checks = registry.router().checks
        assert checks is not None and checks.running
        down.touch()        # both servers' /healthz now answer 503: ...
        import time
        time.sleep(0.5)
        health = registry.router().health_snapshot()["products"]
        assert {h["state"] for h in health.values()} == {"down"}
        # ... every endpoint is down: panic mode spreads calls rather than failing them
        assert requests.get("http://products/x", timeout=5).ok
        down.unlink()
        time.sleep(0.5)
        health = registry.router().health_snapshot()["products"]
        assert {h["state"] for h in health.values()} == {"healthy"}


def test_streaming_timeouts_and_credentials_are_preserved(write_config, tmp_path, units):
    import httpx
    import requests
    start_agent(write_config, tmp_path, units)
    with requests.get("http://user:pw@products/s", stream=True, timeout=(1, 5)) as answer:
        chunks = b"".join(answer.iter_content(7))
    data = __import__("json").loads(chunks)
    assert data["unit"] == "a" and data["headers"]["authorization"].startswith("Basic ")

    def body() -> Iterator[bytes]:
        yield b"part-1,"
        yield b"part-2"
    with httpx.Client(timeout=5) as client:
        with client.stream("POST", "http://products/up", content=body()) as answer:
            data = __import__("json").loads(answer.read())
    assert (data["unit"], data["body"]) == ("a", "part-1,part-2")
    with pytest.raises(requests.ReadTimeout):       # the application's timeout still rules
        requests.post("http://products/slow/1", timeout=0.2)


def test_a_streamed_body_is_routed_but_never_retried(write_config, tmp_path, units):
    import requests
    start_agent(write_config, tmp_path, units, extra="eject_after = 100\n")
    units.kill("a")
    try:
        with pytest.raises(requests.ConnectionError):
            requests.put("http://products/up", data=iter([b"a", b"b"]), timeout=5)
        assert counters.stats().get("http_retries:products", 0) == 0
    finally:
        units.start("a")


def test_urllib_request_is_routed_and_retried(write_config, tmp_path, units):
    import json
    import urllib.error
    import urllib.request
    start_agent(write_config, tmp_path, units, extra="eject_after = 100\n")
    with urllib.request.urlopen("http://products/u?x=1", timeout=5) as answer:
        data = json.loads(answer.read())
    assert (data["unit"], data["path"], data["headers"]["x-resil-unit"]) == ("a", "/u?x=1", "a")
    with pytest.raises(urllib.error.HTTPError) as info:     # retried: 503 everywhere
        urllib.request.urlopen("http://products/status/503", timeout=5)
    assert info.value.code == 503 and counters.stats()["http_retries:products"] == 2
    units.kill("a")
    try:
        with urllib.request.urlopen("http://products/u", timeout=5) as answer:
            assert json.loads(answer.read())["unit"] == "b"
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(urllib.request.Request(
                "http://products/u", data=b"x", method="POST"), timeout=5)
        assert counters.stats()["http_retries:products"] == 3
    finally:
        units.start("a")


def test_resil_status_shows_the_endpoints_an_agent_avoids(write_config, tmp_path, units):
    import json
    import subprocess
    import sys
    import time

    import requests
    path = write_config(
        f'unit = "a"\n[control]\nurl = "{(tmp_path / "state.json").as_uri()}"\n'
        'heartbeat_interval = 0.1\n[admin]\nlisten = "off"\n' + units.toml("products", FAST))
    resil.start(path)
    units.kill("a")
    try:
        for _ in range(10):
            assert requests.get("http://products/x", timeout=5).json()["unit"] == "b"
        time.sleep(0.3)
        resil_cli = str(Path(sys.executable).parent / "resil")
        out = subprocess.run([resil_cli, "status", "--json", "--config", str(path)],
                             capture_output=True, text=True, timeout=30, check=True)
        agents = json.loads(out.stdout)["agents"]
        text = subprocess.run([resil_cli, "status", "--config", str(path)],
                              capture_output=True, text=True, timeout=30).stdout
    finally:
        units.start("a")
    mine = [a for a in agents if a["live"]]
    dead = {f"products {s.url}" for s in units.servers["a"]}
    assert len(mine) == 1 and set(mine[0]["avoids"]) == dead
    assert set(mine[0]["avoids"].values()) <= {"ejected", "half-open"}
    assert all(f"avoids {endpoint}" in text for endpoint in dead)


@pytest.mark.parametrize("client", ["requests", "urllib3", "httpx", "urllib"])
def test_the_routing_key_propagates_safely(write_config, tmp_path, units, client):
    import json
    start_agent(write_config, tmp_path, units)

    def call() -> dict:
        if client == "requests":
            import requests
            return requests.get("http://products/k", timeout=5).json()
        if client == "urllib3":
            import urllib3
            return urllib3.PoolManager().request("GET", "http://products/k").json()
        if client == "httpx":
            import httpx
            return httpx.get("http://products/k").json()
        import urllib.request
        with urllib.request.urlopen("http://products/k", timeout=5) as answer:
            return json.loads(answer.read())

    for key, expected in (("user-42", "user-42"), ("张三", "张三"), ("1\r\nX-Evil: 1", None)):
        token = context.route_key.set(key)
        try:
            headers = call()["headers"]
        finally:
            context.route_key.reset(token)
        got = headers.get("x-resil-route-key")
        # the server reads header bytes as latin-1: undo that to compare
        assert (got.encode("latin-1").decode("utf-8") if got else None) == expected
        assert "x-evil" not in headers


def test_a_get_whose_answer_is_cut_mid_body_is_retried_in_another_unit(write_config, tmp_path):
    """The own unit's server dies while sending a body (headers sent, body cut): requests
    raised ChunkedEncodingError to the application, outside the retry. Now a call that
    is safe to repeat reads its body inside the attempt and is retried like one whose
    server died before answering."""
    import socket
    import threading

    import requests

    def serve(body: bytes, length: int) -> tuple[socket.socket, int]:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)

        def loop() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (length, body))
        threading.Thread(target=loop, daemon=True).start()
        return listener, listener.getsockname()[1]

    cut, cut_port = serve(b"partial", 100)          # promises 100 bytes, sends 7
    whole, whole_port = serve(b"whole", 5)
    try:
        path = write_config(
            f'unit = "a"\n[control]\nurl = "{(tmp_path / "state.json").as_uri()}"\n'
            '[admin]\nlisten = "off"\n[resources.svc]\nkind = "http"\n'
            f'endpoints = {{ a = "http://127.0.0.1:{cut_port}", '
            f'b = "http://127.0.0.1:{whole_port}" }}\n'
            "retry_budget_min = 100\n")
        resil.start(path)
        answer = requests.get("http://svc/x", timeout=5)
        assert answer.text == "whole"
        with pytest.raises(requests.exceptions.ChunkedEncodingError):   # never repeated
            requests.post("http://svc/x", data=b"order", timeout=5)
    finally:
        cut.close()
        whole.close()
