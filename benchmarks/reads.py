"""Same-unit reads: a read-heavy workload in the unit without the primary, with
``reads = "primary"`` and with ``reads = "local"``, over a slow link to the primary.

Starts a MariaDB GTID pair on loopback (primary in unit a, replica in unit b) with a
table ``app.kv`` of 5,000 rows, and a relay in front of the primary: a TCP proxy, in a
process of its own (it shares no GIL with the workload), that delays every chunk by
``--delay`` ms (default 5) in each direction. Each direction is a queue of chunks with
due times: order is kept, chunks in flight overlap as on a long link (the delay is per
chunk, never added up per byte or per queued chunk), and the two directions never wait
for each other. The ``resil.toml`` declares unit a's endpoint as the relay and unit b's
as the replica's real port, so everything the workload (in unit b) sends to the primary
pays the delay both ways; the replica itself replicates from the primary directly.

Each mode runs in a child process of its own under ``resil.start()``: N threads
(``--threads``, default 8), each with its own autocommit PyMySQL connection to
``host="orders-db"``, run a warm-up (``--warmup``, 2 s: the replica watch needs a couple
of samples before local reads start), then ``--seconds`` (default 10) measured. 90 % of
the operations read a random row (``SELECT v FROM kv WHERE id = %s``); 10 % increment
one of the thread's own rows (``UPDATE kv SET v = v + 1 WHERE id = %s``) and read it back
at once on the same connection, which must see the new value (a violation otherwise:
there must be none). Between the modes the table is reset and the replica caught up.

It prints, per mode: statements per second, the p50 and p99 latencies of reads, writes
and reads after writes, read-after-write violations, errors and, for ``local``, resil's
``db_reads`` outcome counters over the measured window; then the ratios local/primary.
Before the modes it times ``SELECT 1`` directly on the primary and through the relay:
the link the figures are about.

With ``--redis`` the same comparison runs for a Redis pair instead of MariaDB
(``RedisPair``: primary in unit a behind the relay, replica in unit b), resource
``cache`` (``max_lag`` as above; ``read_wait`` concerns MySQL only). The keys ``kv:1``
to ``kv:5000`` hold 0. Each thread has its own ``redis.Redis(host="cache",
decode_responses=True)`` client, without retries (every error is seen and counted, and
an ``INCR`` is never sent twice); 90 % of the operations ``GET`` a random key, 10 %
``INCR`` one of the thread's own keys and ``GET`` it at once, which must return the new
value. The keys are reset and the replica caught up between the modes; the link is
timed with ``PING``; the counters are ``db_reads:cache:b:<outcome>``. A client's reads
go to the primary for a while after each of its writes (read-your-writes per connection
pool: until the replica's offset is known to cover the write), which the counters show
as ``fallback_wait``.

Usage: ``.venv/bin/python benchmarks/reads.py [--redis] [--delay MS] [--threads N]
[--seconds S] [--warmup S] [--quick]`` (``make bench-reads``; ``--quick``: 3 s measured,
4 threads). Results also go to benchmarks/results/reads.json (with ``--redis``:
benchmarks/results/reads-redis.json). A measurement, not a test: the exit status is
non-zero only when something goes wrong (130 when interrupted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))         # the real-server harness of the test suite

import pymysql  # noqa: E402
import redis  # noqa: E402
from redis.backoff import NoBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402

import resil  # noqa: E402
from resil import counters  # noqa: E402
from servers import (  # noqa: E402
    APP_DATABASE,
    APP_PASSWORD,
    APP_USER,
    MariaDBPair,
    RedisPair,
    ports,
)
from servers.ports import stop_servers_on_sigterm  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "reads.json"
REDIS_RESULTS = ROOT / "benchmarks" / "results" / "reads-redis.json"
MODES = ("primary", "local")
ROWS = 5000
WRITE_SHARE = 0.1           # of the operations; each write is read back at once
MAX_LAG = 1.0
READ_WAIT = 0.1
#: The counters of the reads of orders-db by this process's unit (b), by outcome.
READS_PREFIX = "db_reads:orders-db:b:"
COMPANIONS = "mysql_read_companions_opened"
CHUNK = 65536               # the relay's largest read

READ = "SELECT v FROM kv WHERE id = %s"
WRITE = "UPDATE kv SET v = v + 1 WHERE id = %s"
#: The same for ``--redis``: the reads of cache by unit b, and the keys.
REDIS_READS_PREFIX = "db_reads:cache:b:"
KEY = "kv:{}"

CONFIG = """\
unit = "b"

