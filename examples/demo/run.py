"""The two-unit e-commerce demo: shoppers keep buying while a database moves, a unit is cut
off and the primary database is killed.

On loopback it starts two units, ``beijing`` and ``hangzhou``. Each has a MariaDB
(primary in beijing, semi-synchronous GTID replica in hangzhou), a Redis (the same), the
Django product service of ``examples/django_app`` and the Flask storefront of
``examples/flask_app``, both unchanged under ``resil-run`` with one generated
``resil.toml``, and ``resil monitor`` watches the databases. Shopper threads (one cookie
jar each, no stickiness) list products, fill a cart and check out on whichever
storefront a small load balancer finds ready (``/readyz`` of resil's admin endpoint).

The story: baseline; ``resil db switch orders-db --to hangzhou`` (and ``cache``);
``resil chaos inject productservice --unit beijing --loss 50%`` (half of the calls to
beijing's product service lost, inside the agents); ``resil traffic cut beijing``, then
the fault cleared and ``resil traffic restore beijing``; ``kill -9`` of the
primary database, ``resil monitor`` fails over; the old primary restarted, made a
replica again (``resil db rejoin``) and switched back to; a short tail. It prints a table per step
(requests, errors, p99 latency, longest pause between two successful checkouts, the
failover's RTO, lost orders) and writes a timeline plot (PNG). Everything it started is
stopped at the end, Ctrl-C included.

Usage: ``make demo``, or ``.venv/bin/python examples/demo/run.py [--quick] [--png PATH]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))          # the real-server harness of the test suite

import requests  # noqa: E402

import resil  # noqa: E402,F401  (installed by `make demo`; never started in this process)
from servers import MariaDBPair, RedisPair  # noqa: E402
from servers.config import PASSWORDS, resil_toml  # noqa: E402
from servers.mariadb import MariaDB  # noqa: E402
from servers.ports import free_port, stop_servers_on_sigterm, wait_until  # noqa: E402

BIN = Path(sys.executable).parent
DJANGO = ROOT / "examples" / "django_app"
FLASK = ROOT / "examples" / "flask_app"
UNITS = ("beijing", "hangzhou")
SHOPPERS = 4
THINK = 0.02            # seconds a shopper waits between two requests


def say(text: str = "") -> None:
    print(text, flush=True)


# ------------------------------------------------------------------ processes


@dataclass
class Process:
    """A process this demo started, in its own process group, stopped by that group."""

    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        with self.log.open("ab") as out:        # a file: a full pipe would block the child
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM to the group (gunicorn reaps its workers), SIGKILL after 10 s."""
        if not self.running:
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


# ------------------------------------------------------------------ shoppers


@dataclass
class Record:
    start: float            # seconds since the story began
    end: float
    step: str               # list, cart, checkout
    unit: str               # the storefront that was asked
    status: int             # HTTP status; 0 for an exception
    order_id: int | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def latency(self) -> float:
        return self.end - self.start


class Balancer:
    """What a load balancer does: health-check every storefront's /readyz and send shoppers
    only to the ready ones (all of them when none is ready)."""

    def __init__(self, storefronts: dict[str, str], readyz: dict[str, str]) -> None:
        self.storefronts = storefronts
        self.readyz = readyz
        self.ready = list(storefronts)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="balancer", daemon=True)

    def _run(self) -> None:
        while not self.stopped.is_set():
            ready = [unit for unit, url in self.readyz.items() if http_ok(url)]
            self.ready = ready or list(self.storefronts)
            self.stopped.wait(0.2)

    def pick(self, turn: int) -> tuple[str, str]:
        ready = self.ready
        unit = ready[turn % len(ready)]
        return unit, self.storefronts[unit]


class Shoppers:
    """Shopper threads: list products, add one or two to the cart, check out; repeat.
    Each has its own cookie jar and takes the next ready storefront for every request."""

    def __init__(self, balancer: Balancer, products: list[int], t0: float) -> None:
        self.balancer = balancer
        self.products = products
        self.t0 = t0
        self.records: list[Record] = []
        self.confirmed: set[int] = set()        # every order answered with success, warm-up too
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._shop, args=(n,), name=f"shopper-{n}",
                                         daemon=True) for n in range(SHOPPERS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def restart_clock(self, t0: float) -> None:
        """Forget the warm-up: times count from ``t0`` from now on."""
        with self.lock:
            self.t0 = t0
            self.records.clear()

    def stop(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(15)

    def _call(self, session: requests.Session, turn: int, step: str, method: str, path: str,
              **kwargs: object) -> Record:
        unit, base = self.balancer.pick(turn)
        t0 = self.t0
        start = time.monotonic() - t0
        try:
            answer = session.request(method, base + path, timeout=10, **kwargs)
            status, body, error = answer.status_code, answer.text, ""
        except requests.RequestException as exc:
            status, body, error = 0, "", f"{type(exc).__name__}: {exc}"
        record = Record(start, time.monotonic() - t0, step, unit, status, error=error)
        if step == "checkout" and record.ok:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                record.order_id = int(json.loads(body)["order"]["order_id"])
        if not record.ok and not error:
            record.error = body.strip()[:300]
        with self.lock:
            if record.order_id is not None:
                self.confirmed.add(record.order_id)
            if t0 == self.t0:                   # not a warm-up request
                self.records.append(record)
        return record

    def _shop(self, n: int) -> None:
        rng = random.Random(n)
        turn = n
        with requests.Session() as session:
            while not self.stopped.is_set():
                steps = [("list", "GET", "/", {})]
                for pid in rng.sample(self.products, rng.choice((1, 2))):
                    steps.append(("cart", "POST", f"/cart/{pid}", {"json": {"qty": 1}}))
                steps.append(("checkout", "POST", "/checkout",
                              {"json": {"customer": f"shopper-{n}"}}))
                for step, method, path, kwargs in steps:
                    # A shopper whose checkout failed presses the button again (up to 5
                    # times): the cart and its Idempotency-Key are still in the session.
                    for _ in range(5 if step == "checkout" else 1):
                        if self.stopped.is_set():
                            return
                        record = self._call(session, turn, step, method, path, **kwargs)
                        turn += 1
                        time.sleep(THINK if record.ok else 0.2)
                        if record.ok:
                            break


# ------------------------------------------------------------------ the story


@dataclass
class Step:
    name: str
    start: float
    end: float = 0.0


@dataclass
class Story:
    t0: float
    steps: list[Step] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def begin(self, name: str) -> None:
        if self.steps:
            self.steps[-1].end = self.now()
        self.steps.append(Step(name, self.now()))
        say(f"\n== {self.now():6.1f}s  {name}")

    def event(self, label: str) -> float:
        at = self.now()
        self.events.append((at, label))
        return at

    def finish(self) -> None:
        self.steps[-1].end = self.now()


def p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def longest_pause(records: list[Record], start: float, end: float) -> float:
    """The longest time between two successful checkouts (by answer) within [start, end]."""
    times = [start] + sorted(r.end for r in records if r.step == "checkout" and r.ok
                             and start <= r.end <= end) + [end]
    return max(b - a for a, b in zip(times, times[1:], strict=False))


def table(story: Story, records: list[Record], rto: float | None, lost: int) -> str:
    head = ("| step | requests | errors | p99 latency | longest write pause | RTO |"
            " checkouts ok | lost orders |")
    lines = [head, "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for step in story.steps:
        inside = [r for r in records if step.start <= r.start < step.end]
        errors = sum(not r.ok for r in inside)
        ok = sum(r.step == "checkout" and r.ok for r in inside)
        lat = p99([r.latency for r in inside]) * 1000
        pause = longest_pause(records, step.start, step.end) * 1000
        rto_cell = f"{rto:.2f} s" if (step.name.startswith("kill") and rto is not None) else (
            "none" if step.name.startswith("kill") else "")
        lines.append(f"| {step.name} | {len(inside)} | {errors} | {lat:.0f} ms | "
                     f"{pause:.0f} ms | {rto_cell} | {ok} | |")
    total_errors = sum(not r.ok for r in records)
    all_ok = sum(r.step == "checkout" and r.ok for r in records)
    lines.append(f"| **all** | {len(records)} | {total_errors} | "
                 f"{p99([r.latency for r in records]) * 1000:.0f} ms | | | {all_ok} | "
                 f"**{lost}** |")
    return "\n".join(lines)


def plot(story: Story, records: list[Record], path: Path, rto: float | None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 0.25                                # seconds per bar
    end = story.steps[-1].end
    bins = int(end / width) + 1
    ok, bad, checkouts = [0.0] * bins, [0.0] * bins, [0.0] * bins
    lat: list[list[float]] = [[] for _ in range(bins)]
    for r in records:
        i = min(bins - 1, int(r.start / width))
        if r.ok:
            ok[i] += 1 / width                  # per second
        else:
            bad[i] += 1 / width
        lat[i].append(r.latency * 1000)
        if r.step == "checkout" and r.ok:
            checkouts[min(bins - 1, int(r.end / width))] += 1 / width
    xs = [i * width for i in range(bins)]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(13, 8.5), sharex=True,
                                        gridspec_kw={"height_ratios": [3, 2, 3]})
    ax1.stackplot(xs, ok, bad, labels=["2xx answers", "errors (non-2xx, exceptions)"],
                  colors=["#4c9be8", "#e8544c"], step="post")
    ax1.set_ylabel("requests / s (by start)")
    ax1.legend(loc="lower left", fontsize=8, framealpha=0.95)
    ax2.step(xs, checkouts, where="post", color="#2a9d4a")
    ax2.set_ylabel("successful\ncheckouts / s")
    ax2.set_ylim(0, max(checkouts) * 1.4)
    for step in story.steps:
        ax2.text((step.start + step.end) / 2, max(checkouts) * 1.35, step.name, fontsize=8,
                 ha="center", va="top", color="#333333")
    ax3.step(xs, [max(v) if v else float("nan") for v in lat], where="post",
             label="max latency", color="#e8a04c")
    ax3.step(xs, [sorted(v)[len(v) // 2] if v else float("nan") for v in lat], where="post",
             label="median latency", color="#7a4ce8")
    ax3.set_yscale("log")
    ax3.set_ylabel(f"latency (ms, per {width} s)")
    ax3.set_xlabel("seconds since the story began")
    ax3.legend(loc="upper left", fontsize=8, framealpha=0.95)
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
        ax.set_xlim(0, end)
        for n, step in enumerate(story.steps):
            if n % 2:
                ax.axvspan(step.start, step.end, color="#000000", alpha=0.04, linewidth=0)
        for at, _ in story.events:
            ax.axvline(at, color="black", linestyle="--", linewidth=0.9, alpha=0.7)
    ax1.set_ylim(0, max(a + b for a, b in zip(ok, bad, strict=True)) * 1.45)
    top = ax1.get_ylim()[1]
    for n, (at, label) in enumerate(story.events):
        ax1.text(at + 0.1, top * (0.98 - 0.09 * (n % 2)), label, fontsize=8, va="top",
                 bbox={"facecolor": "white", "alpha": 0.9, "edgecolor": "none", "pad": 1})
    title = ("resil demo: shoppers on two units through a planned switch, 50% loss injected, "
             "a unit cut and a kill -9")
    if rto is not None:
        title += f"\nfailover RTO {rto:.2f} s (kill -9 to the first successful checkout)"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------ main


class Demo:
    def __init__(self, base: Path, args: argparse.Namespace) -> None:
        self.base = base
        self.args = args
        self.processes: list[Process] = []
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                    **PASSWORDS, "PYTHONDONTWRITEBYTECODE": "1",
                    "SECRET_KEY": "demo-storefront-secret",
                    "DJANGO_SECRET_KEY": "demo-product-service-secret",
                    "DB_HOST": "orders-db", "DB_PORT": "3306", "DB_NAME": "app",
                    "DB_USER": "app", "DB_PASSWORD": "apppw"}
        self.env.pop("PRODUCT_SERVICE", None)
        self.env.pop("RESIL_CONFIG", None)

    def sh(self, *argv: str, cwd: Path | None = None, quiet: bool = False) -> str:
        """Run a command as a user would, echo it (and its output); fail loudly."""
        say("$ " + " ".join(argv))
        out = subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=cwd or self.base,
                             env=self.env, capture_output=True, text=True, timeout=120)
        if not quiet or out.returncode:
            say("  " + (out.stdout + out.stderr).rstrip().replace("\n", "\n  "))
        if out.returncode != 0:
            raise SystemExit(f"demo: `{' '.join(argv)}` failed with exit {out.returncode}")
        return out.stdout

    def spawn(self, name: str, argv: list[str], cwd: Path, env: dict[str, str]) -> Process:
        process = Process(name, argv, cwd, env, self.base / f"{name}.log")
        self.processes.append(process)
        process.start()
        return process

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            with contextlib.suppress(Exception):
                process.stop()


def semi_sync_everywhere(mysql: MariaDBPair) -> None:
    """Both servers may be a semi-sync primary or replica: after a switch the new primary
    waits for the old one's acknowledgement as the first one did, so a kill -9 of it loses
    no acknowledged order either."""
    for server in (mysql.primary, mysql.replica):
        server.root_sql("SET GLOBAL rpl_semi_sync_master_enabled = ON;"
                        "SET GLOBAL rpl_semi_sync_slave_enabled = ON;"
                        "SET GLOBAL rpl_semi_sync_master_timeout = 5000")
        # Also at the next start: a killed semi-sync primary that restarts so truncates
        # from its binlog what no replica acknowledged (what it never confirmed to a
        # client), instead of keeping it as an errant transaction that blocks its rejoin.
        server.extra_config = "rpl_semi_sync_slave_enabled=ON\n"
    mysql.replica.root_sql("STOP SLAVE IO_THREAD; START SLAVE IO_THREAD")


def writable(server: MariaDB) -> bool:
    try:
        return server.pid is not None and server.root_sql("SELECT @@read_only", 5) == [(0,)]
    except Exception:
        return False


def run(args: argparse.Namespace) -> int:
    quick = args.quick
    seconds = {"warm-up": 3, "baseline": 8, "switch": 10, "chaos": 8, "cut": 8, "restore": 8,
               "kill": 15, "rejoin": 4, "tail": 8}
    if quick:
        seconds = {"warm-up": 1.5, "baseline": 2, "switch": 4, "chaos": 3, "cut": 4,
                   "restore": 3, "kill": 7, "rejoin": 2, "tail": 2}
    base = Path(tempfile.mkdtemp(prefix="resil-demo-"))
    png = Path(args.png) if args.png else Path(__file__).with_name("timeline.png")
    demo = Demo(base, args)
    started = time.monotonic()
    say(f"== starting two units on loopback (work directory {base})")
    with MariaDBPair(base / "mysql", semi_sync=True) as mysql, \
            RedisPair(base / "redis") as cache:
        try:
            return story(demo, mysql, cache, seconds, png, started)
        finally:
            demo.stop_all()


def story(demo: Demo, mysql: MariaDBPair, cache: RedisPair, seconds: dict[str, float],
          png: Path, started: float) -> int:
    semi_sync_everywhere(mysql)
    db = {"beijing": mysql.primary, "hangzhou": mysql.replica}
    say(f"MariaDB  beijing :{mysql.primary.port} (primary) -> hangzhou :{mysql.replica.port}"
        " (semi-sync GTID replica)")
    say(f"Redis    beijing :{cache.primary.port} (primary) -> hangzhou :{cache.replica.port}")

    ports = {(svc, unit): free_port() for svc in ("products", "store", "products-admin",
                                                   "store-admin") for unit in UNITS}
    endpoints = ", ".join(f'{u} = ["http://127.0.0.1:{ports["products", u]}"]' for u in UNITS)
    config = demo.base / "resil.toml"
    config.write_text(
        resil_toml((demo.base / "state.json").as_uri(), mysql=mysql, redis=cache,
                   units=UNITS, control="heartbeat_interval = 0.5")
        + f'\n[resources.productservice]\nkind = "http"\nendpoints = {{ {endpoints} }}\n'
        # A lossy unit fails one call in two, rarely five in a row: eject by share too.
        + 'eject_failure_percent = 30\n'
        + '\n[sessions]\nresource = "cache"\n')
    demo.env["RESIL_CONFIG"] = str(config)
    say(f"\n== one resil.toml for every process: {config}")
    demo.sh("resil", "config", "check", str(config))

    say("\n== the product service's tables and products (Django, under resil-run)")
    demo.sh("resil-run", "python", "manage.py", "migrate", "--noinput", cwd=DJANGO, quiet=True)
    demo.sh("resil-run", "python", "manage.py", "seed", "--stock", "1000000", cwd=DJANGO)

    say("\n== in each unit: the product service (gunicorn) and the storefront (gunicorn), "
        "both under resil-run")
    for unit in UNITS:
        for svc, cwd, app in (("products", DJANGO, "productservice.wsgi"),
                              ("store", FLASK, "app:app")):
            env = {**demo.env, "APP_UNIT": unit, "RESIL_UNIT": unit,
                   "RESIL_ADMIN_LISTEN": f"127.0.0.1:{ports[svc + '-admin', unit]}"}
            demo.spawn(f"{svc}-{unit}", [str(BIN / "resil-run"), "--unit", unit, "gunicorn",
                                         app, "-w", "2", "--threads", "4", "-b",
                                         f"127.0.0.1:{ports[svc, unit]}"], cwd, env)
    monitor = [str(BIN / "resil"), "monitor", "--config", str(config)]
    demo.spawn("monitor", monitor, demo.base, demo.env)
    urls = [f"http://127.0.0.1:{ports[svc, u]}/healthz" for svc in ("products", "store")
            for u in UNITS]
    urls += [f"http://127.0.0.1:{ports[svc + '-admin', u]}/readyz"
             for svc in ("products", "store") for u in UNITS]
    if not wait_until(lambda: all(http_ok(url) for url in urls), 60, 0.2):
        bad = [url for url in urls if not http_ok(url)]
        raise SystemExit(f"demo: not up within 60 s: {bad}; logs in {demo.base}")
    for process in demo.processes:
        say(f"  {process.name:18} pid {process.pid}  log {process.log.name}")
    storefronts = {u: f"http://127.0.0.1:{ports['store', u]}" for u in UNITS}
    readyz = {u: f"http://127.0.0.1:{ports['store-admin', u]}/readyz" for u in UNITS}
    products = [p["id"] for p in requests.get(storefronts["beijing"] + "/", timeout=10)
                .json()["products"]["products"]]
    say(f"  storefronts {storefronts['beijing']} (beijing), {storefronts['hangzhou']} "
        f"(hangzhou); {len(products)} products")

    balancer = Balancer(storefronts, readyz)
    shoppers = Shoppers(balancer, products, time.monotonic())
    balancer.thread.start()
    say(f"\n== {SHOPPERS} shoppers start (warm-up: {seconds['warm-up']} s, not counted)")
    shoppers.start()
    kill_at: float | None = None
    story_ = Story(time.monotonic())
    try:
        time.sleep(seconds["warm-up"])
        story_ = Story(time.monotonic())
        shoppers.restart_clock(story_.t0)
        story_.begin("baseline")
        time.sleep(seconds["baseline"])

        story_.begin("planned switch")
        time.sleep(1)
        story_.event("db switch orders-db")
        demo.sh("resil", "db", "switch", "orders-db", "--to", "hangzhou")
        story_.event("db switch cache")
        demo.sh("resil", "db", "switch", "cache", "--to", "hangzhou")
        time.sleep(max(0.0, seconds["switch"] - (story_.now() - story_.steps[-1].start)))

        # The playbook's first step: degrade one unit's product service (half its calls
        # lost) from the control plane, and watch routing take the storefront around it.
        story_.begin("chaos: 50% loss, beijing products")
        story_.event("chaos inject")
        demo.sh("resil", "chaos", "inject", "productservice", "--unit", "beijing",
                "--loss", "50%", "--for", "2m")
        time.sleep(seconds["chaos"])

        story_.begin("traffic cut beijing")
        story_.event("traffic cut beijing")
        demo.sh("resil", "traffic", "cut", "beijing")
        time.sleep(1)
        say(f"  load balancer sends shoppers to: {', '.join(balancer.ready)}")
        time.sleep(max(0.0, seconds["cut"] - 1))

        story_.begin("traffic restore beijing")
        story_.event("traffic restore")
        demo.sh("resil", "chaos", "clear", "--all")
        demo.sh("resil", "traffic", "restore", "beijing")
        time.sleep(1)
        say(f"  load balancer sends shoppers to: {', '.join(balancer.ready)}")
        time.sleep(max(0.0, seconds["restore"] - 1))

        story_.begin("kill -9 primary db")
        time.sleep(1)
        victim_unit = next(u for u, s in db.items() if writable(s))
        victim = db[victim_unit]
        status = dict(victim.root_sql("SHOW STATUS LIKE 'Rpl_semi_sync_master_%'"))
        say(f"  primary of orders-db: {victim_unit} :{victim.port}, pid {victim.pid}; "
            f"semi-sync {status.get('Rpl_semi_sync_master_status')}, "
            f"{status.get('Rpl_semi_sync_master_clients')} replica(s)")
        say(f"$ kill -9 {victim.pid}")
        kill_at = story_.event(f"kill -9 db ({victim_unit})")
        os.kill(victim.pid, signal.SIGKILL)     # type: ignore[arg-type]
        wait_until(lambda: any(r.step == "checkout" and r.ok and r.start > kill_at
                               for r in list(shoppers.records)), 30, 0.05)
        time.sleep(max(0.0, seconds["kill"] - (story_.now() - story_.steps[-1].start)))

        story_.begin("rejoin and switch back")
        say(f"  restarting the old primary in {victim_unit} (the monitor fences it as it "
            "comes back)")
        victim.start()

        def fenced() -> bool:
            try:
                return victim.root_sql("SELECT @@read_only", 5) == [(1,)]
            except Exception:
                return False
        wait_until(fenced, 15, 0.1)
        story_.event(f"db rejoin ({victim_unit})")
        demo.sh("resil", "db", "rejoin", "orders-db", victim_unit)
        story_.event(f"db switch back ({victim_unit})")
        demo.sh("resil", "db", "switch", "orders-db", "--to", victim_unit)
        time.sleep(seconds["rejoin"])

        story_.begin("tail")
        time.sleep(seconds["tail"])
    finally:
        shoppers.stop()
        balancer.stopped.set()
        if story_.steps:
            story_.finish()
    records = sorted(shoppers.records, key=lambda r: r.start)

    say("\n== after the story")
    with contextlib.suppress(SystemExit):
        demo.sh("resil", "status")
    monitor_log = (demo.base / "monitor.log").read_text(errors="replace") if (
        demo.base / "monitor.log").exists() else ""
    for line in monitor_log.splitlines():
        if any(word in line for word in ("FAILOVER", "promoting", "published", "fenced")):
            say(f"  monitor: {line.strip()}")

    # Every order that got a success answer must be on the final primary: read them through
    # an admin connection straight to its port (this process never runs the agent).
    final_unit = next((u for u, s in db.items() if writable(s)), None)
    confirmed = sorted(shoppers.confirmed)
    if final_unit is None:
        say("no writable primary after the story: cannot check the orders")
        lost = len(confirmed)
    else:
        server = db[final_unit]
        conn = server.connect(user="resil", password=PASSWORDS["RESIL_TEST_ADMIN_PW"],
                              database="app")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT id FROM shop_order")
                stored = {row[0] for row in cur.fetchall()}
        finally:
            conn.close()
        missing = [o for o in confirmed if o not in stored]
        lost = len(missing)
        say(f"final primary of orders-db: {final_unit} :{server.port}; {len(stored)} orders "
            f"stored, {len(confirmed)} confirmed to shoppers (warm-up included), {lost} of "
            "them missing" + (f": {missing[:20]}" if missing else "")
            + f"; {len(stored - set(confirmed))} stored without a success answer (placed, "
            "but the shopper got an error and gave up)")

    rto = None
    if kill_at is not None:
        after = [r.end for r in records if r.step == "checkout" and r.ok and r.start > kill_at]
        rto = (min(after) - kill_at) if after else None

    say("\n== results\n")
    say(table(story_, records, rto, lost))
    say("\nerrors: non-2xx answers and exceptions seen by shoppers. longest write pause: the "
        "longest time without a successful checkout. RTO: from the kill -9 to the first "
        "successful checkout sent after it. lost orders: confirmed to a shopper, missing on "
        "the final primary.")
    errors = [r for r in records if not r.ok]
    if errors:
        say(f"\nfirst errors ({len(errors)} in all):")
        for r in errors[:8]:
            step = next((s.name for s in story_.steps if s.start <= r.start < s.end), "?")
            say(f"  {r.start:6.2f}s [{step}] {r.step} on {r.unit}: {r.status} {r.error[:200]}")

    plot(story_, records, png, rto)
    say(f"\ntimeline: {png}")
    say(f"logs of the services and the monitor, and resil.toml: {demo.base}")
    say(f"demo took {time.monotonic() - started:.0f} s")
    return 0 if lost == 0 and rto is not None else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short steps (for the tests)")
    parser.add_argument("--png", help="where to write the timeline (default: "
                        "examples/demo/timeline.png)")
    args = parser.parse_args()
    stop_servers_on_sigterm()
    return run(args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: everything the demo started is stopped", file=sys.stderr)
        sys.exit(130)
