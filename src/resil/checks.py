"""Active health checks of http endpoints (``health_path``).

One daemon thread per process asks ``GET <endpoint><health_path>`` of every endpoint of
every http resource that has a ``health_path``, each every ``health_interval`` seconds,
through a pool of at most :data:`CONCURRENCY` probes at once, each with a timeout of at
most 2 s. A probe that answers below 500 passes; anything else marks the endpoint down
(:meth:`resil.health.ResourceHealth.set_active`) until a probe passes again.

The thread starts on the first routed call (nothing runs in a process that makes none)
and again in a forked worker, whose copy of the thread did not survive ``fork()``. The
probes use ``http.client`` directly: they are resil's own traffic and are never routed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from . import context, counters
from .topology import Endpoint, Resource

if TYPE_CHECKING:
    from .health import ResourceHealth

CONCURRENCY = 4
"""Probes in flight at once, per process."""


def probe(endpoint: Endpoint, path: str, timeout: float) -> str:
    """``""`` when ``GET path`` of ``endpoint`` answers below 500, else what went wrong."""
    import http.client  # in the checker thread only: nothing at start-up
    parts = urlsplit(endpoint.url or f"http://{endpoint}")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(endpoint.host, endpoint.port, timeout=timeout)
    try:
        with context.bypass():
            conn.request("GET", parts.path.rstrip("/") + path,
                         headers={"User-Agent": "resil-health-check"})
            status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    finally:
        conn.close()
    return "" if status < 500 else f"status {status}"


class ActiveChecks:
    """The background checker of one router's http resources."""

    def __init__(self, resources: list[Resource], health: Callable[[Resource], ResourceHealth],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.resources = [r for r in resources if r.http.health_path]
        self._health = health
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.running = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread (idempotent; again after a fork)."""
        with self._lock:
            if self.running or not self.resources or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="resil-health-checks",
                                            daemon=True)
            self._thread.start()
            self.running = True

    def stop(self) -> None:
        """Stop checking (the thread ends after its current round)."""
        self._stop.set()

    def after_fork_in_child(self) -> None:
        """The thread is gone in a forked child: the next routed call starts a new one."""
        self.running = False
        self._thread = None
        self._lock = threading.Lock()

    def _run(self) -> None:
        from concurrent.futures import ThreadPoolExecutor
        due: dict[tuple[str, Endpoint], float] = {}
        with ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="resil-probe") as pool:
            while not self._stop.is_set():
                now = self._clock()
                jobs = []
                for resource in self.resources:
                    policy = resource.http
                    for endpoints in resource.endpoints.values():
                        for endpoint in endpoints:
                            key = (resource.name, endpoint)
                            if due.get(key, 0.0) <= now:
                                due[key] = now + policy.health_interval
                                jobs.append((resource, endpoint, pool.submit(
                                    probe, endpoint, policy.health_path,
                                    min(2.0, policy.health_interval))))
                for resource, endpoint, job in jobs:
                    try:
                        problem = job.result()
                    except Exception as exc:    # a bug here must not end the checks
                        counters.record_fault("http.health_check", exc)
                        continue
                    self._health(resource).set_active(endpoint, problem)
                wait = min(due.values(), default=now + 1.0) - self._clock()
                self._stop.wait(max(0.01, wait))
