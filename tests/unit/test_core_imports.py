"""The core knows no driver: it imports and the agent starts with every driver blocked."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = ("pymysql", "redis", "requests", "httpx", "urllib3", "flask", "django", "starlette",
           "fastapi", "numpy", "matplotlib", "aiomysql", "MySQLdb", "asyncmy")

SCRIPT = textwrap.dedent("""
    import importlib, pkgutil, sys
    BLOCKED = {blocked!r}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError("blocked for this test: " + name)
            return None

    sys.meta_path.insert(0, Blocker())
    import resil
    skip = ("resil.integrations.", "resil.contrib.", "resil.bootstrap.sitecustomize")
    names = [m.name for m in pkgutil.walk_packages(resil.__path__, "resil.")
             if not m.name.startswith(skip)]
    for name in names:
        importlib.import_module(name)
    # Starting the agent installs import hooks only: no driver gets imported.
    agent = resil.start({config!r})
    assert agent is not None and {{i.name for i in agent.integrations}} == \
        {{"pymysql", "redis", "flask", "django", "requests", "urllib3", "httpx", "urllib",
          "starlette", "aiomysql", "mysqlclient", "asyncmy"}}
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("imported", len(names), "core modules")
""")


def test_core_imports_with_drivers_blocked(write_config):
    config = write_config("""
        unit = "a"
        [resources.db]
        kind = "mysql"
        endpoints = { a = "127.0.0.1:3306" }
    """)
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(blocked=BLOCKED, config=str(config))],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    count = int(out.stdout.split()[1])
    assert count >= 10, out.stdout