[control]
url = "{state}"

[admin]
listen = "127.0.0.1:0"

[resources.orders-db]
kind = "mysql"
primary = "a"
endpoints = {{ a = "127.0.0.1:{relay}", b = "127.0.0.1:{replica}" }}
aliases = ["orders-db"]
reads = "{reads}"
max_lag = {max_lag}
read_wait = {read_wait}
"""

REDIS_CONFIG = """\
unit = "b"

[control]
url = "{state}"

[admin]
listen = "127.0.0.1:0"

[resources.cache]
kind = "redis"
primary = "a"
endpoints = {{ a = "127.0.0.1:{relay}", b = "127.0.0.1:{replica}" }}
aliases = ["cache"]
reads = "{reads}"
max_lag = {max_lag}
"""


@dataclass(frozen=True)
class Settings:
    """What one run measures; the same for both modes."""

    delay_ms: float
    threads: int
    seconds: float
    warmup: float
    seed: int
    rows: int = ROWS
    write_share: float = WRITE_SHARE
    max_lag: float = MAX_LAG
    read_wait: float = READ_WAIT


# --------------------------------------------------------------------------- the relay

async def _forward(source: asyncio.StreamReader, source_writer: asyncio.StreamWriter,
                   sink: asyncio.StreamWriter, delay: float) -> None:
    """One direction of a relayed connection: every chunk read from ``source`` is
    written to ``sink`` ``delay`` seconds after it arrived, in order. Reading never waits
    for writing, so chunks in flight overlap; an end of stream is passed on (half-close)
    after the same delay."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def receive() -> None:
        while True:
            try:
                data = await source.read(CHUNK)
            except OSError:
                data = b""
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                return

    async def send() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                if not data:
                    if sink.can_write_eof():
                        sink.write_eof()
                    else:
                        sink.close()
                    return
                sink.write(data)
                await sink.drain()
            except OSError:
                source_writer.close()   # nothing more can be delivered: stop reading
                return

    await asyncio.gather(receive(), send())


async def _relay_connection(client: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                            target_port: int, delay: float) -> None:
    try:
        server, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(_forward(client, client_writer, server_writer, delay),
                             _forward(server, server_writer, client_writer, delay))
    finally:
        client_writer.close()
        server_writer.close()


async def _serve_relay(target_port: int, delay: float) -> None:
    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _relay_connection(reader, writer, target_port, delay)

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"ready {port}", flush=True)
    async with server:
        await server.serve_forever()


def relay_main(target_port: int, delay_ms: float) -> int:
    """The relay process: listens on a free loopback port, prints ``ready PORT``, and
    relays to ``target_port`` until it is terminated."""
    asyncio.run(_serve_relay(target_port, delay_ms / 1000))
    return 0


