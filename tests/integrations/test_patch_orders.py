"""Every import / start / stop order leaves the libraries patched exactly when they should be.

Each order runs in a fresh interpreter, so that "imported before the agent" really means
it (the suite's own process has imported everything long ago).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

CHECK = textwrap.dedent("""
    import sys
    import resil

    def layers(attribute):
        # wrapt wrappers and resil's plain replacements both expose __wrapped__
        count = 0
        while hasattr(attribute, "__wrapped__"):
            count, attribute = count + 1, attribute.__wrapped__
        return count

    def patched():
        import pymysql.connections, redis.connection, requests.adapters, urllib3.poolmanager
        import httpx, urllib.request
        counts = (layers(pymysql.connections.Connection.__dict__["connect"]),
                  layers(redis.connection.Connection.__dict__["_connect"]),
                  layers(requests.adapters.HTTPAdapter.__dict__["send"]),
                  layers(urllib3.poolmanager.PoolManager.__dict__["urlopen"]),
                  layers(httpx.HTTPTransport.__dict__["handle_request"]),
                  layers(httpx.AsyncHTTPTransport.__dict__["handle_async_request"]),
                  layers(urllib.request.OpenerDirector.__dict__["_open"]))
        assert max(counts) <= 1, counts          # never wrapped twice
        on = tuple(c == 1 for c in counts)
        return on if len(set(on)) > 1 else on[0]

    for step in sys.argv[2].split(","):
        if step == "import":
            import pymysql, redis, requests, urllib3, httpx, urllib.request
        elif step == "start":
            resil.start(sys.argv[1])
        elif step == "stop":
            resil.stop()
        elif step == "check-on":
            assert patched() is True, (step, patched())
        elif step == "check-off":
            assert patched() is False, (step, patched())
    print("ok")
""")

ORDERS = [
    "start,import,check-on",                       # lazy: patched when imported
    "import,start,check-on",                       # already imported: patched at start
    "start,import,stop,check-off",
    "import,start,stop,check-off,start,check-on",  # restart re-patches
    "start,stop,import,check-off",                 # a stopped agent's hooks do nothing
    "start,start,import,check-on,stop,check-off",  # start is idempotent: one layer of wrapper
]


@pytest.mark.parametrize("order", ORDERS)
def test_patch_order(write_config, order):
    config = write_config("""
        unit = "a"
        [resources.db]
        kind = "mysql"
        endpoints = { a = "127.0.0.1:3306" }
    """)
    out = subprocess.run([sys.executable, "-c", CHECK, str(config), order],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr
