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
        import wrapt
        count = 0
        while isinstance(attribute, wrapt.FunctionWrapper):
            count, attribute = count + 1, attribute.__wrapped__
        return count

    def patched():
        import pymysql.connections, redis.connection
        counts = (layers(pymysql.connections.Connection.__dict__["connect"]),
                  layers(redis.connection.Connection.__dict__["_connect"]))
        assert max(counts) <= 1, counts          # never wrapped twice
        return tuple(c == 1 for c in counts)

    for step in sys.argv[2].split(","):
        if step == "import":
            import pymysql, redis
        elif step == "start":
            resil.start(sys.argv[1])
        elif step == "stop":
            resil.stop()
        elif step == "check-on":
            assert patched() == (True, True), (step, patched())
        elif step == "check-off":
            assert patched() == (False, False), (step, patched())
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
