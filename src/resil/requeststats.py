"""Request metrics: in-flight, counts by status class, latency histogram.

Framework integrations (Flask, Django) call :meth:`RequestStats.begin` and
:meth:`RequestStats.end` around each request; this module knows no framework. A worker
process reports a :meth:`RequestStats.snapshot` in its heartbeat, so the process that
serves ``/metrics`` (gunicorn's master) can add up its workers' figures.
"""

from __future__ import annotations

import bisect
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Upper bounds of the latency histogram, in seconds (Prometheus' defaults).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RequestStats:
    """Thread-safe request counters of one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.by_class: dict[str, int] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)     # the last one is +Inf
        self.seconds = 0.0

    def begin(self) -> float:
        """A request starts; returns the token to pass to :meth:`end`."""
        with self._lock:
            self.in_flight += 1
        return time.perf_counter()

    def end(self, token: float, status: int) -> None:
        """The request that :meth:`begin` returned ``token`` for ended with ``status``."""
        took = time.perf_counter() - token
        klass = f"{status // 100}xx" if 100 <= status < 600 else "other"
        with self._lock:
            self.in_flight -= 1
            self.by_class[klass] = self.by_class.get(klass, 0) + 1
            self.buckets[bisect.bisect_left(BUCKETS, took)] += 1
            self.seconds += took

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able copy (for heartbeats)."""
        with self._lock:
            return {"in_flight": self.in_flight, "by_class": dict(self.by_class),
                    "buckets": list(self.buckets), "seconds": self.seconds}

    @property
    def seen(self) -> bool:
        """Whether this process served any request at all."""
        with self._lock:
            return bool(self.in_flight or self.by_class)


def combine(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """The sum of several processes' snapshots."""
    total: dict[str, Any] = {"in_flight": 0, "by_class": {}, "buckets": [0] * (len(BUCKETS) + 1),
                             "seconds": 0.0}
    for snap in snapshots:
        total["in_flight"] += int(snap.get("in_flight", 0))
        for klass, count in dict(snap.get("by_class", {})).items():
            total["by_class"][klass] = total["by_class"].get(klass, 0) + int(count)
        for i, count in enumerate(list(snap.get("buckets", []))[: len(total["buckets"])]):
            total["buckets"][i] += int(count)
        total["seconds"] += float(snap.get("seconds", 0.0))
    return total


def status_of(status_line: str) -> int:
    """``"200 OK"`` → 200; anything unparsable → 0."""
    try:
        return int(str(status_line).split(" ", 1)[0])
    except ValueError:
        return 0