class Relay:
    """The relay in its own process, stopped by PID (registered, so that it is stopped
    at exit however the run ends, like the servers)."""

    def __init__(self, target_port: int, delay_ms: float, log: Path) -> None:
        self.target_port, self.delay_ms, self.log = target_port, delay_ms, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> None:
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--relay",
                 str(self.target_port), str(self.delay_ms)],
                stdout=subprocess.PIPE, stderr=err, start_new_session=True)
        ports.register(self)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().split()
        if len(line) != 2 or line[0] != "ready":
            raise RuntimeError(f"the relay did not start; see {self.log}")
        self.port = int(line[1])

    def destroy(self) -> None:
        ports.stop_process(self.proc, 5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        ports.unregister(self)


# --------------------------------------------------------------------------- the workload

@dataclass
class Tally:
    """One thread's measurements: latencies (seconds) of the measured window, and
    violations and errors over the whole run (warm-up included)."""

    reads: list[float] = field(default_factory=list)
    writes: list[float] = field(default_factory=list)
    read_after_write: list[float] = field(default_factory=list)
    checked: int = 0            # reads after writes compared, warm-up included
    violations: int = 0
    errors: list[str] = field(default_factory=list)
    ports: set[int] = field(default_factory=set)


@dataclass
class Schedule:
    """When the warm-up ends and the measurement begins, and when it ends
    (``time.perf_counter()``); set once every thread has connected."""

    measure: float = 0.0
    end: float = 0.0


def connect() -> Any:
    """A connection as the application opens it: by the resource's name, autocommit."""
    return pymysql.connect(host="orders-db", user=APP_USER, password=APP_PASSWORD,
                           database=APP_DATABASE, autocommit=True, connect_timeout=5,
                           read_timeout=30, write_timeout=30, ssl_disabled=True)


def worker(index: int, settings: Settings, schedule: Schedule, start: threading.Barrier,
           tally: Tally) -> None:
    """One application thread: its own connection; reads of any row, writes of its own
    rows (so that the value a read after a write must see is known), each write read
    back at once."""
    rng = random.Random(settings.seed + index)
    own = list(range(1 + index, settings.rows + 1, settings.threads))
    expected = dict.fromkeys(own, 0)        # the table is reset before every mode
    try:
        conn = connect()
    except (pymysql.err.MySQLError, OSError) as exc:
        tally.errors.append(f"connect: {type(exc).__name__}: {exc}")
        start.abort()                       # the run cannot be measured
        return
    tally.ports.add(conn.port)
    start.wait()
    cur = conn.cursor()
    try:
        while True:
            began = time.perf_counter()
            if began >= schedule.end:
                return
            measured = began >= schedule.measure
            row = 0
            try:
                if rng.random() < settings.write_share:
                    row = rng.choice(own)
                    cur.execute(WRITE, (row,))
                    wrote = time.perf_counter()
                    expected[row] += 1
                    cur.execute(READ, (row,))
                    seen = cur.fetchone()
                    done = time.perf_counter()
                    tally.checked += 1
                    if seen is None or seen[0] != expected[row]:
                        tally.violations += 1
                    if measured:
                        tally.writes.append(wrote - began)
                        tally.read_after_write.append(done - wrote)
                else:
                    cur.execute(READ, (rng.randint(1, settings.rows),))
                    cur.fetchone()
                    if measured:
                        tally.reads.append(time.perf_counter() - began)
            except (pymysql.err.MySQLError, OSError) as exc:
                tally.errors.append(f"{type(exc).__name__}: {exc}")
                if conn.open:
                    conn.close()
                conn = connect()
                cur = conn.cursor()
                if row:     # whether the write applied is unknown: ask the primary
                    cur.execute(f"{READ} FOR UPDATE", (row,))
                    expected[row] = int(cur.fetchone()[0])
    except Exception as exc:        # a failed reconnect: this thread stops, reported
        tally.errors.append(f"thread ended: {type(exc).__name__}: {exc}")
    finally:
        if conn.open:
            conn.close()


def redis_client() -> Any:
    """A client as the application opens it: by the resource's name. No retries: every
    error is counted (as with PyMySQL), and an ``INCR`` whose reply was lost is never
    sent again."""
    return redis.Redis(host="cache", decode_responses=True, socket_connect_timeout=5,
                       socket_timeout=30, retry=Retry(NoBackoff(), 0))


def pool_ports(client: Any) -> set[int]:
    """The ports the client's pooled connections are connected to (resil points them
    at the primary's endpoint when they connect)."""
    pool = client.connection_pool
    conns = [*pool._get_free_connections(), *pool._get_in_use_connections()]
    return {int(c.port) for c in conns if getattr(c, "_sock", None) is not None}


def primary_value(client: Any, key: str) -> int:
    """``key``'s value on the primary (a pipeline's commands never go to the replica)."""
    with client.pipeline(transaction=False) as pipe:
        value = pipe.get(key).execute()[0]
    return int(value or 0)


def redis_worker(index: int, settings: Settings, schedule: Schedule,
                 start: threading.Barrier, tally: Tally) -> None:
    """:func:`worker` for ``--redis``: its own client; ``GET`` of any key, ``INCR`` of
    its own keys, each ``INCR`` followed at once by a ``GET`` of the key."""
    rng = random.Random(settings.seed + index)
    own = list(range(1 + index, settings.rows + 1, settings.threads))
    expected = dict.fromkeys(own, 0)        # the keys are reset before every mode
    client = redis_client()
    try:
        client.ping()                       # connects (PING goes to the primary)
    except (redis.RedisError, OSError) as exc:
        tally.errors.append(f"connect: {type(exc).__name__}: {exc}")
        start.abort()                       # the run cannot be measured
        client.close()
        return
    tally.ports |= pool_ports(client)
    start.wait()
    try:
        while True:
            began = time.perf_counter()
            if began >= schedule.end:
                return
            measured = began >= schedule.measure
            row = 0
            try:
                if rng.random() < settings.write_share:
                    row = rng.choice(own)
                    key = KEY.format(row)
                    client.incr(key)
                    wrote = time.perf_counter()
                    expected[row] += 1
                    seen = client.get(key)
                    done = time.perf_counter()
                    tally.checked += 1
                    if seen != str(expected[row]):
                        tally.violations += 1
                    if measured:
                        tally.writes.append(wrote - began)
                        tally.read_after_write.append(done - wrote)
                else:
                    client.get(KEY.format(rng.randint(1, settings.rows)))
                    if measured:
                        tally.reads.append(time.perf_counter() - began)
            except (redis.RedisError, OSError) as exc:
                tally.errors.append(f"{type(exc).__name__}: {exc}")
                if row:     # whether the INCR applied is unknown: ask the primary
                    expected[row] = primary_value(client, KEY.format(row))
    except Exception as exc:        # the primary could not be asked: this thread stops
        tally.errors.append(f"thread ended: {type(exc).__name__}: {exc}")
    finally:
        tally.ports |= pool_ports(client)
        client.close()


def quantiles(values: list[float]) -> dict[str, float]:
    """Count, mean and percentiles, in milliseconds."""
    if not values:
        return {"count": 0}
    ms = sorted(v * 1000 for v in values)
    cuts = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {"count": len(ms), "mean": statistics.fmean(ms), "p50": statistics.median(ms),
            "p90": cuts[89], "p99": cuts[98], "max": ms[-1]}


def reads_counters(prefix: str = READS_PREFIX) -> dict[str, float]:
    return {k: v for k, v in counters.stats().items()
            if k.startswith(prefix) or k == COMPANIONS}


def child_main(spec: dict[str, Any]) -> int:
    """One mode: the agent, the threads, the warm-up and the measured window; the
    figures are written to ``spec["out"]``."""
    settings = Settings(**spec["settings"])
    kind = spec.get("kind", "mysql")
    prefix = REDIS_READS_PREFIX if kind == "redis" else READS_PREFIX
    target = redis_worker if kind == "redis" else worker
    if resil.start(spec["config"]) is None:
        raise RuntimeError("resil.start() returned None: unset RESIL_DISABLED to benchmark")
    schedule = Schedule()

    def begin() -> None:        # run by the last thread to connect, before any goes on
        now = time.perf_counter()
        schedule.measure = now + settings.warmup
        schedule.end = schedule.measure + settings.seconds

    start = threading.Barrier(settings.threads, action=begin)
    tallies = [Tally() for _ in range(settings.threads)]
    threads = [threading.Thread(target=target, name=f"reader{i}",
                                args=(i, settings, schedule, start, tallies[i]))
               for i in range(settings.threads)]
    for thread in threads:
        thread.start()
    while not schedule.measure:
        if start.broken:
            errors = [e for t in tallies for e in t.errors]
            raise RuntimeError(f"a thread could not connect: {errors[:1]}")
        time.sleep(0.01)
    time.sleep(max(0.0, schedule.measure - time.perf_counter()))
    before = reads_counters(prefix)
    for thread in threads:
        thread.join()
    after = reads_counters(prefix)
    every = {name: [v for t in tallies for v in getattr(t, name)]
             for name in ("reads", "writes", "read_after_write")}
    statements = sum(len(v) for v in every.values())
    errors = [e for t in tallies for e in t.errors]
    result: dict[str, Any] = {
        "mode": spec["mode"],
        "statements_per_s": statements / settings.seconds,
        "statements": statements,
        "latency_ms": {name: quantiles(values) for name, values in every.items()},
        "read_after_write_checked": sum(t.checked for t in tallies),
        "violations": sum(t.violations for t in tallies),
        "errors": len(errors), "error_samples": errors[:5],
        "connected_to_ports": sorted({p for t in tallies for p in t.ports}),
        "db_reads": {k[len(prefix):]: after[k] - before.get(k, 0)
                     for k in sorted(after) if k.startswith(prefix)},
        "db_reads_whole_run": {k[len(prefix):]: v for k, v in sorted(after.items())
                               if k.startswith(prefix)},
    }
    if kind == "mysql":     # redis-py's companions are connection pools, not counted
        result["companions_opened"] = after.get(COMPANIONS, 0)
    result["faults"] = counters.faults()
    Path(spec["out"]).write_text(json.dumps(result, indent=1))
    resil.stop()
    return 0


# --------------------------------------------------------------------------- the run

def prepare(pair: MariaDBPair, rows: int) -> None:
    """``app.kv`` with ``rows`` rows, on both servers."""
    values = ",".join(f"({i},0)" for i in range(1, rows + 1))
    pair.primary.root_sql(f"CREATE TABLE app.kv (id INT PRIMARY KEY, v INT NOT NULL);"
                          f"INSERT INTO app.kv VALUES {values}")
    pair.wait_caught_up()


def reset(pair: MariaDBPair) -> None:
    """Every row back to 0 (what the threads expect when they start), on both servers."""
    pair.primary.root_sql("UPDATE app.kv SET v = 0")
    pair.wait_caught_up(timeout=30)


def prepare_redis(pair: RedisPair, rows: int) -> None:
    """The keys ``kv:1`` to ``kv:<rows>`` at 0, on both servers (also the reset between
    the modes)."""
    client = pair.primary.client()
    try:
        client.mset({KEY.format(i): 0 for i in range(1, rows + 1)})
    finally:
        client.close()
    pair.wait_caught_up(timeout=30)


def link_check(direct_port: int, relay_port: int, n: int = 30) -> dict[str, float]:
    """Median ``SELECT 1`` round trip (ms) on the primary directly and through the
    relay, without resil: what one statement to the primary pays in each case."""
    found = {}
    for name, port in (("direct_ms", direct_port), ("relay_ms", relay_port)):
        conn = pymysql.connect(host="127.0.0.1", port=port, user=APP_USER,
                               password=APP_PASSWORD, database=APP_DATABASE,
                               connect_timeout=5, read_timeout=30, ssl_disabled=True)
        try:
            with conn.cursor() as cur:
                times = []
                for _ in range(n + 3):
                    began = time.perf_counter()
                    cur.execute("SELECT 1")
                    cur.fetchone()
                    times.append(time.perf_counter() - began)
            found[name] = statistics.median(times[3:]) * 1000
        finally:
            conn.close()
    return found


def redis_link_check(direct_port: int, relay_port: int, n: int = 30) -> dict[str, float]:
    """:func:`link_check` for ``--redis``, with ``PING``."""
    found = {}
    for name, port in (("direct_ms", direct_port), ("relay_ms", relay_port)):
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=5,
                             socket_timeout=30, retry=Retry(NoBackoff(), 0))
        try:
            times = []
            for _ in range(n + 3):
                began = time.perf_counter()
                client.ping()
                times.append(time.perf_counter() - began)
            found[name] = statistics.median(times[3:]) * 1000
        finally:
            client.close()
    return found


