"""The quickstart: a plain app under ``resil-run`` against real MariaDB and Redis pairs.

It starts a MariaDB primary with a GTID replica and a Redis primary with a replica on
loopback (unit "beijing" and unit "hangzhou"), writes a ``resil.toml`` for them, runs
``examples/quickstart/app.py`` under ``resil-run``, moves both primaries to hangzhou
(promotes the replicas, fences the old primaries, publishes the new control state), and
runs the app again, unchanged, to show it follows. Everything it started is stopped on
exit, Ctrl-C included.

The move is ``resil db switch``: precheck, lock, drain, fence, catch-up, promote,
reverse, publish, verify, each printed with its duration.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))          # the real-server harness of the test suite

import resil  # noqa: E402,F401  (installed by `make demo`)
from servers import MariaDBPair, RedisPair  # noqa: E402
from servers.config import PASSWORDS, resil_toml  # noqa: E402

BIN = Path(sys.executable).parent


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def sh(*args: str, cwd: Path) -> str:
    """Run a command the way a user would, echo it and its output; fail loudly."""
    print("$ " + " ".join(a if " " not in a else repr(a) for a in args), flush=True)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **PASSWORDS}
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    print(out.stdout + out.stderr, end="", flush=True)
    if out.returncode != 0:
        raise SystemExit(f"quickstart: command failed with exit {out.returncode}")
    return out.stdout


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="resil-quickstart-"))
    work = base / "app"
    work.mkdir()
    (work / "app.py").write_text((Path(__file__).parent / "app.py").read_text())
    step("starting MariaDB (primary + GTID replica) and Redis (primary + replica) on loopback")
    with MariaDBPair(base / "mysql") as mysql, RedisPair(base / "redis") as cache:
        print(f"MariaDB beijing :{mysql.primary.port} -> hangzhou :{mysql.replica.port}; "
              f"Redis beijing :{cache.primary.port} -> hangzhou :{cache.replica.port}")
        (work / "resil.toml").write_text(resil_toml(
            (work / "resil-state.json").as_uri(), mysql=mysql, redis=cache,
            units=("beijing", "hangzhou"), control=""))

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

    ok = ("server_id=1 (1 orders" in first and f"port {mysql.replica.port}" not in first
          and "server_id=2 (2 orders" in second and f"Redis port {cache.replica.port}" in second
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
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped", file=sys.stderr)
        sys.exit(130)
