"""SIGTERM drain: not ready at once, still serving, then the application's own exit."""

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
from pathlib import Path

import pytest

from servers.ports import free_port

BIN = Path(sys.executable).parent

APP = textwrap.dedent("""
    import signal, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"hello")
        def log_message(self, *args):
            pass

    if sys.argv[2] == "own-handler":
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))   # installed after resil
    server = HTTPServer(("127.0.0.1", int(sys.argv[1])), Hello)
    server.timeout = 0.1
    print("ready", flush=True)
    while True:
        server.handle_request()
""")


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.parametrize("mode,code", [("default", -signal.SIGTERM), ("own-handler", 3)])
def test_sigterm_drains_then_stops_as_the_app_would(pair_config, tmp_path, mode, code):
    admin, port = free_port(), free_port()
    pair_config.write_text(pair_config.read_text().replace(
        'listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{admin}"\ndrain_period = 1.0'))
    (tmp_path / "app.py").write_text(APP)
    proc = subprocess.Popen([str(BIN / "resil-run"), "python", "app.py", str(port), mode],
                            cwd=tmp_path, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    try:
        assert proc.stdout.readline() == "ready\n"
        assert get(f"http://127.0.0.1:{admin}/readyz")[0] == 200
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        time.sleep(0.2)
        status, body = get(f"http://127.0.0.1:{admin}/readyz")
        assert status == 503                                     # not ready at once
        assert "draining after SIGTERM" in json.loads(body)["reasons"][0]
        assert get(f"http://127.0.0.1:{port}/") == (200, "hello")  # still serving
        assert proc.wait(5) == code                              # then it stops, its way
        assert 0.9 < time.monotonic() - sent < 3
    finally:
        proc.kill()
        proc.wait()


def test_gunicorn_master_drains_its_workers_keep_serving(pair_config, tmp_path):
    admin, port = free_port(), free_port()
    pair_config.write_text(pair_config.read_text().replace(
        'listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{admin}"\ndrain_period = 1.0'))
    (tmp_path / "wsgi.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'hello']\n")
    proc = subprocess.Popen([str(BIN / "resil-run"), "gunicorn", "-w", "2", "-b",
                             f"127.0.0.1:{port}", "wsgi:app"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if get(f"http://127.0.0.1:{port}/")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        assert get(f"http://127.0.0.1:{admin}/readyz")[0] == 200
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert get(f"http://127.0.0.1:{admin}/readyz")[0] == 503
        assert get(f"http://127.0.0.1:{port}/") == (200, "hello")   # workers still serve
        assert proc.wait(10) == 0                                    # gunicorn's own exit
    finally:
        proc.kill()
        proc.wait()
