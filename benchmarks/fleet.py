"""What one agent costs the control plane as the fleet grows (Redis control plane).

Starts two Redis servers on loopback, one as the control plane and one as a data store,
and, for each fleet size, a simulated fleet: heartbeats for N instances written straight
into the control plane every second (what N agents would write, through the same
``report()``), in two units and with utilization. Then it runs one real agent under
``resil-run`` (a plain redis-py program that sleeps) with its admin endpoint on, scrapes
its ``/metrics`` once a second (a busy Prometheus), and counts over a measured window:

- the read commands the control plane served (the simulated fleet only writes: every
  read is the real agent's or the scrapes' it serves), per second;
- the bytes the control plane sent, less the replies to the simulated fleet;
- the same for a **baseline agent**: the same program under the resil of ``--baseline``
  (a git revision, by default the one before fleet-scale work), in the same run;
- how long ``resil status`` takes (median of 3) and the agents it counts.

``--switch`` also runs one planned MySQL switch at each fleet size while the simulated
agents mark the lock and the new epoch as real agents do: its drain and verify times.

Usage: ``.venv/bin/python benchmarks/fleet.py [--sizes 100,1000,5000] [--window 10]
[--baseline REV]``. Results also go to benchmarks/results/fleet.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))         # the real-server harness

import redis  # noqa: E402

from resil.config import load_config  # noqa: E402
from resil.control import open_configured  # noqa: E402
from resil.control.redis import RedisControlPlane  # noqa: E402
from servers import Redis, free_port  # noqa: E402

BIN = Path(sys.executable).parent
BASELINE = "e309062"
"""The last revision before fleet-scale work: every agent read every heartbeat."""
READS = ("get", "mget", "scan", "hget", "hgetall", "hmget", "smembers", "exists", "pttl")
PROGRAM = """
import time, redis
redis.Redis(host="cache", port=6379, socket_timeout=2).ping()   # starts the agent's watch
time.sleep(3600)
"""


def config_text(control: int, data: int, admin: int, prefix: str) -> str:
    return f"""
unit = "a"
[control]
url = "redis://127.0.0.1:{control}/0?prefix={prefix}"
heartbeat_interval = 1.0
[admin]
listen = "127.0.0.1:{admin}"
[resources.cache]
kind = "redis"
primary = "a"
endpoints = {{ a = "127.0.0.1:{data}", b = "127.0.0.1:1" }}
aliases = ["cache"]
"""


class Fleet:
    """N simulated instances: a heartbeat each per second, and (when ``mark``) a mark
    on every database resource each time a new signal is published, as agents do."""

    def __init__(self, plane: RedisControlPlane, size: int, resources: list[str],
                 mark: bool = False, beat: bool = True) -> None:
        self.plane = plane
        self.ids = [f"sim{i:05d}:{i}" for i in range(size)]
        self.resources = resources
        self.mark = mark
        self.epoch = 0
        self.sent = 0
        """Commands the simulated fleet sent (their replies are a few bytes each)."""
        self.reports = 0
        """Heartbeats it reported (each reads one key: the window's highest epoch)."""
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._beat, daemon=True)] if beat else []
        if mark:
            self._threads.append(threading.Thread(target=self._follow, daemon=True))

    def __enter__(self) -> Fleet:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _beat(self) -> None:
        started = time.time()
        while not self._stop.is_set():
            began = time.monotonic()
            for n, agent_id in enumerate(self.ids):
                self.plane.report({
                    "id": agent_id, "host": "sim", "pid": n, "unit": "ab"[n % 2],
                    "service": "default", "epoch": self.epoch, "in_flight": {},
                    "started_at": started, "reported_at": time.time(),
                    "program": "simulated", "utilization": 0.3})
                self.sent += 1
                self.reports += 1
            self._stop.wait(max(0.0, 1.0 - (time.monotonic() - began)))

    def _follow(self) -> None:
        """Mark every publish as agents do, and leave a switch's wait as they do: its
        drain on the lock (no simulated instance has a write open), its verify on the
        epoch that ends the lock."""
        client = self.plane.new_client(socket_timeout=None)
        pubsub = client.pubsub()
        pubsub.subscribe(self.plane.channel)
        holders: dict[str, str] = {}
        while not self._stop.is_set():
            message = pubsub.get_message(timeout=0.2)
            if not message or message["type"] != "message":
                continue
            signal = json.loads(message["data"])
            epoch, locks = signal["epoch"], signal["state"].get("locks", {})
            self.epoch = epoch
            for resource in self.resources:
                with client.pipeline(transaction=False) as pipe:
                    pipe.hset(self.plane.marks_key(resource),
                              mapping={i: f"{epoch} 0" for i in self.ids})
                    if resource in locks:
                        holders[resource] = locks[resource]["holder"]
                        left = self.plane.waiting_key("drain", resource, holders[resource])
                        pipe.srem(left, *self.ids)
                    elif resource in holders:
                        left = self.plane.waiting_key("verify", resource,
                                                      holders.pop(resource))
                        pipe.srem(left, *self.ids)
                    pipe.execute()
                self.sent += 2
        pubsub.close()


