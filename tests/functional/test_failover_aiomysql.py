"""kill -9 of the primary while SQLAlchemy's async engine writes through aiomysql (or
asyncmy):
`resil monitor` promotes the replica, the engine's new connections are routed there, no
acknowledged write is lost, and nobody waits beyond the application's own timeouts."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

import resil
from functional.test_failover_mysql import config, pair, present, start_monitor  # noqa: F401

pytestmark = pytest.mark.adversarial

TIMEOUT = 2.0


class EngineWriters:
    """8 tasks writing autocommit INSERTs through one async engine, in a thread's loop."""

    def __init__(self, driver: str) -> None:
        self.driver = driver
        self.acked: list[tuple[str, int]] = []
        self.acked_at: list[float] = []
        self.errors: list[str] = []
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        # Nothing may be acknowledged after the check of the servers begins.
        assert not self._thread.is_alive(), "the writers did not stop"

    async def _main(self) -> None:
        engine = create_async_engine(
            f"mysql+{self.driver}://app:apppw@orders-db/app", pool_size=8, max_overflow=0,
            connect_args={"connect_timeout": TIMEOUT}, pool_pre_ping=True)
        tasks = [asyncio.create_task(self._write(engine, f"e{i}")) for i in range(8)]
        while not self._stop.is_set():
            await asyncio.sleep(0.05)
        await asyncio.wait(tasks, timeout=3 * TIMEOUT)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await engine.dispose()

    async def _write(self, engine, name: str) -> None:
        seq = 0
        while not self._stop.is_set():     # a cancel may be swallowed by the pool
            seq += 1
            began = time.monotonic()
            try:
                async with engine.begin() as conn:
                    await asyncio.wait_for(conn.execute(
                        text("INSERT INTO w VALUES (:w, :s)"), {"w": name, "s": seq}),
                        TIMEOUT)
                self.acked.append((name, seq))
                self.acked_at.append(time.monotonic())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors.append(f"{name} {seq}: {type(exc).__name__}")
                await asyncio.sleep(0.05)
            self.longest = max(self.longest, time.monotonic() - began)


@pytest.mark.parametrize("driver", ["aiomysql", "asyncmy"])
def test_kill_9_of_the_primary_under_sqlalchemy_async(pair, config, tmp_path,  # noqa: F811
                                                      driver):
    resil.start(config)
    monitor = start_monitor(config, tmp_path)
    writers = EngineWriters(driver)
    writers.start()
    try:
        time.sleep(1.5)
        killed = time.monotonic()
        pair.primary.kill()
        deadline = killed + 8
        while not [t for t in writers.acked_at if t > killed + 0.05]:
            assert time.monotonic() < deadline, (writers.errors[-3:],
                                                 (tmp_path / "monitor.log").read_text())
            time.sleep(0.02)
        recovered = min(t for t in writers.acked_at if t > killed + 0.05) - killed
        time.sleep(0.5)
    finally:
        writers.stop()
        monitor.send_signal(signal.SIGTERM)
        monitor.wait(10)
    log = (tmp_path / "monitor.log").read_text()
    assert "FAILOVER from" in log, log
    rows = present(pair.replica)
    lost = [a for a in writers.acked if a not in rows]
    when = dict(zip(writers.acked, writers.acked_at, strict=True))
    assert not lost, (f"{len(lost)} acknowledged writes lost",
                      [(a, round(when[a] - killed, 3), max(s for n, s in writers.acked
                                                            if n == a[0])) for a in lost])
    assert recovered < 5.0, recovered
    # Only the writes in flight at the kill fail (one per task at most): the connects to
    # the dead primary wait, awaited, for the new one.
    assert len(writers.errors) <= 8, writers.errors[:5]
    assert writers.longest < 3 * TIMEOUT + 0.5, writers.longest
    print(f"\nkill -9 (SQLAlchemy async, {driver}): first write on the new primary "
          f"{recovered:.2f} s after the kill; {len(writers.errors)} client errors; "
          f"{len(writers.acked)} acked, 0 lost; longest write {writers.longest:.2f} s")
