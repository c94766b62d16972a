"""Writer threads that count acknowledged writes, errors and pauses (tests and benchmarks).

Each writer writes as fast as it can, in one of the shapes real applications use, and
records every write the driver acknowledged. Afterwards :func:`missing_mysql` and
:func:`missing_redis` say which acknowledged writes are absent from a server.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pymysql


@dataclass
class Tally:
    """What one writer saw."""

    name: str
    acked: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    failed_at: list[float] = field(default_factory=list)
    """When each failed write began (monotonic): in flight at a kill, or after it."""


class Writers:
    """Runs ``write(tally, seq)`` callables in threads until :meth:`stop`."""

    def __init__(self, rate: float = 0.0) -> None:
        """``rate``: writes per second per writer (0: as fast as each can)."""
        self.tallies: list[Tally] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._period = 1.0 / rate if rate > 0 else 0.0

    def add(self, name: str, write: Callable[[Tally, int], Any],
            setup: Callable[[], Any] | None = None) -> None:
        tally = Tally(name)
        self.tallies.append(tally)

        def loop() -> None:
            context = setup() if setup else None
            seq = 0
            due = time.monotonic()
            while not self._stop.is_set():
                seq += 1
                if self._period:    # paced: one write per period, late ones not made up
                    due = max(due + self._period, time.monotonic() - self._period)
                    if self._stop.wait(max(0.0, due - time.monotonic())):
                        break
                began = time.monotonic()
                try:
                    write(tally, seq) if context is None else write(tally, seq, context)
                except Exception as exc:
                    tally.errors.append(f"{type(exc).__name__}: {exc}\n"
                                        f"{traceback.format_exc(limit=3)}")
                    tally.failed_at.append(began)
                    time.sleep(0.01)
                end = time.monotonic()
                tally.latencies.append(end - began)
                tally.ends.append(end)

        self._threads.append(threading.Thread(target=loop, name=name, daemon=True))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    @property
    def errors(self) -> list[str]:
        return [e for t in self.tallies for e in t.errors]

    @property
    def acked(self) -> int:
        return sum(len(t.acked) for t in self.tallies)

    def longest_pause(self) -> float:
        """The longest time any writer waited for one write to be acknowledged."""
        return max((max(t.latencies) for t in self.tallies if t.latencies), default=0.0)

    def pauses_since(self, since: float, until: float = float("inf")) -> list[float]:
        """Per writer, the longest latency among writes that ended after ``since`` (and
        by ``until``)."""
        result = []
        for t in self.tallies:
            n = min(len(t.latencies), len(t.ends))      # the writer may be mid-append
            pairs = zip(t.latencies[:n], t.ends[:n], strict=True)
            result.append(max((lat for lat, end in pairs if since <= end <= until),
                              default=0.0))
        return result

    def to_json(self) -> list[dict[str, Any]]:
        """Every tally, for a parent process to merge (:meth:`from_json`)."""
        return [{"name": t.name, "acked": t.acked, "errors": t.errors,
                 "latencies": t.latencies, "ends": t.ends, "failed_at": t.failed_at}
                for t in self.tallies]

    @classmethod
    def from_json(cls, tallies: list[dict[str, Any]]) -> Writers:
        """Writers (not runnable) holding the tallies other processes reported."""
        merged = cls()
        for t in tallies:
            merged.tallies.append(Tally(t["name"], [tuple(a) for a in t["acked"]],
                                        t["errors"], t["latencies"], t["ends"],
                                        t["failed_at"]))
        return merged


class OneWriter:
    """One PyMySQL connection to ``orders-db`` (through the agent), an autocommit
    ``INSERT INTO w VALUES (seq)`` every 10 ms; a broken connection is replaced, as a
    pool would. A context manager: started on entry, stopped on exit."""

    def __init__(self) -> None:
        self.acked: list[int] = []
        self.times: list[float] = []
        """When each acknowledged write returned (monotonic)."""
        self.errors: list[Exception] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        conn = None
        seq = 1
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = pymysql.connect(host="orders-db", user="app", password="apppw",
                                           database="app", autocommit=True,
                                           connect_timeout=2, read_timeout=2, write_timeout=2)
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO w VALUES (%s)", (seq,))
                self.acked.append(seq)
                self.times.append(time.monotonic())
            except Exception as exc:   # counted: the tests assert on them
                self.errors.append(exc)
                conn = None
            seq += 1
            time.sleep(0.01)

    def __enter__(self) -> OneWriter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