def counters(client: redis.Redis) -> tuple[int, int, int]:
    """(read commands served, keys looked up by reads, bytes sent) so far."""
    commands = client.info("commandstats")
    reads = sum(int(commands.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in READS)
    stats = client.info("stats")
    return (reads, int(stats["keyspace_hits"]) + int(stats["keyspace_misses"]),
            int(stats["total_net_output_bytes"]))


def scrape(port: int) -> None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            r.read()
    except OSError:
        pass


def wait_for_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def measure_agent(work: Path, control: Redis, data: Redis, fleet: Fleet, window: float,
                  src: Path | None, prefix: str) -> dict[str, float]:
    """Run one agent (``src``: the resil source tree to use; None: this one) for
    ``window`` seconds after a warm-up; what the control plane served it, per second."""
    admin = free_port()
    cfg = work / f"agent-{prefix}.toml"
    cfg.write_text(config_text(control.port, data.port, admin, prefix))
    program = work / "app.py"
    program.write_text(PROGRAM.replace("6379", str(data.port)))
    env = {**os.environ, "RESIL_CONFIG": str(cfg)}
    if src is None:
        command = [str(BIN / "resil-run"), sys.executable, str(program)]
    else:
        env["PYTHONPATH"] = str(src)
        command = [sys.executable, "-c", "import sys; from resil.cli.run import main; "
                   "sys.exit(main())", sys.executable, str(program)]
    proc = subprocess.Popen(command, env=env, cwd=work, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    client = control.client()
    try:
        wait_for_port(admin)
        for _ in range(3):              # warm-up: the watch, heartbeats, a few scrapes
            scrape(admin)
            time.sleep(1)
        reads0, keys0, bytes0 = counters(client)
        sent0, reports0 = fleet.sent, fleet.reports
        began = time.monotonic()
        while time.monotonic() - began < window:
            scrape(admin)
            time.sleep(1)
        elapsed = time.monotonic() - began
        reads1, keys1, bytes1 = counters(client)
        fleet_replies = 4 * (fleet.sent - sent0)     # ":1\r\n" per simulated report
        fleet_keys = fleet.reports - reports0     # and as many HGETs, inside its script
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"reads_per_s": round(max(0, reads1 - reads0 - fleet_keys) / elapsed, 1),
            "keys_per_s": round(max(0, keys1 - keys0 - fleet_keys) / elapsed, 1),
            "kbytes_per_s": round(max(0, bytes1 - bytes0 - fleet_replies) / elapsed / 1024, 1)}


def status_time(work: Path, control: Redis, data: Redis, prefix: str) -> dict[str, Any]:
    cfg = work / f"status-{prefix}.toml"
    cfg.write_text(config_text(control.port, data.port, 0, prefix))
    times, out = [], ""
    for _ in range(3):
        began = time.monotonic()
        done = subprocess.run([str(BIN / "resil"), "status", "--config", str(cfg)],
                              capture_output=True, text=True, timeout=120)
        times.append(time.monotonic() - began)
        out = done.stdout
    agents = next((line.split()[1] for line in out.splitlines()
                   if line.startswith("agents:")), "?")
    return {"status_s": round(statistics.median(times), 2), "status_agents": agents,
            "status_lines": len(out.splitlines())}


def baseline_tree(revision: str, work: Path) -> Path | None:
    """The ``src`` of ``revision`` checked out under ``work`` (None: no git history)."""
    target = work / "baseline"
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "src"],
                                 capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    target.mkdir()
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--simulate", type=int, metavar="N",
                        help="only simulate N instances on the control plane of --config "
                             "until stopped (benchmarks/switch.py --simulated)")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--mark", default="", help="resources the simulated agents mark")
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--baseline", default=BASELINE,
                        help="git revision of the baseline agent ('' : none)")
    args = parser.parse_args()
    if args.simulate:
        return simulate(args.simulate, args.config, [r for r in args.mark.split(",") if r])
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="resil-fleet-"))
    control, data = Redis(work, "control"), Redis(work, "data")
    control.start()
    data.start()
    results: list[dict[str, Any]] = []
    try:
        old = baseline_tree(args.baseline, work) if args.baseline else None
        for size in sizes:
            prefix = f"fleet{size}"
            cfg = work / f"plane-{prefix}.toml"
            cfg.write_text(config_text(control.port, data.port, 0, prefix))
            plane = open_configured(load_config(cfg, env={}))
            assert isinstance(plane, RedisControlPlane)
            row: dict[str, Any] = {"instances": size}
            with Fleet(plane, size, ["cache"]) as fleet:
                time.sleep(2)
                row["agent"] = measure_agent(work, control, data, fleet, args.window, None,
                                             prefix)
                if old is not None:
                    row["baseline"] = measure_agent(work, control, data, fleet, args.window,
                                                    old, prefix)
                row.update(status_time(work, control, data, prefix))
            plane.close()
            control.client().flushall()
            results.append(row)
            print(json.dumps(row), flush=True)
    finally:
        control.destroy()
        data.destroy()
        shutil.rmtree(work, ignore_errors=True)
    report(results)
    out = ROOT / "benchmarks" / "results" / "fleet.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def simulate(size: int, config: Path, mark: list[str]) -> int:
    """Keep ``size`` simulated instances reporting until SIGTERM; the marks come from a
    second process, so that they follow a publish as fast as agents on their own
    machines would, not behind 5,000 heartbeats a second."""
    import signal
    follower = os.fork() if mark else -1
    plane = open_configured(load_config(config, env={}))
    assert isinstance(plane, RedisControlPlane)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Fleet(plane, size, mark, mark=follower == 0, beat=follower != 0):
        stop.wait()
    plane.close()
    if follower > 0:
        os.kill(follower, signal.SIGTERM)
        os.waitpid(follower, 0)
    return 0


def report(results: list[dict[str, Any]]) -> None:
    first = results[0]
    print("\n| instances | agent: read commands/s | keys read/s | KiB/s "
          "| baseline: read commands/s | keys read/s | KiB/s | `resil status` |")
    print("|---|---|---|---|---|---|---|---|")
    for row in results:
        agent, base = row["agent"], row.get("baseline", {})
        print(f"| {row['instances']} | {agent['reads_per_s']} | {agent['keys_per_s']} "
              f"| {agent['kbytes_per_s']} | {base.get('reads_per_s', '-')} "
              f"| {base.get('keys_per_s', '-')} | {base.get('kbytes_per_s', '-')} "
              f"| {row['status_s']} s |")
    last = results[-1]
    for who in ("agent", "baseline"):
        if who in last:
            grow = {k: last[who][k] / max(first[who][k], 0.1)
                    for k in ("reads_per_s", "keys_per_s", "kbytes_per_s")}
            print(f"{who}, {first['instances']} -> {last['instances']} instances: read "
                  f"commands x{grow['reads_per_s']:.2f}, keys x{grow['keys_per_s']:.2f}, "
                  f"bytes x{grow['kbytes_per_s']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
