"""A FastAPI application that has never heard of resil, under `resil-run uvicorn`: its
requests are counted (so the scale signals see its load, not an idle service), and a
wrong-unit write is refused before the application sees it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from servers.ports import free_port

BIN = Path(sys.executable).parent

APP = textwrap.dedent("""
    import asyncio
    from fastapi import FastAPI

    app = FastAPI()
    seen = []

    @app.get("/work")
    async def work():
        await asyncio.sleep(0.2)
        return {"ok": True}

    @app.get("/fail")
    async def fail():
        raise RuntimeError("boom")

    @app.post("/orders")
    async def order():
        seen.append(1)
        return {"orders": len(seen)}

    @app.get("/orders")
    async def orders():
        return {"orders": len(seen)}
""")


def _samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = \
                sample.value
    return found


def _get(url: str, **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(params=[1], ids=["one-process"])
def served(request, tmp_path, write_config):
    """`resil-run uvicorn app:app` with an admin port: (app URL, admin URL, config,
    process)."""
    (tmp_path / "app.py").write_text(APP)
    admin, port = free_port(), free_port()
    config = write_config(f"""
        unit = "a"
        units = ["a", "b"]
        [control]
        url = "{(tmp_path / 'state.json').as_uri()}"
        [admin]
        listen = "127.0.0.1:{admin}"
        capacity = 16
        [routing]
        key = "header:X-User"
    """)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "RESIL_CONFIG": str(config)}
    workers = ["--workers", str(request.param)] if request.param > 1 else []
    proc = subprocess.Popen([str(BIN / "resil-run"), "uvicorn", "app:app", "--host",
                             "127.0.0.1", "--port", str(port), "--log-level", "warning",
                             *workers],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            _get(f"{url}/orders")
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.1)
    yield url, f"http://127.0.0.1:{admin}", config, proc
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down cleanly, then raises the signal it caught again (so does it
    # without resil): killed by SIGTERM is its normal exit.
    assert proc.wait(20) in (0, -signal.SIGTERM), proc.stderr.read()


def _load(url: str, seconds: float) -> int:
    """8 callers, each keeping a 0.2 s request in flight for ``seconds``: the requests done."""
    stop = time.monotonic() + seconds

    def busy(_: int) -> int:
        done = 0
        while time.monotonic() < stop:
            assert _get(f"{url}/work")[0] == 200
            done += 1
        return done
    with ThreadPoolExecutor(8) as pool:
        return sum(pool.map(busy, range(8)))


def test_requests_are_counted_and_the_load_is_seen(served):
    url, admin, _, _ = served
    done = _load(url, 3)
    assert _get(f"{url}/fail")[0] == 500
    # A request is counted once the application returned: the failed one a moment
    # after its 500 reached the client.
    deadline = time.monotonic() + 5
    while True:
        samples = _samples(_get(f"{admin}/metrics")[1].decode())
        requests = samples["resil_http_requests_total"]
        if (("status_class", "5xx"),) in requests or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert requests[(("status_class", "2xx"),)] >= done + 1
    assert requests[(("status_class", "5xx"),)] == 1
    # 8 callers each keep a 0.2 s request in flight, against a capacity of 16: about
    # half busy over the seconds measured (uncounted, it would read 0: scale in).
    utilization = samples["resil_scale_utilization"][()]
    assert 0.2 < utilization < 0.8, utilization
    answer = json.loads(_get(f"{admin}/scale")[1])
    assert answer["source"] == "fallback" and answer["desired"] >= 1


def test_a_wrong_unit_write_is_refused_before_the_application(served, tmp_path):
    url, _, config, _ = served
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([{"unit": "b", "keys": ["bob"]}]))
    published = subprocess.run([str(BIN / "resil"), "traffic", "rules", str(rules),
                                "--config", str(config)], capture_output=True, text=True,
                               timeout=30)
    assert published.returncode == 0, published.stderr
    time.sleep(0.5)

    def post(user: str) -> tuple[int, bytes]:
        request = urllib.request.Request(f"{url}/orders", data=b"{}", method="POST",
                                         headers={"X-User": user})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
    status, body = post("bob")
    assert status == 409 and b'"b"' in body, body
    assert post("alice")[0] == 200                     # no home unit: passes
    assert json.loads(_get(f"{url}/orders")[1]) == {"orders": 1}   # bob's never arrived


@pytest.mark.parametrize("served", [2], ids=["two-workers"], indirect=True)
def test_uvicorn_workers_report_to_the_supervisor(served):
    """uvicorn spawns its workers (a new interpreter each, not a fork): the supervisor
    serves the instance's admin endpoint and adds up its workers' requests."""
    url, admin, _, proc = served
    health = json.loads(_get(f"{admin}/healthz")[1])
    assert health["pid"] == proc.pid
    done = _load(url, 2)
    deadline = time.monotonic() + 10
    while True:       # the workers' counters arrive with their heartbeats (1 s)
        samples = _samples(_get(f"{admin}/metrics")[1].decode())
        counted = samples["resil_http_requests_total"].get((("status_class", "2xx"),), 0)
        if counted >= done or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert counted >= done, (counted, done)
    # The supervisor serves no request itself: any busy time comes from its workers'
    # reports (uncounted, it reads exactly 0). Not a fraction: the sampler measures from
    # its oldest sample, taken when the supervisor started, so a slow start (a busy CI
    # machine) dilutes the two seconds of load (0.014 once, against 0.05 expected).
    assert samples["resil_scale_utilization"][()] > 0
