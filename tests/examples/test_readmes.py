"""The README's and the quickstart's commands, run as written against real servers.

A user copies these blocks first: each must work as printed. The quickstart must also
run without resil's test suite (a pip user has none).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from servers import ADMIN_PASSWORD, REPL_PASSWORD, MariaDBPair, RedisPair

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
QUICKSTART = ROOT / "examples" / "quickstart"

#: An application that uses what the README's configuration declares: the database by
#: its alias, Redis by the beijing endpoint's own address.
APP = """\
import sys, pymysql, redis
db = pymysql.connect(host="orders-db", user="app", password="apppw", database="app",
                     autocommit=True)
with db.cursor() as cur:
    cur.execute("SELECT @@server_id")
    server_id = cur.fetchone()[0]
r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]))
print(server_id, r.config_get("port")["port"], r.incr("readme"))
"""


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def commands(block: str) -> list[str]:
    """The lines of a shell block without their comments."""
    lines = (line.split("  #")[0].split(" # ")[0].strip() for line in block.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def user_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no RESIL_* of the test run, no tests/ on the
    path, resil's commands on PATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RESIL_") and k != "PYTHONPATH"}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    return {**env, **extra}


def test_the_readmes_configuration_and_commands_work_as_written(tmp_path):
    readme = (ROOT / "README.md").read_text()
    use = readme.split("## Use", 1)[1]
    toml, = blocks(use, "toml")
    shell, = blocks(use, "sh")
    with MariaDBPair(tmp_path / "mysql") as mysql, RedisPair(tmp_path / "redis") as cache:
        addresses = {"10.0.1.5:3306": mysql.primary.port, "10.0.2.5:3306": mysql.replica.port,
                     "10.0.1.6:6379": cache.primary.port, "10.0.2.6:6379": cache.replica.port}
        for address, port in addresses.items():
            assert address in toml
            toml = toml.replace(address, f"127.0.0.1:{port}")
        assert "file:///var/lib/resil/state.json" in toml
        toml = toml.replace("file:///var/lib/resil/state.json",
                            (tmp_path / "state.json").as_uri())
        assert "10.0." not in toml                    # every address is loopback now
        (tmp_path / "resil.toml").write_text(toml)
        (tmp_path / "app.py").write_text(APP)
        env = user_env(RESIL_DB_ADMIN_PASSWORD=ADMIN_PASSWORD,
                       RESIL_DB_REPL_PASSWORD=REPL_PASSWORD)
        ran = []
        for command in commands(shell):
            ran.append(command.split()[:3])
            args = command.split() + ([str(cache.primary.port)] if "app.py" in command else [])
            if command == "resil monitor":
                monitor = subprocess.Popen(args, cwd=tmp_path, env=env, text=True,
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                time.sleep(3)
                alive = monitor.poll() is None
                monitor.send_signal(signal.SIGTERM)
                out = monitor.communicate(timeout=15)[0]
                assert alive, out
                assert "Traceback" not in out, out
                continue
            out = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                                 timeout=90)
            assert out.returncode == 0, (command, out.stdout, out.stderr)
            if command.startswith("resil-run"):
                assert out.stdout.split()[:2] == ["1", str(cache.primary.port)], out.stdout
            if command.startswith("resil db switch"):
                assert "switched orders-db to hangzhou" in out.stdout, out.stdout
        assert ran == [["resil", "config", "check"], ["resil-run", "python", "app.py"],
                       ["resil", "status"], ["resil", "db", "switch"], ["resil", "monitor"]]
        # After the README's switch, the same app lands on hangzhou's server.
        out = subprocess.run(["resil-run", "python", "app.py", str(cache.primary.port)],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert out.stdout.split()[:2] == ["2", str(cache.primary.port)], out.stderr
        assert mysql.replica.root_sql("SELECT @@read_only")[0][0] == 0


def test_the_quickstart_runs_without_the_test_suite(tmp_path):
    """Copied out of the repository, as a pip user would have it."""
    copy = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, copy)
    out = subprocess.run([sys.executable, str(copy / "run.py")], cwd=tmp_path,
                         env=user_env(), capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "| after | server_id 2 | 2 |" in out.stdout
    assert out.stdout.rstrip().endswith("OK: no order lost, no code changed")


def test_the_quickstarts_step_by_step_works_as_written(tmp_path):
    text = (QUICKSTART / "README.md").read_text()
    shell = blocks(text.split("## Step by step", 1)[1], "sh")[0]
    script = shell.replace("/tmp/qs", str(tmp_path / "qs"))
    assert "/tmp/qs" not in script
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT,
                         env=user_env(), capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "server_id=1 (1 orders in total); counter 1" in out.stdout
    assert "server_id=2 (2 orders in total); counter 2" in out.stdout
    assert "switched orders-db to hangzhou" in out.stdout
    assert "switched cache to hangzhou" in out.stdout
    assert "switched orders-db to beijing" in out.stdout
    assert re.search(r"epoch 6 \(published", out.stdout), out.stdout
    assert not (tmp_path / "qs").exists()               # `down` stopped and removed them
