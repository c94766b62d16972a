"""A Celery worker that has never heard of resil, under `resil-run celery worker`, with
each of Celery's built-in pools: prefork (forked pool processes), threads and solo. Its
tasks route PyMySQL to the primary and keep writing through two planned switches, with
no failed task and no lost or doubled row."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from servers import MariaDBPair, Redis
from servers.config import PASSWORDS, resil_toml

BIN = Path(sys.executable).parent

TASKS = textwrap.dedent("""
    import os
    import threading
    import pymysql
    from celery import Celery

    app = Celery("tasks", broker=os.environ["BROKER"], backend=os.environ["BROKER"])
    app.conf.worker_prefetch_multiplier = 1
    app.conf.broker_connection_retry_on_startup = True

    _local = threading.local()

    @app.task
    def insert(n):
        # One connection per pool process or thread, opened at its first task and
        # kept: the switch moves it (a fork of the parent's connection would be shared,
        # and a PyMySQL connection is not for two threads at once).
        conn = getattr(_local, "conn", None)
        if conn is None:
            conn = _local.conn = pymysql.connect(host="orders-db", user="app",
                                                 password="apppw", database="app",
                                                 autocommit=True)
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {os.environ['TABLE']} VALUES (%s, %s)",
                        (n, os.getpid()))
            cur.execute("SELECT @@server_id")
            return os.getpid(), threading.get_ident(), cur.fetchone()[0]
""")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with MariaDBPair(tmp_path_factory.mktemp("switch-celery")) as pair:
        yield pair


@pytest.fixture
def broker(tmp_path):
    server = Redis(tmp_path, "broker")
    server.start()
    yield f"redis://127.0.0.1:{server.port}/0"
    server.destroy()


def switch(config: Path, to: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "resil"), "db", "switch", "orders-db", "--to", to,
                           "--config", str(config)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **PASSWORDS})


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_a_worker_keeps_writing_through_switches(pair, broker, tmp_path, write_config, pool):
    table = f"celery_{pool}"
    pair.primary.root_sql(f"CREATE TABLE app.{table} (n INT PRIMARY KEY, pid INT)")
    pair.wait_caught_up()
    (tmp_path / "tasks.py").write_text(TASKS)
    config = write_config(resil_toml((tmp_path / "state.json").as_uri(), mysql=pair))
    env = {**os.environ, **PASSWORDS, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "RESIL_CONFIG": str(config), "BROKER": broker, "PYTHONPATH": str(tmp_path),
           "TABLE": table}
    concurrency = "1" if pool == "solo" else "2"
    worker = subprocess.Popen([str(BIN / "resil-run"), "celery", "-A", "tasks", "worker",
                               "--pool", pool, "--concurrency", concurrency, "--loglevel",
                               "warning", "--without-heartbeat", "--without-gossip",
                               "--without-mingle"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    sys.path.insert(0, str(tmp_path))
    os.environ["BROKER"] = broker
    try:
        import tasks  # the client side: sends tasks, reads results (no resil here)
        results = []
        switches = []
        began = time.monotonic()
        for n in range(240):
            results.append(tasks.insert.delay(n))
            if n in (80, 160):
                switches.append(switch(config, "b" if n == 80 else "a"))
            time.sleep(0.01)
        outcomes = []
        for result in results:
            try:
                outcomes.append(result.get(timeout=60))
            except Exception as exc:     # a failed task: what the test counts
                outcomes.append(exc)
        elapsed = time.monotonic() - began
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("tasks", None)
        del os.environ["BROKER"]
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
    for done in switches:
        assert done.returncode == 0, done.stdout + done.stderr
    failed = [o for o in outcomes if isinstance(o, Exception)]
    assert not failed, (failed[:3], worker.stderr.read()[-2000:])
    pids = {pid for pid, _, _ in outcomes}
    workers = {(pid, thread) for pid, thread, _ in outcomes}
    servers = [server for _, _, server in outcomes]
    if pool == "prefork":
        assert len(pids) == 2, pids                   # both pool processes worked
    elif pool == "threads":
        assert len(pids) == 1 and len(workers) == 2, workers   # two threads, one process
    else:
        assert len(workers) == 1, workers
    assert {1, 2} <= set(servers), servers[::20]      # and followed the switches
    assert servers[-1] == 1                           # back on "a" at the end
    rows = pair.primary.root_sql(f"SELECT n FROM app.{table} ORDER BY n")
    assert [n for (n,) in rows] == list(range(240))   # none lost, none twice
    assert elapsed < 60
