"""Unplanned failover: detection time, time to the first write, lost writes, client errors.

For MySQL (a semi-synchronous MariaDB pair, 16 writer threads of autocommit INSERTs)
and Redis (8 writer threads of SET), it starts the resil agent and a monitor in this
process (the same code as ``resil monitor``: probe every 0.3 s, 3 failures, 0.5 s
timeout), ``kill -9``s the primary — then, in a second pair, freezes it (SIGSTOP) — and
measures from the kill or freeze:

- detection: until the monitor decides the primary is dead (and locks it);
- published: until the new primary is published;
- first write: until a writer's write is acknowledged again;
- client errors: exceptions the writers saw, split into writes in flight at the kill
  (each writer's first failure, begun before the kill took effect, 0.1 s allowed: their
  outcome is unknown, so they may fail) and every other one (the target is 0);
- lost: acknowledged writes absent afterwards.

Usage: ``.venv/bin/python benchmarks/failover.py [--runs N]`` (``make bench-failover``).
Results also go to benchmarks/results/failover.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))         # the real-server harness and writers

import pymysql  # noqa: E402
import redis  # noqa: E402

import resil  # noqa: E402
from functional.writers import Tally, Writers  # noqa: E402
from resil import context  # noqa: E402
from resil.config import load_config  # noqa: E402
from resil.control import open_control_plane  # noqa: E402
from resil.ops.monitor import Monitor, MonitorOptions  # noqa: E402
from servers import MariaDBPair, RedisPair  # noqa: E402
from servers.config import PASSWORDS, resil_toml  # noqa: E402

OPTIONS = MonitorOptions(interval=0.3, failures=3, timeout=0.5)
VERBOSE = False     # --verbose: the monitor's lines, timed from the fault


def mysql_writers(acked_at: list[float]) -> Writers:
    writers = Writers()
    for i in range(16):
        def write(tally: Tally, seq: int, box: list[Any]) -> None:
            if box[0] is None:
                box[0] = pymysql.connect(host="orders-db", user="app", password="apppw",
                                         database="app", autocommit=True, connect_timeout=2,
                                         read_timeout=2, write_timeout=2)
            try:
                with box[0].cursor() as cur:
                    cur.execute("INSERT INTO w VALUES (%s, %s)", (tally.name, seq))
            except pymysql.err.MySQLError:
                box[0] = None       # what a pool does with a broken connection
                raise
            tally.acked.append(seq)
            acked_at.append(time.monotonic())
        writers.add(f"w{i}", write, setup=lambda: [None])
    return writers


def redis_writers(acked_at: list[float]) -> Writers:
    client = redis.Redis(host="cache", socket_timeout=2, socket_connect_timeout=1)
    writers = Writers()
    for i in range(8):
        def write(tally: Tally, seq: int) -> None:
            client.set(f"k:{tally.name}:{seq}", seq)
            tally.acked.append(seq)
            acked_at.append(time.monotonic())
        writers.add(f"w{i}", write)
    return writers


def measure(config_path: Path, writers: Writers, acked_at: list[float], kill: Any,
            present: Any) -> dict[str, Any]:
    config = load_config(config_path)
    plane = open_control_plane(config.control_url, config.topology, None)
    events: dict[str, float] = {}
    started = [time.monotonic()]

    def out(line: str) -> None:
        if VERBOSE:
            print(f"  {time.monotonic() - started[0]:6.2f} s  monitor: {line}", flush=True)
        for word, key in (("FAILOVER", "detected"), ("new primary", "published")):
            if word in line:
                events.setdefault(key, time.monotonic())

    resil.start(config)
    stop = threading.Event()
    monitor = threading.Thread(target=Monitor(config, plane, OPTIONS, out=out).run,
                               args=(stop,), daemon=True)
    monitor.start()
    writers.start()
    try:
        time.sleep(1.5)
        killed = time.monotonic()
        started[0] = killed
        kill()
        deadline = killed + 15
        while time.monotonic() < deadline and not [t for t in acked_at if t > killed + 0.05]:
            time.sleep(0.01)
        time.sleep(0.5)
    finally:
        writers.stop()
        stop.set()
        monitor.join(10)
        resil.stop()
    after = [t for t in acked_at if t > killed + 0.05]
    with context.bypass():
        rows = present()
    lost = sum(1 for t in writers.tallies for s in t.acked if (t.name, s) not in rows)
    return {
        "detected_s": events.get("detected", float("nan")) - killed,
        "published_s": events.get("published", float("nan")) - killed,
        "first_write_s": (min(after) - killed) if after else float("nan"),
        "client_errors": len(writers.errors), "acked": writers.acked, "lost": lost,
        # A writer has one statement in flight when the server dies: its first failure,
        # if that began before the kill had taken effect (the signal, then the process's
        # teardown: 0.1 s allowed).
        "in_flight_errors": sum(1 for t in writers.tallies
                                if t.failed_at and min(t.failed_at) <= killed + 0.1),
        "error_kinds": dict(collections.Counter(
            e.splitlines()[0][:90] for e in writers.errors).most_common(5)),
    }


def run_mysql(base: Path, freeze: bool = False) -> dict[str, Any]:
    with MariaDBPair(base, semi_sync=True) as pair:
        pair.primary.root_sql("SET GLOBAL rpl_semi_sync_master_timeout = 30000;"
                              "CREATE TABLE app.w (writer VARCHAR(16), seq INT, "
                              "PRIMARY KEY (writer, seq))")
        pair.replica.root_sql("STOP SLAVE; SET GLOBAL slave_net_timeout = 2; "
                              "CHANGE MASTER TO MASTER_HEARTBEAT_PERIOD = 0.5; START SLAVE")
        pair.wait_caught_up()
        path = base / "resil.toml"
        path.write_text(resil_toml((base / "state.json").as_uri(), mysql=pair,
                                   control="poll_interval = 0.01"))
        acked_at: list[float] = []
        try:
            return measure(path, mysql_writers(acked_at), acked_at,
                           pair.primary.freeze if freeze else pair.primary.kill,
                           lambda: set(pair.replica.root_sql("SELECT writer, seq FROM app.w")))
        finally:
            if freeze:
                pair.primary.thaw()


def run_redis(base: Path, freeze: bool = False) -> dict[str, Any]:
    with RedisPair(base) as pair:
        for server in (pair.primary, pair.replica):     # a frozen primary seen in ~2 s
            server.client().config_set("repl-ping-replica-period", 1)
        path = base / "resil.toml"
        path.write_text(resil_toml((base / "state.json").as_uri(), redis=pair,
                                   control="poll_interval = 0.01"))
        acked_at: list[float] = []

        def present() -> set[tuple[str, int]]:
            keys = pair.replica.client().keys("k:*")
            return {(k.split(":")[1], int(k.split(":")[2])) for k in keys}
        try:
            return measure(path, redis_writers(acked_at), acked_at,
                           pair.primary.freeze if freeze else pair.primary.kill, present)
        finally:
            if freeze:
                pair.primary.thaw()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="kills per database (default 3)")
    parser.add_argument("--only", choices=("mysql", "redis", "mysql-freeze", "redis-freeze"),
                        action="append", help="run only these cases (repeatable)")
    parser.add_argument("--verbose", action="store_true",
                        help="print the monitor's lines, timed from the fault")
    args = parser.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    os.environ.update(PASSWORDS)
    results: dict[str, list[dict[str, Any]]] = {
        "mysql": [], "redis": [], "mysql-freeze": [], "redis-freeze": []}
    for i in range(args.runs):
        base = Path(tempfile.mkdtemp(prefix="resil-bench-failover-"))
        for name in results:
            if args.only and name not in args.only:
                continue
            runner = run_redis if name.startswith("redis") else run_mysql
            results[name].append(runner(base / f"{name}{i}", freeze=name.endswith("freeze")))
        shutil.rmtree(base, ignore_errors=True)     # a failed run keeps its folder to look at
    results = {name: runs for name, runs in results.items() if runs}
    print(f"\nkill -9 of the primary, monitor: probe every {OPTIONS.interval} s, "
          f"{OPTIONS.failures} failures, {OPTIONS.timeout} s timeout; {args.runs} run(s) each")
    print(f"{'':13}{'detected':>10}{'published':>11}{'first write':>13}"
          f"{'errors: in flight':>19}{'other':>7}{'acked':>8}{'lost':>6}")
    for name, runs in results.items():
        for r in runs:
            other = r["client_errors"] - r["in_flight_errors"]
            print(f"{name:<13}{r['detected_s']:>9.2f}s{r['published_s']:>10.2f}s"
                  f"{r['first_write_s']:>12.2f}s{r['in_flight_errors']:>19}{other:>7}"
                  f"{r['acked']:>8}{r['lost']:>6}")
            for kind, count in r["error_kinds"].items():
                print(f"{'':13}  {count:>5} x {kind}")
        med = statistics.median(r["first_write_s"] for r in runs)
        what = "freeze (SIGSTOP)" if name.endswith("freeze") else "kill"
        print(f"{name:<13} median first write {med:.2f} s after the {what}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "failover.json").write_text(json.dumps(results, indent=1))
    print("\nMySQL runs semi-synchronous replication: no acknowledged write may be lost. "
          "Redis replicates asynchronously: a write acknowledged just before the kill can be.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
