"""`flask run` and `python manage.py runserver` (with its autoreloader child) under resil-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from servers.ports import free_port

BIN = Path(sys.executable).parent

FLASK_APP = textwrap.dedent("""
    import redis
    from flask import Flask

    app = Flask(__name__)

    @app.get("/")
    def index():
        return str(redis.Redis(host="cache").config_get("port")["port"])
""")

DJANGO_MANAGE = textwrap.dedent("""
    import sys
    import redis
    from django.conf import settings
    from django.http import HttpResponse
    from django.urls import path

    def index(request):
        return HttpResponse(str(redis.Redis(host="cache").config_get("port")["port"]))

    settings.configure(DEBUG=True, SECRET_KEY="x" * 50, ROOT_URLCONF=__name__,
                       ALLOWED_HOSTS=["127.0.0.1"], INSTALLED_APPS=[])
    urlpatterns = [path("", index)]

    if __name__ == "__main__":
        from django.core.management import execute_from_command_line
        execute_from_command_line(sys.argv)
""")


def serve_and_get(command: list[str], cwd: Path, port: int) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([str(BIN / "resil-run"), *command], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
                    return r.read().decode()
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise AssertionError(proc.stderr.read()) from None
                time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)     # runserver's reloader child too
            proc.wait(10)


@pytest.mark.parametrize("server", ["flask run", "manage.py runserver"])
def test_dev_servers_route(pair_config, redis_pair, tmp_path, server):
    port = free_port()
    if server == "flask run":
        (tmp_path / "app.py").write_text(FLASK_APP)
        command = ["flask", "--app", "app", "run", "--port", str(port)]
    else:
        (tmp_path / "manage.py").write_text(DJANGO_MANAGE)
        command = ["python", "manage.py", "runserver", f"127.0.0.1:{port}"]  # autoreloader on
    assert serve_and_get(command, tmp_path, port) == str(redis_pair.primary.port)
