"""Request metrics with no code change: Flask and Django under gunicorn with 2 workers,
counted in the workers and added up by the master's /metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from servers.ports import free_port

BIN = Path(sys.executable).parent

FLASK = textwrap.dedent("""
    from flask import Flask, abort
    app = Flask(__name__)

    @app.get("/")
    def index():
        return "hello"

    @app.get("/missing")
    def missing():
        abort(404)

    @app.get("/broken")
    def broken():
        raise RuntimeError("boom")
""")

DJANGO = textwrap.dedent("""
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.http import Http404, HttpResponse
    from django.urls import path

    def index(request):
        return HttpResponse("hello")

    def missing(request):
        raise Http404()

    def broken(request):
        raise RuntimeError("boom")

    settings.configure(DEBUG=False, SECRET_KEY="x" * 50, ROOT_URLCONF=__name__,
                       ALLOWED_HOSTS=["127.0.0.1"], INSTALLED_APPS=[])
    urlpatterns = [path("", index), path("missing", missing), path("broken", broken)]
    app = get_wsgi_application()
""")


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def scrape(admin: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.parametrize("framework", ["flask", "django"])
def test_request_metrics_of_two_workers(pair_config, tmp_path, framework):
    admin, port = free_port(), free_port()
    pair_config.write_text(pair_config.read_text().replace(
        'listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{admin}"'))
    (tmp_path / "web.py").write_text(FLASK if framework == "flask" else DJANGO)
    proc = subprocess.Popen([str(BIN / "resil-run"), "gunicorn", "-w", "2", "-b",
                             f"127.0.0.1:{port}", "web:app"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                status(base + "/")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        codes = [status(base + p) for p in ["/"] * 20 + ["/missing"] * 5 + ["/broken"] * 3]
        assert codes.count(200) == 20 and codes.count(404) == 5 and codes.count(500) == 3
        expected = {"2xx": 21, "4xx": 5, "5xx": 3}    # 21: the readiness probe above too
        deadline = time.monotonic() + 5                 # workers report every second
        while True:
            m = scrape(admin)
            seen = {dict(k[1])["status_class"]: v for k, v in m.items()
                    if k[0] == "resil_http_requests_total"}
            if seen == expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert seen == expected
        assert m[("resil_http_request_duration_seconds_count", ())] == 29
        assert m[("resil_http_request_duration_seconds_bucket", (("le", "+Inf"),))] == 29
        assert m[("resil_http_requests_in_flight", ())] == 0
        assert m[("resil_http_request_duration_seconds_sum", ())] > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


SLOW = textwrap.dedent("""
    import time
    from flask import Flask
    app = Flask(__name__)

    @app.get("/")
    def index():
        time.sleep(0.1)
        return "slow"
""")


def test_scale_signals_of_a_busy_instance(pair_config, tmp_path):
    """Two sync workers kept busy by two clients: utilization near 1, and at a target of
    0.5 the HPA rule asks for two instances."""
    import threading
    admin, port = free_port(), free_port()
    pair_config.write_text(pair_config.read_text().replace(
        'listen = "127.0.0.1:0"',
        f'listen = "127.0.0.1:{admin}"\ntarget_utilization = 0.5'))
    (tmp_path / "web.py").write_text(SLOW)
    proc = subprocess.Popen([str(BIN / "resil-run"), "gunicorn", "-w", "2", "-b",
                             f"127.0.0.1:{port}", "web:app"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                status(base)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        scrape(admin)                                   # the window starts here
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                status(base)
        clients = [threading.Thread(target=client) for _ in range(2)]
        for c in clients:
            c.start()
        # Workers report through heartbeats (one a second, later on a loaded machine), so
        # the figure lags the load by up to a beat or two: a 5 s window keeps that small.
        time.sleep(5.0)
        m = scrape(admin)
        stop.set()
        for c in clients:
            c.join()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert m[("resil_scale_capacity", ())] == 2                 # two reporting workers
    assert 0.6 <= m[("resil_scale_utilization", ())] <= 1.1, m[("resil_scale_utilization", ())]
    assert m[("resil_scale_desired_instances", ())] == 2
    assert m[("resil_scale_saturation", ())] == 0


def test_django_over_asgi_is_counted(pair_config):
    """Django's ASGI handler, driven in-process as an ASGI server would."""
    import asyncio

    from django.conf import settings
    from django.http import HttpResponse
    from django.urls import path

    import resil
    from resil import counters
    if not settings.configured:
        settings.configure(DEBUG=False, SECRET_KEY="x" * 50, ROOT_URLCONF=__name__,
                           ALLOWED_HOSTS=["*"], INSTALLED_APPS=[])
    global urlpatterns
    urlpatterns = [path("", lambda request: HttpResponse("hi"))]
    resil.start(pair_config)
    from django.core.handlers.asgi import ASGIHandler
    handler = ASGIHandler()
    sent: list[dict] = []
    received: list[int] = []

    async def receive() -> dict:
        received.append(1)
        if len(received) % 2:       # the body once per request, then no disconnect
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)   # Django cancels this when the response is sent
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    def scope(route: str) -> dict:
        return {"type": "http", "method": "GET", "path": route, "query_string": b"",
                "headers": [(b"host", b"test")], "server": ("test", 80), "scheme": "http",
                "asgi": {"version": "3.0"}}

    async def main() -> None:
        await handler(scope("/"), receive, send)
        await handler(scope("/missing"), receive, send)
    asyncio.run(main())
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [200, 404]
    assert counters.requests().snapshot()["by_class"] == {"2xx": 1, "4xx": 1}