def clean_env() -> dict[str, str]:
    """The children's environment: ours minus resil's own settings (an inherited
    ``RESIL_RESOURCES_ORDERS_DB_READS`` would change the mode under test)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RESIL_")}


def run_mode(mode: str, settings: Settings, base: Path, relay: Relay,
             replica_port: int, kind: str = "mysql") -> dict[str, Any]:
    """One mode in a child process of its own; its figures."""
    config = base / f"resil-{mode}.toml"
    config.write_text((REDIS_CONFIG if kind == "redis" else CONFIG).format(
        state=(base / f"state-{mode}.json").as_uri(), relay=relay.port,
        replica=replica_port, reads=mode, max_lag=settings.max_lag,
        read_wait=settings.read_wait))
    out = base / f"{mode}.json"
    spec = {"mode": mode, "kind": kind, "config": str(config), "out": str(out),
            "settings": asdict(settings)}
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child",
                             json.dumps(spec)], env=clean_env(), start_new_session=True)
    try:
        code = proc.wait(timeout=settings.warmup + settings.seconds + 120)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        ports.stop_process(proc, 10)        # by PID; nothing if it already exited
    if code != 0 or not out.exists():
        raise RuntimeError(f"the {mode} mode's process failed (exit {code})")
    result: dict[str, Any] = json.loads(out.read_text())
    if result["connected_to_ports"] != [relay.port]:
        raise RuntimeError(f"{mode}: the application's connections reached ports "
                           f"{result['connected_to_ports']}, not the relay's {relay.port}: "
                           "resil did not route them")
    return result


def ratios(primary: dict[str, Any], local: dict[str, Any]) -> dict[str, float | None]:
    """local/primary for throughput and each latency figure."""
    found: dict[str, float | None] = {
        "statements_per_s": local["statements_per_s"] / primary["statements_per_s"]
        if primary["statements_per_s"] else None}
    for name, figures in primary["latency_ms"].items():
        for q in ("p50", "p99"):
            p, m = figures.get(q), local["latency_ms"][name].get(q)
            found[f"{name}_{q}"] = m / p if p and m is not None else None
    return found


def machine() -> dict[str, Any]:
    """Enough about the machine to compare runs."""
    debian = Path("/etc/debian_version")
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "debian": debian.read_text().strip() if debian.exists() else None,
            "python": platform.python_version()}


def versions(**measured: str) -> dict[str, str]:
    """The versions measured (``measured``: the client's and the server's, by name); for
    resil also where it was imported from and its commit."""
    source = Path(resil.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=source,
                                capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {"resil": resil.__version__, "resil_source": str(source),
            "resil_commit": commit or "unknown", **measured}


def run(settings: Settings, quick: bool, base: Path) -> dict[str, Any]:
    """Servers and relay up, both modes, everything stopped again; the report."""
    began = time.perf_counter()
    print("starting a MariaDB pair and the relay on loopback ...", flush=True)
    with MariaDBPair(base / "mysql") as pair:
        prepare(pair, settings.rows)
        mariadb = str(pair.primary.root_sql("SELECT VERSION()")[0][0])
        relay = Relay(pair.primary.port, settings.delay_ms, base / "relay.log")
        try:
            relay.start()
            link = link_check(pair.primary.port, relay.port)
            print(f"primary :{pair.primary.port} (unit a, through the relay :{relay.port}), "
                  f"replica :{pair.replica.port} (unit b); SELECT 1 round trip "
                  f"{link['direct_ms']:.2f} ms direct, {link['relay_ms']:.2f} ms through "
                  "the relay", flush=True)
            modes = {}
            for mode in MODES:
                reset(pair)
                print(f"reads = \"{mode}\": {settings.threads} threads, {settings.warmup:g} s "
                      f"warm-up + {settings.seconds:g} s ...", flush=True)
                modes[mode] = run_mode(mode, settings, base, relay, pair.replica.port)
        finally:
            relay.destroy()
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": quick, "machine": machine(),
        "versions": versions(pymysql=version("PyMySQL"), mariadb=mariadb),
        "settings": asdict(settings), "link": link, "modes": modes,
        "ratios_local_to_primary": ratios(modes["primary"], modes["local"]),
        "runtime_s": time.perf_counter() - began,
    }


def run_redis(settings: Settings, quick: bool, base: Path) -> dict[str, Any]:
    """:func:`run` for ``--redis``: a Redis pair instead of MariaDB."""
    began = time.perf_counter()
    print("starting a Redis pair and the relay on loopback ...", flush=True)
    with RedisPair(base / "redis") as pair:
        prepare_redis(pair, settings.rows)
        server = str(pair.primary.info("server")["redis_version"])
        relay = Relay(pair.primary.port, settings.delay_ms, base / "relay.log")
        try:
            relay.start()
            link = redis_link_check(pair.primary.port, relay.port)
            print(f"primary :{pair.primary.port} (unit a, through the relay :{relay.port}), "
                  f"replica :{pair.replica.port} (unit b); PING round trip "
                  f"{link['direct_ms']:.2f} ms direct, {link['relay_ms']:.2f} ms through "
                  "the relay", flush=True)
            modes = {}
            for mode in MODES:
                prepare_redis(pair, settings.rows)
                print(f"reads = \"{mode}\": {settings.threads} threads, {settings.warmup:g} s "
                      f"warm-up + {settings.seconds:g} s ...", flush=True)
                modes[mode] = run_mode(mode, settings, base, relay, pair.replica.port,
                                       kind="redis")
        finally:
            relay.destroy()
    measured = {k: v for k, v in asdict(settings).items() if k != "read_wait"}
    return {
        "kind": "redis",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": quick, "machine": machine(),
        "versions": versions(redis_py=version("redis"), redis=server),
        "settings": measured, "link": link, "modes": modes,
        "ratios_local_to_primary": ratios(modes["primary"], modes["local"]),
        "runtime_s": time.perf_counter() - began,
    }


# --------------------------------------------------------------------------- report

LATENCIES = (("reads", "read"), ("writes", "write"), ("read_after_write", "read-after-write"))


def outcomes(counts: dict[str, float]) -> str:
    """``local 5000 (99.8 %), fallback_lag 12 (0.2 %)``: the outcomes that occurred."""
    total = sum(counts.values())
    if not total:
        return "none"
    return ", ".join(f"{k} {v:.0f} ({100 * v / total:.1f} %)"
                     for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v)


def print_report(report: dict[str, Any]) -> None:
    """The human-readable table; the JSON holds the same and more."""
    s, link, modes = report["settings"], report["link"], report["modes"]
    primary, local, ratio = modes["primary"], modes["local"], report["ratios_local_to_primary"]
    on_redis = report.get("kind") == "redis"
    name, probe, unit = ("cache", "PING", "commands") if on_redis \
        else ("orders-db", "SELECT 1", "statements")
    writes = "INCRs each read back at once (GET)" if on_redis \
        else "writes each read back at once"
    limits = f"max_lag {s['max_lag']:g} s" + \
        ("" if on_redis else f", read_wait {s['read_wait']:g} s")
    print(f"\nUnit b reads {name}, whose primary is in unit a behind a relay adding "
          f"{s['delay_ms']:g} ms each way\n({probe} round trip: {link['direct_ms']:.2f} ms "
          f"direct, {link['relay_ms']:.2f} ms through the relay).\n{s['threads']} threads, "
          f"{100 * (1 - s['write_share']):.0f} % reads, {100 * s['write_share']:.0f} % "
          f"{writes}; {s['warmup']:g} s warm-up, {s['seconds']:g} s "
          f"measured per mode;\n{limits}.")
    print(f"\n  {'':<30}{'primary':>12}{'local':>12}{'local/primary':>16}")
    r = ratio["statements_per_s"]
    print(f"  {f'{unit}/s':<30}{primary['statements_per_s']:>12.1f}"
          f"{local['statements_per_s']:>12.1f}{(f'{r:.2f}' if r else '-'):>16}")
    for key, label in LATENCIES:
        for q in ("p50", "p99"):
            p = primary["latency_ms"][key].get(q)
            m = local["latency_ms"][key].get(q)
            r = ratio[f"{key}_{q}"]
            print(f"  {f'{label} {q}':<30}"
                  f"{(f'{p:.2f} ms' if p is not None else '-'):>12}"
                  f"{(f'{m:.2f} ms' if m is not None else '-'):>12}"
                  f"{(f'{r:.3f}' if r is not None else '-'):>16}")
    print(f"  {'read-after-write violations':<30}{primary['violations']:>12}"
          f"{local['violations']:>12}")
    print(f"  {'errors':<30}{primary['errors']:>12}{local['errors']:>12}")
    companions = "" if on_redis \
        else f"; {local['companions_opened']:.0f} companion connections opened"
    print(f"\nlocal mode, reads by outcome: {outcomes(local['db_reads'])} over the measured "
          f"window;\n{outcomes(local['db_reads_whole_run'])} over the whole run, warm-up "
          f"included{companions}")
    checked = primary["read_after_write_checked"] + local["read_after_write_checked"]
    violations = primary["violations"] + local["violations"]
    print(f"read-your-writes: {'held' if not violations else 'VIOLATED'} "
          f"({violations} violations in {checked} reads after writes, warm-ups included)")
    for mode in (primary, local):
        for sample in mode["error_samples"]:
            print(f"  {mode['mode']} error: {sample.splitlines()[0][:150]}")
        if mode["faults"]:
            print(f"  {mode['mode']}: resil recorded faults: {mode['faults']}")


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--relay"]:
        return relay_main(int(argv[1]), float(argv[2]))
    if argv[:1] == ["--child"]:
        return child_main(json.loads(argv[1]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", action="store_true",
                        help="a Redis pair (GET, INCR) instead of MariaDB; results to "
                             "benchmarks/results/reads-redis.json")
    parser.add_argument("--delay", type=float, default=5.0, metavar="MS",
                        help="delay the relay adds in each direction (default 5 ms)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="application threads (default 8; 4 with --quick)")
    parser.add_argument("--seconds", type=float, metavar="S",
                        help="measured seconds per mode (default 10; 3 with --quick)")
    parser.add_argument("--warmup", type=float, default=2.0, metavar="S",
                        help="seconds run before measuring, per mode (default 2)")
    parser.add_argument("--quick", action="store_true", help="3 s measured, 4 threads")
    args = parser.parse_args(argv)
    settings = Settings(delay_ms=args.delay,
                        threads=args.threads or (4 if args.quick else 8),
                        seconds=args.seconds or (3.0 if args.quick else 10.0),
                        warmup=args.warmup, seed=random.randrange(2**32))
    if settings.threads < 1 or settings.threads > settings.rows or settings.seconds <= 0 \
            or settings.delay_ms < 0 or settings.warmup < 0:
        parser.error("--threads must be 1 to 5000, --seconds above 0, --delay and "
                     "--warmup not negative")
    base = Path(tempfile.mkdtemp(prefix="resil-bench-reads-"))
    restore = stop_servers_on_sigterm()     # SIGTERM then unwinds and stops everything too
    try:
        report = (run_redis if args.redis else run)(settings, args.quick, base)
    except KeyboardInterrupt:
        print("\nreads: interrupted; servers and relay stopped", file=sys.stderr)
        return 130
    finally:
        restore()
    shutil.rmtree(base, ignore_errors=True)     # a failed run keeps its folder to look at
    print_report(report)
    results = REDIS_RESULTS if args.redis else RESULTS
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {results.relative_to(ROOT)}; runtime {report['runtime_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
