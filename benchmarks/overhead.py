"""What resil costs an application: round trips, start-up and memory, against a baseline.

Run it as ``.venv/bin/python benchmarks/overhead.py [--quick]`` (``make bench``). It starts
one real MariaDB, one real Redis and a small HTTP server (``http_server.py``) on loopback,
writes a ``resil.toml`` declaring them, and measures, in this one process and in child
processes:

* round trips: the same batch of operations with no agent (baseline), with the agent
  (``resil.start()``), and with OpenTelemetry's PyMySQL/redis instrumentation as a
  reference, interleaved in a shuffled order each round; reported as median µs/op and as
  the median of the per-round ratios mode/baseline. The operations are PyMySQL and redis
  statements and connects, and ``requests``/``httpx`` GETs on keep-alive connections,
  routed (by resource name) and unrouted (a URL that is no resource);
* start-up: ``resil-run python -c pass`` and ``python -c pass`` with only the agent's
  bootstrap, against plain ``python -c pass``;
* memory: the RSS of a process that imports pymysql and redis, with and without resil-run.

The round trips run with client and servers pinned to one CPU (``--no-pin`` to let the
scheduler place them; see :func:`one_cpu` for why; ``--http-other-cpu`` puts the HTTP
server on another CPU than the client). It prints a table with the targets
beside the figures and writes everything, raw rounds included, to
``benchmarks/results/overhead.json``. A missed target is reported, not a failure: the
exit status is non-zero only when something goes wrong (130 when interrupted).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Python puts this script's folder first on sys.path, where benchmarks/requests.py would
# shadow the requests library: take it off.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT / "tests"))     # the real-server harness of the test suite

import httpx  # noqa: E402
import pymysql  # noqa: E402
import redis  # noqa: E402
import requests  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.instrumentation.pymysql import PyMySQLInstrumentor  # noqa: E402
from opentelemetry.instrumentation.redis import RedisInstrumentor  # noqa: E402

import resil  # noqa: E402
from resil import counters  # noqa: E402
from resil.bootstrap import BOOTSTRAP_DIR  # noqa: E402
from resil.config import Config, load_config  # noqa: E402
from servers import APP_DATABASE, APP_PASSWORD, APP_USER, MariaDB, Redis, ports  # noqa: E402
from servers.ports import stop_servers_on_sigterm  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "overhead.json"
BIN = Path(sys.executable).parent           # the venv's bin: python and resil-run
HTTP_SERVER = Path(__file__).with_name("http_server.py")
MODES = ("baseline", "resil", "otel")

# Targets (see benchmarks/README.md). Checked and printed, never enforced.
#: resil/baseline per group of round-trip operations: (label, operations, bound).
TARGET_RATIOS = (
    ("queries resil/baseline", ("mysql_select", "redis_get", "aiomysql_select",
                                "mysqlclient_select"), 1.01),
    ("connects resil/baseline", ("mysql_connect_select", "redis_connect_ping",
                                 "mysqlclient_connect_select"), 1.03),
    ("routed HTTP resil/baseline", ("requests_get", "httpx_get"), 1.03),
    ("unrouted HTTP resil/baseline", ("requests_get_plain", "httpx_get_plain"), 1.01),
)
TARGET_STARTUP_MS = 50.0    # added by `resil-run python` over `python`
TARGET_IMPORT_MS = 5.0      # added by `import resil`
TARGET_RSS_MB = 10.0        # added by the agent to a process that imports both drivers

CONFIG = """\
unit = "a"

[control]
url = "{state}"

[resources.orders-db]
kind = "mysql"
endpoints = {{ a = "127.0.0.1:{mysql}" }}
aliases = ["orders-db"]

[resources.cache]
kind = "redis"
endpoints = {{ a = "127.0.0.1:{redis}" }}
aliases = ["cache"]

