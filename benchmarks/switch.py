"""What a planned switch costs the application: write pause, errors, lost writes, steps.

Starts a MariaDB GTID pair and a Redis pair on loopback, starts the resil agent in this
process, runs writer threads against "orders-db" / "cache" (names only resil resolves)
and switches each primary back and forth with ``resil db switch``, run as an operator
runs it: in its own process (``--in-process`` runs the same procedure among the
writers' threads instead). It prints, for MySQL and for Redis:

- the write pause per switch (the longest time any writer waited for one write to be
  acknowledged, among writes that finished after the switch began): p50, p99 and max;
- the same figure over a window of the same length with no switch, right after: what
  64 threads in one process on this machine cost without any switch (the baseline);
- client errors (any exception a writer saw) and lost writes (acknowledged, then absent);
- the duration of each switch step: p50, p99 and max, and "held (switch)": what the
  switch itself reports holding writes, from its lock to its publish;
- with writer processes, where the pause goes, from the moment the lock reached the
  first agent: when it reached the last, when the publish reached the first and the
  last, and when the last write held across the publish ended (and the intent's
  spread over the agents);
  and the writer processes' full garbage collections (each a stall of the whole
  process), how many ended inside a switch window.

``--only mysql|redis`` switches one kind only.

``--heavy`` is the skeptic's run: 64 writer threads per resource (MySQL: autocommit
inserts, two-statement transactions and a SQLAlchemy QueuePool, a third each), 100
switches alternating direction, and before every tenth switch the target made to lag:
MySQL, its SQL thread blocked for 1.5 s (``LOCK TABLES`` on the replica); Redis, the
replica frozen (SIGSTOP) for 1.5 s. It adds switches refused and how long convergence
took after an induced lag.

``--simulated N`` keeps the control state in a Redis of its own, beside N simulated
instances that report heartbeats every second and mark each lock and each new epoch as
agents do (see benchmarks/fleet.py): a switch at fleet scale.

Usage: ``.venv/bin/python benchmarks/switch.py [--switches N] [--quick | --heavy]
[--in-process] [--simulated N]`` (``make bench-switch``). Results also go to
benchmarks/results/switch.json.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))         # the real-server harness and writers

import pymysql  # noqa: E402
import redis  # noqa: E402

import resil  # noqa: E402
from functional.writers import Tally, Writers  # noqa: E402
from resil import context, counters, registry  # noqa: E402
from resil.config import load_config  # noqa: E402
from resil.control import open_control_plane  # noqa: E402
from resil.errors import SwitchError  # noqa: E402
from resil.ops.switch import Switch  # noqa: E402
from servers import MariaDBPair, Redis, RedisPair  # noqa: E402
from servers.config import PASSWORDS, resil_toml  # noqa: E402


def mysql_writers(n: int, pool: bool = False, prefix: str = "", rate: float = 0.0) -> Writers:
    """n threads of autocommit INSERTs and multi-statement transactions, half each (with
    ``pool``: a third each, and a third through a SQLAlchemy QueuePool); every writer's
    name starts with ``prefix`` (unique per process); ``rate``: writes/s per writer."""
    writers = Writers(rate)
    engine = None
    if pool:
        import sqlalchemy
        # One connection per pooled thread, as an application sizes its pool: with fewer,
        # QueuePool starves some threads for its whole 30 s timeout under this load on
        # two cores, with resil or without it (measured), which is not what we measure.
        engine = sqlalchemy.create_engine("mysql+pymysql://app:apppw@orders-db/app",
                                          pool_size=(n + 2) // 3, max_overflow=0)
        insert = sqlalchemy.text("INSERT INTO bench VALUES (:w, :s, 3)")

    def connect() -> Any:
        return pymysql.connect(host="orders-db", user="app", password="apppw",
                               database="app", autocommit=True, read_timeout=10)

    def auto(tally: Tally, seq: int, conn: Any) -> None:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO bench VALUES (%s, %s, 0)", (tally.name, seq))
        tally.acked.append((tally.name, seq))

    def tx(tally: Tally, seq: int, conn: Any) -> None:
        conn.begin()
        with conn.cursor() as cur:
            cur.execute("INSERT INTO bench VALUES (%s, %s, 1)", (tally.name, seq))
            cur.execute("INSERT INTO bench VALUES (%s, %s, 2)", (tally.name, -seq))
        conn.commit()
        tally.acked.append((tally.name, seq))
        tally.acked.append((tally.name, -seq))

    def pooled(tally: Tally, seq: int) -> None:
        assert engine is not None
        with engine.begin() as conn:
            conn.execute(insert, {"w": tally.name, "s": seq})
        tally.acked.append((tally.name, seq))

    for i in range(n):
        if pool and i % 3 == 2:
            writers.add(f"{prefix}pool{i}", pooled)
        else:
            writers.add(f"{prefix}{'tx' if i % 2 else 'auto'}{i}", tx if i % 2 else auto,
                        setup=connect)
    return writers


def redis_writers(n: int, prefix: str = "", rate: float = 0.0) -> Writers:
    """n threads of INCR and SET, half each (names start with ``prefix``)."""
    client = redis.Redis(host="cache", socket_timeout=10)
    writers = Writers(rate)

    def incr(tally: Tally, seq: int) -> None:
        tally.acked.append(("incr", int(client.incr(f"bench:n:{tally.name}"))))

    def setter(tally: Tally, seq: int) -> None:
        client.set(f"bench:s:{tally.name}:{seq}", seq)
        tally.acked.append(("set", seq))

    for i in range(n):
        writers.add(f"{prefix}{'set' if i % 2 else 'incr'}{i}", setter if i % 2 else incr)
    return writers


def make_writers(kind: str, threads: int, prefix: str = "", rate: float = 0.0) -> Writers:
    """``kind``: "mysql", "mysql-pool" (a third through a QueuePool) or "redis"."""
    if kind == "redis":
        return redis_writers(threads, prefix, rate)
    return mysql_writers(threads, pool=kind == "mysql-pool", prefix=prefix, rate=rate)


class Fleet:
    """Writers spread over processes, each with its own agent, as an application runs
    them (gunicorn workers with threads): one Python process with 64 threads measures
    its own GIL as much as the switch. ``processes=0`` runs them in this process (whose
    agent the caller started)."""

    def __init__(self, kind: str, processes: int, threads: int, config_path: Path,
                 base: Path, rate: float = 0.0) -> None:
        self.kind, self.processes, self.threads, self.rate = kind, processes, threads, rate
        self.config_path, self.base = config_path, base
        self._local: Writers | None = None
        self._children: list[tuple[subprocess.Popen[str], Path]] = []
        self.counters: collections.Counter[str] = collections.Counter()
        """The agents' own event counters, summed over the writer processes."""
        self.applied: list[list[tuple[float, str, str]]] = []
        """Per writer process, when its agent applied each control state."""
        self.collections: list[list[tuple[float, float]]] = []
        """Per writer process, its full garbage collections (end, seconds)."""

    def start(self) -> None:
        if not self.processes:
            self._local = make_writers(self.kind, self.threads, rate=self.rate)
            self._local.start()
            return
        for i in range(self.processes):
            out = self.base / f"writers-{self.kind}-{i}.json"
            child = subprocess.Popen(
                [sys.executable, __file__, "--child", self.kind, str(self.threads), f"p{i}-",
                 str(self.config_path), str(out), str(self.rate)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                env={**os.environ, **PASSWORDS})
            self._children.append((child, out))
        for child, _ in self._children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError(f"writer process {child.args} did not start")

    def stop(self) -> Writers:
        if self._local is not None:
            self._local.stop()
            self.counters.update(counters.stats())
            return self._local
        tallies: list[dict[str, Any]] = []
        for child, _ in self._children:
            assert child.stdin is not None
            child.stdin.close()         # the child's signal to stop
        for child, out in self._children:
            child.wait(timeout=60)
            tallies.extend(json.loads(out.read_text()))
            self.counters.update(json.loads(out.with_suffix(".counters.json").read_text()))
            self.applied.append(json.loads(out.with_suffix(".applied.json").read_text()))
            self.collections.append(json.loads(out.with_suffix(".gc.json").read_text()))
        return Writers.from_json(tallies)


def child_main(kind: str, threads: int, prefix: str, config_path: str, out: str,
               rate: float) -> int:
    """A writer process: its own agent and ``threads`` writers, until stdin closes."""
    resil.start(load_config(config_path))
    applied = _record_applied()
    writers = make_writers(kind, threads, prefix, rate)
    writers.start()
    # Ready once every writer has connected and had a write acknowledged, and a second
    # more has passed: a first write's connect (and a pool's) on a machine busy starting
    # 8 processes took up to a second here, and a switch right then measured that.
    deadline = time.monotonic() + 60
    while any(not t.acked for t in writers.tallies) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    # A service that has run a while has had its first full garbage collection. A fresh
    # interpreter's comes after a fixed count of younger ones, so eight writer processes
    # with the same history all stalled for it at once, in one switch (up to 140 ms
    # here); afterwards a full collection waits until a quarter of the heap is new.
    gc.collect()
    full = _record_collections()
    print("ready", flush=True)
    sys.stdin.read()
    writers.stop()
    Path(out).write_text(json.dumps(writers.to_json()))
    Path(out).with_suffix(".counters.json").write_text(json.dumps(counters.stats()))
    Path(out).with_suffix(".applied.json").write_text(json.dumps(applied))
    Path(out).with_suffix(".gc.json").write_text(json.dumps(full))
    resil.stop()
    return 0


def _record_applied() -> list[tuple[float, str, str]]:
    """(monotonic time, primaries, kind) of every control state this process's agent
    applies, from its own log line (at INFO, kept out of the writers' stderr): when the
    intent, the lock and the publish reached this process. ``kind`` is "lock" when the
    state holds a lock, "intent" when it holds only an intent, else "state"."""
    applied: list[tuple[float, str, str]] = []

    class Applied(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.msg.startswith("resil: applied epoch"):
                agent = registry.runtime()
                state = agent.current_state() if agent is not None else None
                kind = "lock" if state is not None and state.locks else \
                    "intent" if state is not None and state.intents else "state"
                applied.append((time.monotonic(), str(record.args[-1]), kind))

    logger = logging.getLogger("resil")
    for handler in logger.handlers:
        handler.setLevel(max(handler.level, logging.WARNING))
    logger.addHandler(Applied(logging.INFO))
    logger.setLevel(logging.INFO)
    return applied


def _record_collections() -> list[tuple[float, float]]:
    """(monotonic end, seconds) of every full collection of this process's cyclic
    garbage collector: a stall of all its threads, which a switch window may include."""
    full: list[tuple[float, float]] = []
    begun = [0.0]

    def timed(phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            begun[0] = time.monotonic()
        else:
            full.append((time.monotonic(), time.monotonic() - begun[0]))

    gc.callbacks.append(timed)
    return full


def where(windows: list[tuple[float, float]], applied: list[list[tuple[float, str, str]]],
          writers: Writers) -> dict[str, list[float]]:
    """Per switch, where the pause goes, from the moment its lock reached the first
    agent: when it reached the last, when the publish (the state that moved the primary)
    reached the first and the last, and when the last write in flight as the publish
    began to arrive (a held one) ended. Also the intent's spread: from its first agent
    to its last."""
    found: dict[str, list[float]] = {"intent, first to last": [], "lock, last agent": [],
                                     "publish, first agent": [],
                                     "publish, last agent": [], "last held write ended": []}
    for began, until in windows:
        intents, locks, publishes = [], [], []
        for process in applied:
            seen = [(t, p, kind) for t, p, kind in process if began <= t <= until]
            locked = [i for i, (_, _, kind) in enumerate(seen) if kind == "lock"]
            if not locked:
                continue
            intents.extend(t for t, _, kind in seen[:locked[0]] if kind == "intent")
            locks.append(seen[locked[0]][0])
            publishes.extend(t for t, p, kind in seen[locked[0] + 1:locked[0] + 2]
                             if kind != "lock" and p != seen[locked[0]][1])
        if not locks or not publishes:
            continue
        first, published = min(locks), min(publishes)
        # The writes in flight when the publish began to arrive: the held ones (and any
        # slow one), each ending once its agent applied the publish.
        ends = [end for t in writers.tallies
                for lat, end in zip(t.latencies, t.ends, strict=False)
                if end - lat < published < end <= until] or [published]
        if intents:
            found["intent, first to last"].append(max(intents) - min(intents))
        found["lock, last agent"].append(max(locks) - first)
        found["publish, first agent"].append(min(publishes) - first)
        found["publish, last agent"].append(max(publishes) - first)
        found["last held write ended"].append(max(ends) - first)
    return found


def collections_in(windows: list[tuple[float, float]],
                   full: list[list[tuple[float, float]]]) -> dict[str, Any]:
    """The writer processes' full collections: how many, how many ended inside a switch
    window, and how long the longest took."""
    every = [c for process in full for c in process]
    inside = [c for c in every if any(a <= c[0] <= b for a, b in windows)]
    return {"count": len(every), "in_windows": len(inside),
            "longest": max((seconds for _, seconds in every), default=0.0)}


def block_sql_thread(pair: MariaDBPair, unit: str, seconds: float) -> None:
    """Make the server in ``unit`` (the switch's target, a replica) fall behind: its SQL
    thread waits on a table lock for ``seconds`` while the primary goes on."""
    server = pair.primary if unit == "a" else pair.replica
    with context.bypass():
        conn = server.connect(user="resil", password="resilpw", database="app")
    with conn.cursor() as cur:
        cur.execute("LOCK TABLES bench READ")
    threading.Timer(seconds, conn.close).start()
    time.sleep(0.3)                  # let the lag build before the switch starts


def freeze_replica(pair: RedisPair, unit: str, seconds: float) -> None:
    """Make the Redis server in ``unit`` (the switch's target) fall behind: frozen
    (SIGSTOP) for ``seconds`` while the primary takes writes, then thawed."""
    server = pair.primary if unit == "a" else pair.replica
    server.freeze()
    threading.Timer(seconds, server.thaw).start()
    time.sleep(0.3)


def lost_mysql(pair: MariaDBPair, writers: Writers) -> int:
    present = set(pair.primary.root_sql("SELECT writer, seq FROM app.bench"))
    present |= set(pair.replica.root_sql("SELECT writer, seq FROM app.bench"))
    return sum(1 for t in writers.tallies for a in t.acked if a not in present)


def lost_redis(primary: redis.Redis, writers: Writers) -> int:
    lost = 0
    for t in writers.tallies:
        for kind, value in t.acked:
            if kind == "incr":
                lost += int(int(primary.get(f"bench:n:{t.name}") or 0) < value)
            else:
                lost += int(not primary.exists(f"bench:s:{t.name}:{value}"))
    return lost


SETTLE = 5.0
"""Seconds the writers run before the first switch."""

STEP_LINE = re.compile(r"^(\S+)\s+([0-9.]+) ms  ")
HELD_LINE = re.compile(r"new writes held at most ([0-9.]+) ms")


def cli_switch(config_path: Path) -> Callable[[str, str], list[tuple[str, float]]]:
    """A switch as an operator runs it: ``resil db switch`` in its own process (so its
    steps do not compete for this process's GIL with the writers). Returns the steps
    (name, seconds) it printed; raises SwitchError with its message when it refused."""
    binary = Path(sys.executable).parent / "resil"

    def switch(resource: str, target: str) -> list[tuple[str, float]]:
        run = subprocess.run([str(binary), "db", "switch", resource, "--to", target,
                              "--config", str(config_path)], capture_output=True,
                             text=True, timeout=120, env={**os.environ, **PASSWORDS})
        if run.returncode != 0:
            raise SwitchError((run.stderr.strip() or run.stdout.strip()).splitlines()[-1])
        lines = run.stdout.splitlines()
        steps = [(m[1], float(m[2]) / 1000) for line in lines if (m := STEP_LINE.match(line))]
        # What the switch itself says held writes: its lock published to its publish.
        steps += [("held (switch)", float(m[1]) / 1000) for line in lines
                  if (m := HELD_LINE.search(line))]
        return steps
    return switch


def in_process_switch(config: Any) -> Callable[[str, str], list[tuple[str, float]]]:
    """The same procedure run in this process, among the writers' threads."""
    plane = open_control_plane(config.control_url, config.topology, config.signing_key)

    def switch(resource: str, target: str) -> list[tuple[str, float]]:
        done = Switch(config, plane, resource, target, out=lambda line: None).run()
        return [(step.name, step.seconds) for step in done]
    return switch


def run_switches(switch: Callable[[str, str], list[tuple[str, float]]], resource: str,
                 fleet: Fleet, count: int, lag: Callable[[str], None] | None = None,
                 lag_every: int = 0) -> tuple[dict[str, Any], Writers]:
    """``count`` switches back and forth under ``fleet``; before every ``lag_every``-th
    one, ``lag(target_unit)`` makes the target fall behind. After each switch, a window
    as long as the switch's (from its start to 0.4 s after it ended) measures the same
    figure with no switch: the baseline the pauses are compared with."""
    windows: list[tuple[float, float]] = []
    quiet_windows: list[tuple[float, float]] = []
    steps: dict[str, list[float]] = {}
    refused: list[str] = []
    lagged: list[float] = []
    primary = "a"
    fleet.start()
    # The first seconds after the writer processes report ready are not steady (pools
    # filling, connect bursts): a 0.5 s settle here once let an 830 ms stall of every
    # writer, 1.4 s before the first switch's precheck, count as that switch's pause.
    time.sleep(SETTLE)
    try:
        for i in range(count):
            target = "b" if primary == "a" else "a"
            induced = bool(lag and lag_every and i % lag_every == lag_every - 1)
            if induced and lag is not None:
                lag(target)
            began = time.monotonic()
            try:
                done = switch(resource, target)
            except SwitchError as exc:
                refused.append(str(exc))
                time.sleep(0.4)
                continue
            primary = target
            time.sleep(0.4)
            windows.append((began, time.monotonic()))
            calm = time.monotonic()
            time.sleep(calm - began)
            quiet_windows.append((calm, time.monotonic()))
            for name, seconds in done:
                steps.setdefault(name, []).append(seconds)
                if induced and name == "converge":
                    lagged.append(seconds)
    finally:
        writers = fleet.stop()
    each = [writers.pauses_since(a, b) for a, b in windows]
    pauses = [max(p) for p in each]
    quiet = [max(writers.pauses_since(a, b)) for a, b in quiet_windows]
    return {"pauses": pauses, "quiet": quiet, "writer_pauses": [x for p in each for x in p],
            "where": where(windows, fleet.applied, writers),
            "collections": collections_in(windows, fleet.collections),
            "steps": steps, "windows": windows, "errors": len(writers.errors),
            "acked": writers.acked, "error_samples": writers.errors[:3],
            "refused": refused, "converge_after_lag": lagged, "primary": primary,
            "moved": {k: v for k, v in fleet.counters.items()
                      if k in ("mysql_connections_moved", "mysql_spares_taken",
                               "redis_connections_moved", "redis_spares_taken",
                               "held_writes")}}, writers


def ms(values: list[float]) -> str:
    if not values:
        return "-"
    p99 = statistics.quantiles(values, n=100, method="inclusive")[98] \
        if len(values) > 1 else values[0]
    return (f"p50 {statistics.median(values) * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms   "
            f"max {max(values) * 1000:7.1f} ms")


def report(title: str, result: dict[str, Any]) -> None:
    print(f"\n{title}")
    print(f"  write pause per switch   {ms(result['pauses'])}")
    print(f"  each writer, per switch  {ms(result['writer_pauses'])}")
    print(f"  same window, no switch   {ms(result['quiet'])}")
    print(f"  client errors            {result['errors']}")
    print(f"  acknowledged writes      {result['acked']}")
    print(f"  lost writes              {result['lost']}")
    print(f"  switches done / refused  {len(result['pauses'])} / {len(result['refused'])}")
    if result.get("moved"):
        print("  agents' counters         " + ", ".join(
            f"{k} {v}" for k, v in sorted(result["moved"].items())))
    if result["converge_after_lag"]:
        print(f"  converge after lag       {ms(result['converge_after_lag'])}")
    for reason in result["refused"][:3]:
        print(f"  refused: {reason[:150]}")
    print("  steps")
    for name, values in result["steps"].items():
        print(f"    {name:<23}{ms(values)}")
    full = result["collections"]
    if full["count"]:
        print(f"  writers' full collections {full['count']} ({full['in_windows']} in switch "
              f"windows), longest {full['longest'] * 1000:.1f} ms")
    if any(result["where"].values()):
        print("  from the lock reaching the first agent (writer processes only)")
        for name, values in result["where"].items():
            print(f"    {name:<21}  {ms(values)}")
    for sample in result["error_samples"]:
        print(f"  error: {sample.splitlines()[0]}")


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        kind, threads, prefix, config_path, out, rate = sys.argv[2:8]
        return child_main(kind, int(threads), prefix, config_path, out, float(rate))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--switches", type=int, help="switches per resource (default 10; "
                        "100 with --heavy)")
    parser.add_argument("--quick", action="store_true", help="4 switches per resource")
    parser.add_argument("--heavy", action="store_true",
                        help="64 writers, 100 switches, lag induced before every tenth")
    parser.add_argument("--processes", type=int, help="writer processes, each with its "
                        "own agent, sharing the writers (default 8 with --heavy, else 0: "
                        "all in this process)")
    parser.add_argument("--rate", type=float, default=0.0, metavar="N",
                        help="writes per second per writer (default 0: as fast as each "
                             "can, which saturates two cores: the pause then measures the "
                             "machine's queueing as much as the switch)")
    parser.add_argument("--simulated", type=int, default=0, metavar="N",
                        help="a Redis control plane shared with N simulated instances")
    parser.add_argument("--only", choices=("mysql", "redis"),
                        help="switch only this kind of resource")
    parser.add_argument("--in-process", action="store_true",
                        help="run the switch in this process, among the writer threads, "
                             "instead of as `resil db switch` in its own")
    args = parser.parse_args()
    count = args.switches or (4 if args.quick else 100 if args.heavy else 10)
    threads = 64 if args.heavy else 16
    redis_threads = threads if args.heavy else 8
    processes = args.processes if args.processes is not None else (8 if args.heavy else 0)
    if processes < 0 or (processes and (threads % processes or redis_threads % processes)):
        parser.error(f"--processes must divide the writers ({threads} and {redis_threads})")
    os.environ.update(PASSWORDS)
    base = Path(tempfile.mkdtemp(prefix="resil-bench-switch-"))
    with MariaDBPair(base / "mysql") as mysql, RedisPair(base / "redis") as cache:
        mysql.primary.root_sql("CREATE TABLE app.bench (writer VARCHAR(16), seq INT, "
                               "part INT, PRIMARY KEY (writer, seq))")
        mysql.wait_caught_up()
        path = base / "resil.toml"
        control = Redis(base, "control") if args.simulated else None
        url = (base / "state.json").as_uri() if control is None else \
            f"redis://127.0.0.1:{control.port}/0?prefix=bench"
        if control is not None:
            control.start()
        path.write_text(resil_toml(url, mysql=mysql, redis=cache) if control is None else
                        resil_toml(url, mysql=mysql, redis=cache,
                                   control="heartbeat_interval = 1.0"))
        config = load_config(path)
        simulated = None
        if control is not None:     # in a process of its own: not among the writers
            simulated = subprocess.Popen(
                [sys.executable, str(ROOT / "benchmarks" / "fleet.py"), "--simulate",
                 str(args.simulated), "--config", str(path), "--mark", "orders-db,cache"])
            time.sleep(3)
        local = args.in_process or not processes
        if local:
            resil.start(config)
        try:
            switch = in_process_switch(config) if args.in_process else cli_switch(path)

            def fleet(kind: str, n: int) -> Fleet:
                return Fleet(kind, processes, n // max(processes, 1), path, base, args.rate)
            my = rd = None
            if args.only != "redis":
                my, writers = run_switches(
                    switch, "orders-db",
                    fleet("mysql-pool" if args.heavy else "mysql", threads), count,
                    lag=lambda unit: block_sql_thread(mysql, unit, 1.5),
                    lag_every=10 if args.heavy else 0)
                my["lost"] = lost_mysql(mysql, writers)
            if args.only != "mysql":
                rd, writers = run_switches(
                    switch, "cache", fleet("redis", redis_threads), count,
                    lag=lambda unit: freeze_replica(cache, unit, 1.5),
                    lag_every=10 if args.heavy else 0)
                with context.bypass():
                    current = cache.primary if rd["primary"] == "a" else cache.replica
                    rd["lost"] = lost_redis(current.client(), writers)
        finally:
            if local:
                resil.stop()
            if simulated is not None:
                simulated.terminate()
                simulated.wait(10)
            if control is not None:
                control.destroy()
    shutil.rmtree(base, ignore_errors=True)     # a failed run keeps its folder to look at
    shape = f" in {processes} processes" if processes else " in one process"
    if args.simulated:
        shape += f", beside {args.simulated} simulated instances"
    if args.rate:
        shape += f", {args.rate:g} writes/s each"
    if my is not None:
        report(f"MySQL: {threads} writers{shape}, {count} switches"
               + (", lag before every tenth" if args.heavy else ""), my)
    if rd is not None:
        report(f"Redis: {redis_threads} writers{shape}, {count} switches", rd)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "switch.json").write_text(json.dumps({"mysql": my, "redis": rd}, indent=1))
    if my is None or rd is None:
        return 0
    bad = my["errors"] or my["lost"] or rd["errors"] or rd["lost"]
    mysql_max = max(my["pauses"] or [0])
    redis_max = max(rd["pauses"] or [0])
    mysql_p99 = statistics.quantiles(my["pauses"], n=100, method="inclusive")[98] \
        if len(my["pauses"]) > 1 else mysql_max
    print("\ntargets: 0 client errors, 0 lost writes, MySQL pause p99 <= 250 ms and max "
          "<= 500 ms, Redis max <= 100 ms:", "MET" if not bad and mysql_p99 <= 0.25
          and mysql_max <= 0.5 and redis_max <= 0.1 else "MISSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
