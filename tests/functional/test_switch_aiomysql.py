"""`resil db switch` on a MariaDB pair while asyncio tasks write through aiomysql (or
asyncmy) and SQLAlchemy's async engine: no error, no lost write, the event loop never
blocked.

The writers, all in one event loop: 6 tasks of autocommit INSERTs, 3 of transactions
(BEGIN; INSERT; INSERT; COMMIT) on long-lived connections, and 3 sharing a SQLAlchemy
async engine (``mysql+aiomysql``, ``mysql+asyncmy``) pool. All connect to "orders-db",
an alias resil routes.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

import resil
from resil import counters
from servers import MariaDBPair
from servers.config import PASSWORDS, resil_toml

RESIL = str(Path(sys.executable).parent / "resil")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with MariaDBPair(tmp_path_factory.mktemp("switch-aiomysql")) as pair:
        pair.primary.root_sql(
            "CREATE TABLE app.auto (writer VARCHAR(16), seq INT, PRIMARY KEY (writer, seq));"
            "CREATE TABLE app.tx (writer VARCHAR(16), seq INT, part INT,"
            " PRIMARY KEY (writer, seq, part))")
        pair.wait_caught_up()
        yield pair


@pytest.fixture
def config(pair, write_config, tmp_path, monkeypatch):
    for key, value in PASSWORDS.items():
        monkeypatch.setenv(key, value)
    return write_config(resil_toml((tmp_path / "state.json").as_uri(), mysql=pair))


def switch(config: Path, to: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RESIL, "db", "switch", "orders-db", "--to", to, "--config",
                           str(config)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **PASSWORDS})


class AsyncWriters:
    """Writer tasks in an event loop of their own thread; acked writes, errors, pauses,
    and the longest the loop went without running (a blocked loop shows there)."""

    def __init__(self, driver: str) -> None:
        self.driver = importlib.import_module(driver)     # aiomysql or asyncmy
        self.acked: list[tuple[str, str, int]] = []
        self.errors: list[str] = []
        self.ends: list[float] = []
        self.stalled = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def longest_pause_since(self, began: float) -> float:
        ends = sorted(e for e in self.ends if e >= began)
        return max((b - a for a, b in zip(ends, ends[1:], strict=False)), default=0.0)

    async def _main(self) -> None:
        engine = create_async_engine(f"mysql+{self.driver.__name__}://app:apppw@orders-db/app",
                                     pool_size=3, max_overflow=0)
        p = self.driver.__name__[:5]     # its own rows: both drivers write to one pair
        tasks = [asyncio.create_task(self._auto(f"{p}auto{i}")) for i in range(6)]
        tasks += [asyncio.create_task(self._tx(f"{p}tx{i}")) for i in range(3)]
        tasks += [asyncio.create_task(self._pooled(engine, f"{p}pool{i}")) for i in range(3)]
        tasks.append(asyncio.create_task(self._watch_loop()))
        while not self._stop.is_set():
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await engine.dispose()

    async def _watch_loop(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            self.stalled = max(self.stalled, now - last - 0.01)
            last = now

    def _done(self, kind: str, name: str, seq: int) -> None:
        self.acked.append((kind, name, seq))
        self.ends.append(time.monotonic())

    async def _auto(self, name: str) -> None:
        conn = await self.driver.connect(host="orders-db", user="app", password="apppw",
                                         db="app", autocommit=True, connect_timeout=5)
        seq = 0
        while True:
            seq += 1
            try:
                async with conn.cursor() as cur:
                    await cur.execute("INSERT INTO auto VALUES (%s, %s)", (name, seq))
                self._done("auto", name, seq)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors.append(f"{name} {seq}: {exc!r}")

    async def _tx(self, name: str) -> None:
        conn = await self.driver.connect(host="orders-db", user="app", password="apppw",
                                         db="app", autocommit=False, connect_timeout=5)
        seq = 0
        while True:
            seq += 1
            try:
                await conn.begin()
                async with conn.cursor() as cur:
                    await cur.execute("INSERT INTO tx VALUES (%s, %s, 1)", (name, seq))
                    await cur.execute("INSERT INTO tx VALUES (%s, %s, 2)", (name, seq))
                await conn.commit()
                self._done("tx", name, seq)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors.append(f"{name} {seq}: {exc!r}")
                await conn.rollback()

    async def _pooled(self, engine, name: str) -> None:
        seq = 0
        while True:
            seq += 1
            try:
                async with engine.begin() as conn:
                    await conn.execute(text("INSERT INTO auto VALUES (:w, :s)"),
                                       {"w": name, "s": seq})
                self._done("auto", name, seq)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors.append(f"{name} {seq}: {exc!r}")


@pytest.mark.parametrize("driver", ["aiomysql", "asyncmy"])
def test_switch_under_asyncio_load_four_times(pair, config, driver):
    resil.start(config)
    writers = AsyncWriters(driver)
    writers.start()
    reports = []
    try:
        time.sleep(1.0)
        for i, to in enumerate(["b", "a"] * 2):
            before = len(writers.acked)
            began = time.monotonic()
            out = switch(config, to)
            assert out.returncode == 0, out.stdout + out.stderr
            reports.append(out.stdout)
            time.sleep(0.5)
            assert len(writers.acked) > before, (f"switch {i + 1}: writes did not resume",
                                                 writers.errors[:3])
            assert not writers.errors, writers.errors[:3]
            assert writers.longest_pause_since(began) < 1.5, out.stdout
    finally:
        writers.stop()
    assert not writers.errors, writers.errors[:3]
    new = pair.primary                              # four switches end where they began
    assert new.root_sql("SELECT @@read_only") == [(0,)]
    auto = set(new.root_sql("SELECT writer, seq FROM app.auto"))
    tx = set(new.root_sql("SELECT writer, seq, part FROM app.tx"))
    missing = [a for a in writers.acked
               if (a[0] == "auto" and (a[1], a[2]) not in auto)
               or (a[0] == "tx" and {(a[1], a[2], 1), (a[1], a[2], 2)} - tx)]
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
    assert len(writers.acked) > 500
    # Holds and moves are awaited: the loop never stopped for a switch's length.
    assert writers.stalled < 0.25, writers.stalled
    stats = counters.stats()
    assert stats.get("mysql_connections_moved", 0) >= 4 * 9, stats
    print(f"\n{driver}: acked {len(writers.acked)}, longest loop stall "
          f"{writers.stalled * 1000:.0f} ms, stats {stats}\n" + reports[0])