[resources.products]
kind = "http"
endpoints = {{ a = ["http://127.0.0.1:{http}"], b = ["http://127.0.0.1:{http_b}"] }}
"""


@dataclass(frozen=True)
class Settings:
    """How much to measure; ``--quick`` trades precision for time."""

    rounds: int
    startup_runs: int
    memory_runs: int
    scale: float            # multiplies each operation's batch size
    pin: bool               # round trips with client and servers on one CPU
    http_other_cpu: bool = False    # the HTTP server on another CPU than the client

    @classmethod
    def of(cls, quick: bool, pin: bool, http_other_cpu: bool = False) -> Settings:
        if quick:
            return cls(rounds=5, startup_runs=10, memory_runs=5, scale=0.5, pin=pin,
                       http_other_cpu=http_other_cpu)
        return cls(rounds=15, startup_runs=20, memory_runs=5, scale=1.0, pin=pin,
                   http_other_cpu=http_other_cpu)


@dataclass(frozen=True)
class Servers:
    """Where the real servers listen."""

    mysql_port: int
    redis_port: int
    http_port: int          # products, unit a: where routed calls go
    http_b_port: int        # products, unit b: declared, served, not used while a is healthy
    http_plain_port: int    # no resource: the unrouted calls


@dataclass(frozen=True)
class Address:
    """The host and port the *application* passes to its driver in one mode."""

    mysql: tuple[str, int]
    redis: tuple[str, int]
    http: str               # base URL of the products service
    plain: str              # base URL of a service that is no resource (the same in every mode)


def addresses(servers: Servers) -> dict[str, Address]:
    """Per mode, what the application connects to: equivalent targets.

    Under resil the application names the resources by alias with the drivers' default
    ports (and the HTTP service by its resource name, ``http://products``), which only
    work if resil rewrites them to the real endpoints; the other modes use those
    endpoints directly.
    """
    plain = f"http://127.0.0.1:{servers.http_plain_port}"
    direct = Address(("127.0.0.1", servers.mysql_port), ("127.0.0.1", servers.redis_port),
                     f"http://127.0.0.1:{servers.http_port}", plain)
    return {"baseline": direct,
            "resil": Address(("orders-db", 3306), ("cache", 6379), "http://products", plain),
            "otel": direct}


# --------------------------------------------------------------------------- servers

@contextlib.contextmanager
def one_cpu(wanted: bool) -> Iterator[int | None]:
    """Pin this process, and the servers it starts meanwhile, to one CPU; yield which.

    Unpinned, a loopback round trip costs ~30 µs when the scheduler puts client and
    server on the same CPU and ~90 µs when it does not, and it changes its mind from
    batch to batch: that noise is larger than the differences we look for. On one CPU
    it is steady, and it is also the smallest denominator, so ratios are conservative.
    The servers inherit the affinity; this process gets its own back afterwards.
    """
    if not wanted or not hasattr(os, "sched_setaffinity"):
        yield None
        return
    allowed = os.sched_getaffinity(0)
    cpu = min(allowed)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, allowed)


def other_cpu() -> int | None:
    """A CPU other than the one :func:`one_cpu` pins to (None on a one-CPU machine)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = os.sched_getaffinity(0)
    rest = sorted(allowed - {min(allowed)})
    return rest[0] if rest else None


class HttpServer:
    """``http_server.py`` in its own process, listening on ``ports``; stopped by PID.

    Why not ``tests/servers/web_app.py``: it writes the head and the body of an answer
    in two ``send`` calls without TCP_NODELAY, so on a keep-alive connection every
    answer waits for the client's delayed ACK (~40 ms here). And ``http.server`` spends
    ~100 µs per request parsing, which would dilute the ratio.
    """

    def __init__(self, ports_: list[int], cpu: int | None) -> None:
        self.ports = ports_
        self.cpu = cpu
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(HTTP_SERVER), *map(str, self.ports)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        ports.register(self)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":     # exits if a bind fails
            raise RuntimeError(f"http_server.py on ports {self.ports} did not start")
        if self.cpu is not None:
            os.sched_setaffinity(self.proc.pid, {self.cpu})

    def destroy(self) -> None:
        ports.stop_process(self.proc, 5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        ports.unregister(self)


@contextlib.contextmanager
def real_servers(base: Path, http_cpu: int | None = None) -> Iterator[Servers]:
    """One MariaDB, one Redis and one HTTP server on loopback, destroyed (by PID) however
    we leave. The HTTP server serves three ports: the products service's endpoints in
    units a and b, and a service that is no resource. ``http_cpu``: pin it there instead
    of inheriting this process's CPU."""
    mysql = MariaDB(base / "mysql", "primary", server_id=1)
    cache = Redis(base / "redis", "primary")
    web = HttpServer([ports.free_port() for _ in range(3)], http_cpu)
    try:
        mysql.start()
        # A single server, not a pair: a replica would only add noise on a small machine.
        # Same account and database as MariaDBPair; SELECT 1 needs nothing more.
        mysql.root_sql(
            f"CREATE DATABASE IF NOT EXISTS `{APP_DATABASE}`; "
            f"CREATE USER '{APP_USER}'@'127.0.0.1' IDENTIFIED BY '{APP_PASSWORD}'; "
            f"GRANT SELECT ON `{APP_DATABASE}`.* TO '{APP_USER}'@'127.0.0.1'")
        cache.start()
        web.start()
        yield Servers(mysql.port, cache.port, *web.ports)
    finally:
        web.destroy()
        cache.destroy()
        mysql.destroy()


def write_config(work: Path, servers: Servers) -> Path:
    """The resil.toml declaring the servers as resources (unit a, like the tests; the
    http resource also has an endpoint in unit b, as a routed service would)."""
    path = work / "resil.toml"
    path.write_text(CONFIG.format(state=(work / "resil-state.json").as_uri(),
                                  mysql=servers.mysql_port, redis=servers.redis_port,
                                  http=servers.http_port, http_b=servers.http_b_port))
    return path


# --------------------------------------------------------------------------- modes

@contextlib.contextmanager
def baseline_mode(config: Config) -> Iterator[None]:
    """No agent, no instrumentation."""
    yield


@contextlib.contextmanager
def resil_mode(config: Config) -> Iterator[None]:
    """The agent as an application starts it from code; stopped again after the batch."""
    if resil.start(config) is None:
        raise RuntimeError("resil.start() returned None: unset RESIL_DISABLED to benchmark")
    try:
        yield
    finally:
        resil.stop()


@contextlib.contextmanager
def otel_mode(config: Config) -> Iterator[None]:
    """OpenTelemetry's driver instrumentation, with whatever tracer provider is global.

    We install none, so it is the API's default no-op provider: spans are created but
    not recorded or exported. This is the price of a comparable wrapper, not of tracing.
    """
    mysql, cache = PyMySQLInstrumentor(), RedisInstrumentor()
    mysql.instrument()
    cache.instrument()
    try:
        yield
    finally:
        cache.uninstrument()
        mysql.uninstrument()


MODE_CONTEXT: dict[str, Callable[[Config], contextlib.AbstractContextManager[None]]] = {
    "baseline": baseline_mode, "resil": resil_mode, "otel": otel_mode}


def tracer_provider_description() -> str:
    """What the otel mode really runs with, for the output (a recording provider would
    make the comparison meaningless)."""
    provider = trace.get_tracer_provider()
    span = provider.get_tracer("resil-bench").start_span("probe")
    recording = span.is_recording()
    span.end()
    return f"{type(provider).__name__}, spans {'recorded' if recording else 'not recorded'}"


# --------------------------------------------------------------------------- operations

def mysql_connect(address: Address) -> Any:
    """A PyMySQL connection as the application opens it in this mode.

    ``ssl_disabled``: PyMySQL 1.2 otherwise builds a TLS context on every connect, even
    to a server that offers no TLS (ours does not), loading the system CA store: ~17 ms
    of CPU here, which would bury the connect path the ratio is about.
    """
    # Looked up as pymysql.connect on every call: otel replaces that attribute.
    host, port = address.mysql
    return pymysql.connect(host=host, port=port, user=APP_USER, password=APP_PASSWORD,
                           database=APP_DATABASE, connect_timeout=5, read_timeout=30,
                           write_timeout=30, ssl_disabled=True)


def redis_client(address: Address) -> redis.Redis:
    """A redis-py client as the application creates it in this mode (driver defaults)."""
    host, port = address.redis
    return redis.Redis(host=host, port=port, socket_connect_timeout=5, socket_timeout=5)


def timed(n: int, warmup: int, op: Callable[[], object]) -> int:
    """Run ``op`` ``warmup`` times untimed, then ``n`` times; return the ns for the ``n``.

    The collector is emptied first so that no batch inherits another's garbage, but left
    on: garbage a mode creates per call is part of its cost.
    """
    for _ in range(warmup):
        op()
    gc.collect()
    start = time.perf_counter_ns()
    for _ in range(n):
        op()
    return time.perf_counter_ns() - start


def select_open(address: Address, n: int,
                connect: Callable[[Address], Any] = mysql_connect) -> int:
    """(a) SELECT 1 on a connection opened once (by ``connect``: PyMySQL's by default):
    the steady-state query path."""
    conn = connect(address)
    try:
        with conn.cursor() as cur:
            def op() -> object:
                cur.execute("SELECT 1")
                return cur.fetchone()
            return timed(n, 50, op)
    finally:
        conn.close()


def aiomysql_select_open(address: Address, n: int) -> int:
    """(a) for aiomysql: SELECT 1 on a connection opened once, awaited in an event loop
    (the loop's own cost is in both modes)."""
    import asyncio

    import aiomysql

    async def run() -> int:
        host, port = address.mysql
        conn = await aiomysql.connect(host=host, port=port, user=APP_USER,
                                      password=APP_PASSWORD, db=APP_DATABASE,
                                      autocommit=True, connect_timeout=5)
        try:
            async with conn.cursor() as cur:
                for _ in range(50):
                    await cur.execute("SELECT 1")
                    await cur.fetchone()
                gc.collect()
                start = time.perf_counter_ns()
                for _ in range(n):
                    await cur.execute("SELECT 1")
                    await cur.fetchone()
                return time.perf_counter_ns() - start
        finally:
            conn.close()
    return asyncio.run(run())


def mysqlclient_connect(address: Address) -> Any:
    import MySQLdb
    host, port = address.mysql
    return MySQLdb.connect(host=host, port=port, user=APP_USER, password=APP_PASSWORD,
                           database=APP_DATABASE, autocommit=True, connect_timeout=5)


def get_open(address: Address, n: int) -> int:
    """(b) GET on a client whose pool already holds a connection."""
    client = redis_client(address)
    try:
        client.set("k", "v")
        return timed(n, 50, lambda: client.get("k"))
    finally:
        client.close()


def select_new_connection(address: Address, n: int,
                          connect: Callable[[Address], Any] = mysql_connect) -> int:
    """(c) connect (``connect``: PyMySQL's by default) + SELECT 1 + close: the path resil
    wraps (PyMySQL's ``Connection.connect``, mysqlclient's ``__init__``)."""
    def op() -> None:
        conn = connect(address)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
        finally:
            conn.close()
    return timed(n, 5, op)


def ping_new_client(address: Address, n: int) -> int:
    """(d) a new client, connect + PING + close: the path resil wraps (Connection._connect)."""
    def op() -> None:
        client = redis_client(address)
        try:
            client.ping()
        finally:
            client.close()
    return timed(n, 5, op)


def requests_get(base: str, n: int) -> int:
    """GET ``base``/items (a small JSON document) on a ``requests.Session`` whose pool
    already holds a keep-alive connection (the warm-up opens it); driver defaults."""
    session = requests.Session()
    url = base + "/items"
    try:
        return timed(n, 50, lambda: session.get(url))
    finally:
        session.close()


def httpx_get(base: str, n: int) -> int:
    """The same with an ``httpx.Client`` (its default transport)."""
    client = httpx.Client()
    url = base + "/items"
    try:
        return timed(n, 50, lambda: client.get(url))
    finally:
        client.close()


HTTP_MODES = ("baseline", "resil")
"""The HTTP operations run without the otel mode: it instruments only the drivers."""


@dataclass(frozen=True)
class Operation:
    """One measured operation: a name, a batch size, the function that times it, and
    the modes it runs in."""

    key: str
    label: str
    ops: int
    run: Callable[[Address, int], int]
    modes: tuple[str, ...] = MODES


OPERATIONS = (
    Operation("mysql_select", "pymysql SELECT 1, open connection", 2000, select_open),
    Operation("redis_get", "redis GET, open client", 2000, get_open),
    Operation("aiomysql_select", "aiomysql SELECT 1, open connection", 2000,
              aiomysql_select_open, HTTP_MODES),     # otel instruments no aiomysql here
    # otel instruments no mysqlclient here
    Operation("mysqlclient_select", "mysqlclient SELECT 1, open connection", 2000,
              lambda a, n: select_open(a, n, mysqlclient_connect), HTTP_MODES),
    Operation("mysql_connect_select", "pymysql connect+SELECT 1+close", 200,
              select_new_connection),
    Operation("mysqlclient_connect_select", "mysqlclient connect+SELECT 1+close", 200,
              lambda a, n: select_new_connection(a, n, mysqlclient_connect), HTTP_MODES),
    Operation("redis_connect_ping", "redis new client+PING+close", 500, ping_new_client),
    # Routed: under resil the URL names the resource (http://products/items); the
    # baseline calls the endpoint resil picks (http://127.0.0.1:PORT/items).
    Operation("requests_get", "requests Session.get, routed", 1000,
              lambda a, n: requests_get(a.http, n), HTTP_MODES),
    Operation("httpx_get", "httpx Client.get, routed", 1000,
              lambda a, n: httpx_get(a.http, n), HTTP_MODES),
    # Unrouted: the same URL in both modes, naming no resource: what every other call
    # of the application pays for resil's hooks.
    Operation("requests_get_plain", "requests Session.get, unrouted", 1000,
              lambda a, n: requests_get(a.plain, n), HTTP_MODES),
    Operation("httpx_get_plain", "httpx Client.get, unrouted", 1000,
              lambda a, n: httpx_get(a.plain, n), HTTP_MODES),
)


# --------------------------------------------------------------------------- round trips

def check_routing(config: Config, servers: Servers) -> None:
    """Make sure the resil mode measures routed connections and calls, not a silent
    fall-through."""
    with resil_mode(config):
        conn = mysql_connect(addresses(servers)["resil"])
        try:
            routed = (conn.host, conn.port)
        finally:
            conn.close()
        by_mysqlclient = mysqlclient_connect(addresses(servers)["resil"])
        try:
            cur = by_mysqlclient.cursor()
            cur.execute("SELECT @@port")
            mysqlclient_port = int(cur.fetchone()[0])
        finally:
            by_mysqlclient.close()
        link = redis.Connection(host="cache", port=6379, socket_connect_timeout=5)
        link.connect()
        try:
            routed_redis = (link.host, link.port)
        finally:
            link.disconnect()
        # http://products does not resolve: an answer at all means resil routed the call;
        # the server names the port that answered.
        with requests.Session() as session:
            by_requests = session.get("http://products/items", timeout=5).json()["port"]
            plain = session.get(addresses(servers)["resil"].plain + "/items",
                                timeout=5).json()["port"]
        with httpx.Client(timeout=5) as client:
            by_httpx = client.get("http://products/items").json()["port"]
    expected = (("127.0.0.1", servers.mysql_port), ("127.0.0.1", servers.redis_port))
    if (routed, routed_redis) != expected:
        raise RuntimeError(f"resil did not route: got {routed}, {routed_redis}; "
                           f"expected {expected}")
    if mysqlclient_port != servers.mysql_port:
        raise RuntimeError(f"resil did not route mysqlclient: it reached port "
                           f"{mysqlclient_port}, not {servers.mysql_port}")
    if (by_requests, by_httpx, plain) != (servers.http_port,) * 2 + (servers.http_plain_port,):
        raise RuntimeError(f"resil did not route HTTP to unit a: requests -> :{by_requests}, "
                           f"httpx -> :{by_httpx} (expected :{servers.http_port}); "
                           f"the unrouted call -> :{plain}")


def round_trips(config: Config, servers: Servers, settings: Settings,
                rng: random.Random) -> dict[str, Any]:
    """Every mode, every operation, ``settings.rounds`` times; mode order shuffled per round.

    Interleaving spreads slow drift of the machine (other processes, CPU frequency, the
    servers' caches) over all modes alike, instead of charging it to whichever mode ran
    during it. Raw ns per batch are kept: ``{op: {mode: [ns per round]}}``.
    """
    targets = addresses(servers)
    raw: dict[str, dict[str, list[int]]] = {op.key: {m: [] for m in op.modes}
                                            for op in OPERATIONS}
    orders = []
    for number in range(1, settings.rounds + 1):
        order = list(MODES)
        rng.shuffle(order)
        orders.append(order)
        started = time.perf_counter()
        for mode in order:
            with MODE_CONTEXT[mode](config):
                for op in OPERATIONS:
                    if mode in op.modes:
                        raw[op.key][mode].append(op.run(targets[mode], batch(op, settings)))
        print(f"  round {number:2d}/{settings.rounds}  {' '.join(order):<21}"
              f"  {time.perf_counter() - started:5.1f} s", flush=True)
    return {"orders": orders, "raw_ns": raw}


def batch(op: Operation, settings: Settings) -> int:
    return max(10, round(op.ops * settings.scale))


def summarise_round_trips(result: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Median µs/op per mode; per mode, the median (and quartiles) of the per-round ratios
    to the baseline and the median of the per-round differences."""
    summary: dict[str, Any] = {}
    for op in OPERATIONS:
        n = batch(op, settings)
        per_op = {m: [ns / n / 1000 for ns in result["raw_ns"][op.key][m]] for m in op.modes}
        entry: dict[str, Any] = {"label": op.label, "ops_per_batch": n,
                                 "median_us": {m: statistics.median(v) for m, v in per_op.items()}}
        for mode in ("resil", "otel"):
            if mode not in op.modes:
                continue
            pairs = list(zip(per_op[mode], per_op["baseline"], strict=True))
            ratios = [x / b for x, b in pairs]
            entry[f"{mode}_ratio"] = statistics.median(ratios)
            entry[f"{mode}_ratio_quartiles"] = quartiles(ratios)
            # The same comparison in µs: unlike the ratio, not diluted by a slow operation.
            entry[f"{mode}_added_us"] = statistics.median(x - b for x, b in pairs)
        summary[op.key] = entry
    return summary


def quartiles(values: list[float]) -> list[float]:
    """First and third quartile; both equal the value when there is only one."""
    if len(values) < 2:
        return [values[0], values[0]]
    q1, _, q3 = statistics.quantiles(values, n=4)
    return [q1, q3]


# --------------------------------------------------------------------------- subprocesses

def clean_env(pycache: Path) -> dict[str, str]:
    """The environment for child processes: ours, minus resil's own settings.

    The venv's bin goes first on PATH, so that ``resil-run python`` execs the same
    interpreter the baseline runs. PYTHONPATH stays (for every variant alike): it is how
    a checkout other than the installed one is benchmarked.

    Bytecode is cached in ``pycache`` (PYTHONPYCACHEPREFIX), whatever
    PYTHONDONTWRITEBYTECODE says: a deployed program runs from cached bytecode, and
    without it every start would recompile resil's sources (and only those that have
    no cache, which would charge the compiler to one variant and not another). The
    untimed warm-up runs fill it; it leaves no file in the source tree.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RESIL_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def variants(config_path: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """How to start a Python program: plainly, under resil-run, with only the bootstrap.

    resil-run is itself a Python console script that execs the program, so its cost is
    one extra interpreter start plus the agent; the bootstrap-only variant (what
    resil-run sets up: the bootstrap folder on PYTHONPATH, RESIL_CONFIG) isolates the
    agent's own cost inside the program.
    """
    base = clean_env(config_path.parent / "pycache")
    pythonpath = os.pathsep.join(filter(None, [BOOTSTRAP_DIR, base.get("PYTHONPATH")]))
    agent = {**base, "RESIL_CONFIG": str(config_path), "PYTHONPATH": pythonpath}
    return {
        "python": ([str(BIN / "python")], base),
        "resil-run": ([str(BIN / "resil-run"), "python"], {**base,
                                                          "RESIL_CONFIG": str(config_path)}),
        "bootstrap": ([str(BIN / "python")], agent),
    }


def run_python(variant: tuple[list[str], dict[str, str]], code: str) -> tuple[int, str]:
    """Run ``-c code`` as the variant says; return (wall ns, stdout). Raises on failure."""
    prefix, env = variant
    start = time.perf_counter_ns()
    done = subprocess.run([*prefix, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    elapsed = time.perf_counter_ns() - start
    if done.returncode != 0 or done.stderr.strip():
        # Stderr counts as failure too: it is where a bootstrap that did not start says so.
        raise RuntimeError(f"{' '.join(prefix)} -c {code!r} exited {done.returncode}:\n"
                           f"{done.stderr}")
    return elapsed, done.stdout


AGENT_PROBE = """\
import pymysql.connections
from resil import registry
patched = hasattr(vars(pymysql.connections.Connection)["connect"], "__wrapped__")
print(registry.runtime() is not None, patched)
"""


def check_agent_starts(config_path: Path) -> None:
    """Under resil-run and the bootstrap the agent must run and patch, or we time nothing."""
    for name in ("resil-run", "bootstrap"):
        _, out = run_python(variants(config_path)[name], AGENT_PROBE)
        if out.split() != ["True", "True"]:
            raise RuntimeError(f"the agent did not start or patch under {name}: {out!r}")


def interleaved(names: list[str], runs: int, measure: Callable[[str], float],
                rng: random.Random) -> dict[str, list[float]]:
    """``runs`` measurements of each name, in a shuffled order each run."""
    found: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(runs):
        order = list(names)
        rng.shuffle(order)
        for name in order:
            found[name].append(measure(name))
    return found


def startup(config_path: Path, settings: Settings, rng: random.Random) -> dict[str, Any]:
    """Wall time of ``-c pass`` per variant; median and the milliseconds added."""
    ways = variants(config_path)
    ways["import resil"] = ways["python"]
    ways["app"], ways["resil-run app"] = ways["python"], ways["resil-run"]
    code = {name: "import resil" if name == "import resil" else "pass" for name in ways}
    code["app"] = code["resil-run app"] = APP_IMPORTS
    for name, way in ways.items():  # untimed: fill the page cache and the bytecode cache
        run_python(way, code[name])
    raw = interleaved(list(ways), settings.startup_runs,
                      lambda name: run_python(ways[name], code[name])[0] / 1e6, rng)
    median = {name: statistics.median(v) for name, v in raw.items()}
    return {"runs": settings.startup_runs, "raw_ms": raw, "median_ms": median,
            "added_ms": {**{name: median[name] - median["python"]
                            for name in ("resil-run", "bootstrap", "import resil")},
                         "resil-run app": median["resil-run app"] - median["app"]}}


#: What an application's start-up imports (its drivers and HTTP client): the modules the
#: agent shares with it (socket, json, re, typing...) are then paid once, by either.
APP_IMPORTS = "import pymysql, redis, requests"


RSS_PROBE = """\
import pymysql, redis
with open("/proc/self/status") as status:
    print(next(line.split()[1] for line in status if line.startswith("VmRSS:")))
"""


def memory(config_path: Path, settings: Settings, rng: random.Random) -> dict[str, Any]:
    """RSS (VmRSS) of a process that imports both drivers, with and without resil-run.

    resil-run execs the program, so the RSS read is the program's own, agent included.
    """
    ways = variants(config_path)
    names = ["python", "resil-run"]
    for name in names:              # untimed: compile the drivers into the bytecode cache
        run_python(ways[name], RSS_PROBE)
    raw = interleaved(names, settings.memory_runs,
                      lambda name: int(run_python(ways[name], RSS_PROBE)[1]) / 1024, rng)
    median = {name: statistics.median(v) for name, v in raw.items()}
    return {"runs": settings.memory_runs, "raw_mb": raw, "median_mb": median,
            "added_mb": median["resil-run"] - median["python"]}


# --------------------------------------------------------------------------- report

def targets(rt: dict[str, Any], start: dict[str, Any], mem: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the figure it is judged on and whether it holds."""
    found = []
    for label, keys, bound in TARGET_RATIOS:
        worst = max((rt[key] for key in keys), key=lambda e: e["resil_ratio"])
        found.append({"target": f"{label} <= {bound}",
                      "figure": f"worst {worst['resil_ratio']:.3f} ({worst['label']})",
                      "holds": worst["resil_ratio"] <= bound})
    added = start["added_ms"]
    return [
        *found,
        {"target": f"start-up added by resil-run <= {TARGET_STARTUP_MS:.0f} ms",
         "figure": f"+{added['resil-run']:.1f} ms",
         "holds": added["resil-run"] <= TARGET_STARTUP_MS},
        {"target": f"import resil <= {TARGET_IMPORT_MS:.0f} ms",
         "figure": f"+{added['import resil']:.1f} ms",
         "holds": added["import resil"] <= TARGET_IMPORT_MS},
        {"target": f"agent RSS <= {TARGET_RSS_MB:.0f} MB",
         "figure": f"+{mem['added_mb']:.1f} MB",
         "holds": mem["added_mb"] <= TARGET_RSS_MB},
    ]


def print_report(report: dict[str, Any]) -> None:
    """The human-readable table; the JSON holds the same and more."""
    rt, start, mem = report["round_trips"], report["startup"], report["memory"]
    s = report["settings"]
    where = ("unpinned" if s["pinned_cpu"] is None
             else f"client and servers pinned to CPU {s['pinned_cpu']}")
    if s.get("http_server_cpu") is not None:
        where += f", the HTTP server to CPU {s['http_server_cpu']}"
    print(f"\nRound trips: {s['rounds']} rounds, modes interleaved in a shuffled order per "
          f"round, {where}.\nMedian µs/op; ratio = median of the per-round ratios "
          "mode/baseline [quartiles]; +µs = median per-round difference.")
    print(f"otel = opentelemetry-instrumentation-pymysql/-redis {report['versions']['otel']} "
          f"with the default no-op tracer provider\n({report['otel_tracer_provider']}, "
          "nothing exported): a reference wrapper, not the cost of tracing; not run for HTTP.")
    print(f"\n  {'operation':<38}{'ops':>5}{'baseline':>9}{'resil':>9}{'otel':>9}"
          f"  {'resil/baseline':<22}{'resil +µs':>9}  {'otel/baseline':>13}")
    for e in rt.values():
        us, q = e["median_us"], e["resil_ratio_quartiles"]
        otel_us, otel_ratio = ((f"{us['otel']:>9.1f}", f"{e['otel_ratio']:>13.3f}")
                               if "otel" in us else (f"{'-':>9}", f"{'-':>13}"))
        print(f"  {e['label']:<38}{e['ops_per_batch']:>5}{us['baseline']:>9.1f}"
              f"{us['resil']:>9.1f}{otel_us}"
              f"  {e['resil_ratio']:.3f} [{q[0]:.3f}-{q[1]:.3f}]  {e['resil_added_us']:>+9.1f}"
              f"  {otel_ratio}")
    m, added = start["median_ms"], start["added_ms"]
    print(f"\nStart-up: median wall time over {start['runs']} interleaved runs of each")
    print(f"  python -c pass                      {m['python']:7.1f} ms")
    print(f"  resil-run python -c pass            {m['resil-run']:7.1f} ms  "
          f"{added['resil-run']:+7.1f} ms  (resil-run's own interpreter + the agent)")
    print(f"  python -c pass, agent bootstrap     {m['bootstrap']:7.1f} ms  "
          f"{added['bootstrap']:+7.1f} ms  (the agent alone: PYTHONPATH + RESIL_CONFIG)")
    print(f"  python -c 'import resil'            {m['import resil']:7.1f} ms  "
          f"{added['import resil']:+7.1f} ms  (the package, nothing started)")
    print(f"  python -c '{APP_IMPORTS}'")
    print(f"    plain                             {m['app']:7.1f} ms")
    print(f"    under resil-run                   {m['resil-run app']:7.1f} ms  "
          f"{added['resil-run app']:+7.1f} ms  (what an application pays: its integrations "
          "load too)")
    mm = mem["median_mb"]
    print(f"\nMemory: median VmRSS after `import pymysql, redis`, {mem['runs']} runs of each "
          "(MB = MiB)")
    print(f"  python                              {mm['python']:7.1f} MB")
    print(f"  resil-run python                    {mm['resil-run']:7.1f} MB  "
          f"{mem['added_mb']:+7.1f} MB")
    print("\nTargets (a measurement, not a test: a miss is reported, the exit status stays 0)")
    for t in report["targets"]:
        print(f"  {t['target']:<42}{t['figure']:<50}{'holds' if t['holds'] else 'MISSED'}")


def machine() -> dict[str, Any]:
    """Enough about the machine to compare runs."""
    debian = Path("/etc/debian_version")
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "debian": debian.read_text().strip() if debian.exists() else None,
            "python": platform.python_version()}


def versions() -> dict[str, str]:
    """The versions measured; for resil also where it was imported from and its commit."""
    source = Path(resil.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=source,
                                capture_output=True, text=True, check=False).stdout.strip()
    except OSError:     # no git: the figure is still valid, just less traceable
        commit = ""
    return {"resil": resil.__version__, "resil_source": str(source),
            "resil_commit": commit or "unknown",
            "pymysql": version("PyMySQL"), "redis": version("redis"),
            "requests": version("requests"), "urllib3": version("urllib3"),
            "httpx": version("httpx"), "httpcore": version("httpcore"),
            "otel": version("opentelemetry-instrumentation-pymysql")}


# --------------------------------------------------------------------------- main

def run(settings: Settings, quick: bool) -> dict[str, Any]:
    """Start the servers, measure everything, stop the servers; return the report."""
    began = time.perf_counter()
    rng = random.Random()
    seed = rng.randrange(2**32)     # recorded, so that a run's orders can be replayed
    rng.seed(seed)
    work = Path(tempfile.mkdtemp(prefix="resil-bench-"))
    try:
        print("starting MariaDB, Redis and the HTTP server on loopback ...", flush=True)
        http_cpu = other_cpu() if settings.pin and settings.http_other_cpu else None
        with one_cpu(settings.pin) as cpu, real_servers(work, http_cpu) as servers:
            config_path = write_config(work, servers)
            config = load_config(config_path, env={})
            print(f"MariaDB :{servers.mysql_port}, Redis :{servers.redis_port}, HTTP "
                  f":{servers.http_port} (products, unit a) :{servers.http_b_port} "
                  f"(unit b) :{servers.http_plain_port} (no resource); "
                  f"config {config_path}", flush=True)
            check_routing(config, servers)
            check_agent_starts(config_path)
            where = "unpinned" if cpu is None else f"client and servers on CPU {cpu}"
            if http_cpu is not None:
                where += f", the HTTP server on CPU {http_cpu}"
            print(f"round trips ({settings.rounds} rounds, {where}) ...", flush=True)
            rt = round_trips(config, servers, settings, rng)
            if counters.faults():
                raise RuntimeError(f"resil recorded faults: {counters.faults()}")
        # The servers are gone: start-up and memory need only the configuration file,
        # and run on every CPU, as programs normally do.
        print("start-up ...", flush=True)
        start = startup(config_path, settings, rng)
        print("memory ...", flush=True)
        mem = memory(config_path, settings, rng)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = summarise_round_trips(rt, settings)
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": quick, "seed": seed, "machine": machine(), "versions": versions(),
        "settings": {"rounds": settings.rounds, "startup_runs": settings.startup_runs,
                     "pinned_cpu": cpu, "http_server_cpu": http_cpu,
                     "memory_runs": settings.memory_runs,
                     "ops": {op.key: batch(op, settings) for op in OPERATIONS}},
        "otel_tracer_provider": tracer_provider_description(),
        "round_trips": summary, "round_trips_raw": rt,
        "startup": start, "memory": mem, "targets": targets(summary, start, mem),
        "runtime_s": time.perf_counter() - began,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer rounds, runs and operations")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="let the scheduler place client and servers (noisier round trips)")
    parser.add_argument("--http-other-cpu", action="store_true",
                        help="pin the HTTP server to another CPU than the client (slower "
                             "round trips, so smaller ratios; see README)")
    args = parser.parse_args(argv)
    if not (BIN / "resil-run").exists():
        print(f"overhead: {BIN / 'resil-run'} not found: run with the venv's python "
              "(.venv/bin/python benchmarks/overhead.py)", file=sys.stderr)
        return 2
    restore = stop_servers_on_sigterm()     # SIGTERM then unwinds and stops the servers too
    try:
        report = run(Settings.of(args.quick, args.pin, args.http_other_cpu), args.quick)
    except KeyboardInterrupt:
        print("\noverhead: interrupted; servers stopped", file=sys.stderr)
        return 130
    finally:
        restore()
    print_report(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}; runtime {report['runtime_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
