"""The quickstart: a plain app under ``resil-run`` against real MariaDB and Redis pairs.

It starts a MariaDB primary with a GTID replica and a Redis primary with a replica on
loopback (unit "beijing" and unit "hangzhou", with ``servers.py`` beside this file),
whose ``resil.toml`` names them; runs ``app.py`` under ``resil-run``; moves both
primaries to hangzhou with ``resil db switch`` (precheck, converge, lock, drain, fence,
catch-up, promote, reverse, publish, verify, each printed with its duration); and runs
the app again, unchanged, to show that it follows. Everything it started is stopped on
exit, Ctrl-C included.

Needs resil with PyMySQL and redis-py (``pip install 'resil[mysql,redis]'``) and the
``mariadbd`` and ``redis-server`` binaries.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import servers

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def sh(*args: str, cwd: Path) -> str:
    """Run a command the way a user would, echo it and its output; fail loudly."""
    print("$ " + " ".join(args), flush=True)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **servers.PASSWORDS}
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=90)
    print(out.stdout + out.stderr, end="", flush=True)
    if out.returncode != 0:
        raise SystemExit(f"quickstart: command failed with exit {out.returncode}")
    return out.stdout


def main(work: Path) -> int:
    step("starting MariaDB (primary + GTID replica) and Redis (primary + replica) on loopback")
    info = servers.up(work)
    mysql, redis = info["mysql"], info["redis"]
    print(f"MariaDB beijing :{mysql[0]} -> hangzhou :{mysql[1]}; "
          f"Redis beijing :{redis[0]} -> hangzhou :{redis[1]}")
    shutil.copy(HERE / "app.py", work / "app.py")

    step("the configuration")
    sh("resil", "config", "check", cwd=work)

    step("the app, unchanged, under resil-run: lands on the beijing primaries")
    first = sh("resil-run", "python", "app.py", "teapot", cwd=work)

    step("moving both primaries to hangzhou")
    sh("resil", "db", "switch", "orders-db", "--to", "hangzhou", cwd=work)
    sh("resil", "db", "switch", "cache", "--to", "hangzhou", cwd=work)
    sh("resil", "status", cwd=work)

    step("the same app again: follows the control state to hangzhou")
    second = sh("resil-run", "python", "app.py", "kettle", cwd=work)

    ok = ("server_id=1 (1 orders" in first and f"Redis port {redis[0]}" in first
          and "server_id=2 (2 orders" in second and f"Redis port {redis[1]}" in second
          and "counter 2" in second)
    step("result")
    print("| run | MySQL server | orders seen | Redis |\n|---|---|---|---|")
    for label, out in (("before", first), ("after", second)):
        sid = out.split("server_id=")[1].split()[0]
        seen = out.split("(")[1].split()[0]
        print(f"| {label} | server_id {sid} | {seen} | port {out.rsplit('port ', 1)[1].strip()} |")
    print("OK: no order lost, no code changed" if ok else "FAILED: unexpected output")
    return 0 if ok else 1


if __name__ == "__main__":
    work = Path(tempfile.mkdtemp(prefix="resil-quickstart-"))
    try:
        code = main(work)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        code = 130
    finally:
        if (work / "servers.json").exists():
            servers.down(work)
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(code)
