"""Endpoint health of http resources: passive outlier detection and active checks.

Each endpoint is *healthy*, *ejected* (taking no calls until its ejection ends) or
*half-open* (its ejection ended: at most ``half_open_requests`` calls at once go to it;
the first success brings it back, a failure ejects it again for longer). An endpoint is
ejected after ``eject_after`` consecutive failures — a connection error or a 5xx answer —
as Envoy's outlier detection does. With ``eject_failure_percent`` set, it is also ejected
when at least that share of its calls failed within :data:`FAILURE_WINDOW` seconds (once
it took ``eject_min_calls`` calls there): a lossy endpoint that fails one call in two
rarely fails five in a row. The window opens at a failure, so a healthy endpoint's
successes still take no lock. Two of Envoy's guards keep ejection from making an outage
worse:

- at most ``max_ejected_percent`` of a resource's endpoints are ejected at once (one may
  always be), so a wave of errors caused by the callers cannot empty the resource;
- below ``panic_threshold`` percent of healthy endpoints, health is ignored altogether
  (:meth:`ResourceHealth.panic`): spreading calls over every endpoint beats piling them
  onto the last one standing.

An active check (``health_path``) marks an endpoint down while its probe fails; that is
separate from ejection and ends with the first passing probe.

Time comes from an injected clock, so tests drive the state machine without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import counters
from .topology import Endpoint, Resource

HEALTHY, EJECTED, HALF_OPEN = "healthy", "ejected", "half-open"
_MAX_MULTIPLIER = 10
FAILURE_WINDOW = 10.0
"""Seconds over which ``eject_failure_percent`` counts an endpoint's calls."""


@dataclass
class _Endpoint:
    state: str = HEALTHY
    failures: int = 0
    """Consecutive failures while healthy."""
    ejections: int = 0
    """Consecutive ejections: the multiplier of the next ejection's length."""
    ejected_until: float = 0.0
    probes: int = 0
    """Calls in flight to the endpoint while it is half-open."""
    healthy_since: float = 0.0
    total_ejections: int = 0
    active_down: str = ""
    """Why the last active check failed ("" while it passes or when there is none)."""
    window_start: float = 0.0
    window_calls: int = 0
    """Calls since the window opened (at a failure); 0 while no window is open."""
    window_failures: int = 0


class ResourceHealth:
    """Health of every endpoint of one http resource. Thread-safe; one short lock."""

    def __init__(self, resource: Resource, clock: Callable[[], float] = time.monotonic) -> None:
        self.resource = resource
        self.policy = resource.http
        self._clock = clock
        self._lock = threading.Lock()
        self._all = [e for eps in resource.endpoints.values() for e in eps]
        self._state = {e: _Endpoint() for e in self._all}
        self.all_healthy = True
        """No endpoint is ejected, half-open or down: read without the lock, it lets the
        calls of a healthy resource skip every other check (recomputed on each change)."""

    def _refresh(self) -> None:
        # under the lock, after any change of state
        self.all_healthy = all(e.state == HEALTHY and not e.active_down
                               for e in self._state.values())

    def take(self, endpoint: Endpoint, ignore_health: bool = False, probe: bool = True) -> bool:
        """Whether a call may go to ``endpoint`` now; a half-open endpoint's probe slot is
        taken by a True answer (and given back by :meth:`success` or :meth:`failure`).

        ``probe=False`` (a call that may not be retried) never gets a half-open endpoint:
        a probe that fails must cost the application nothing but a retry elsewhere.
        """
        if ignore_health or self.all_healthy:
            return True
        with self._lock:
            entry = self._state[endpoint]
            if entry.active_down:
                return False
            if entry.state == HEALTHY:
                return True
            if entry.state == EJECTED:
                if self._clock() < entry.ejected_until:
                    return False
                entry.state, entry.probes = HALF_OPEN, 0
            if not probe or entry.probes >= self.policy.half_open_requests:
                return False
            entry.probes += 1
            return True

    def success(self, endpoint: Endpoint) -> None:
        """A call to ``endpoint`` got an answer below 500."""
        found = self._state[endpoint]
        if self.all_healthy and not found.failures and not found.window_calls:
            return      # nothing to change: the common case takes no lock
        with self._lock:
            entry = self._state[endpoint]
            entry.failures = 0
            if entry.window_calls:
                self._count(entry, failed=False)
            if entry.state == HALF_OPEN:
                entry.state = HEALTHY
                entry.probes = 0
                entry.healthy_since = self._clock()
                self._refresh()
                counters.count(f"http_restored:{self.resource.name}:{endpoint}")

    def release(self, endpoint: Endpoint) -> None:
        """A call taken by :meth:`take` ended without a verdict (the caller's own error)."""
        with self._lock:
            entry = self._state[endpoint]
            if entry.state == HALF_OPEN and entry.probes:
                entry.probes -= 1

    def failure(self, endpoint: Endpoint) -> bool:
        """A call to ``endpoint`` failed (connection error or 5xx); True if that ejected it."""
        with self._lock:
            entry = self._state[endpoint]
            if entry.state == EJECTED:
                return False        # a call that started before the ejection
            if entry.state == HALF_OPEN:
                return self._eject(entry, endpoint)
            entry.failures += 1
            if entry.failures >= self.policy.eject_after:
                return self._eject(entry, endpoint)
            if self.policy.eject_failure_percent and self._count(entry, failed=True):
                return self._eject(entry, endpoint)
            return False

    def _count(self, entry: _Endpoint, failed: bool) -> bool:
        """Count a call in the endpoint's failure window (a failure opens one, a window
        older than :data:`FAILURE_WINDOW` starts again); whether its failures now reach
        ``eject_failure_percent``. Under the lock."""
        now = self._clock()
        if now - entry.window_start > FAILURE_WINDOW:
            entry.window_start, entry.window_calls, entry.window_failures = now, 0, 0
            if not failed:
                return False            # the window closed; a success opens none
        entry.window_calls += 1
        entry.window_failures += failed
        policy = self.policy
        return entry.window_calls >= policy.eject_min_calls and \
            entry.window_failures * 100 >= policy.eject_failure_percent * entry.window_calls

    def _eject(self, entry: _Endpoint, endpoint: Endpoint) -> bool:
        now = self._clock()
        ejected = sum(1 for e in self._state.values() if e.state != HEALTHY)
        allowed = max(1, int(len(self._all) * self.policy.max_ejected_percent / 100))
        if entry.state == HEALTHY and ejected >= allowed:
            entry.failures = 0      # over the cap: start counting again
            return False
        # A long healthy spell forgives earlier ejections (they were not a flap).
        if entry.healthy_since and \
                now - entry.healthy_since > self.policy.eject_time * _MAX_MULTIPLIER:
            entry.ejections = 0
        entry.ejections = min(entry.ejections + 1, _MAX_MULTIPLIER)
        entry.total_ejections += 1
        entry.state = EJECTED
        entry.ejected_until = now + self.policy.eject_time * entry.ejections
        entry.failures = entry.probes = 0
        entry.window_calls = entry.window_failures = 0
        self._refresh()
        counters.count(f"http_ejections:{self.resource.name}:{endpoint}")
        return True

    def set_active(self, endpoint: Endpoint, problem: str) -> None:
        """Record an active check's result: ``""`` passed, otherwise why it failed."""
        with self._lock:
            if self._state[endpoint].active_down != problem:
                self._state[endpoint].active_down = problem
                self._refresh()

    def healthy(self, endpoint: Endpoint) -> bool:
        """Whether ``endpoint`` takes calls now (not ejected, not down by an active check)."""
        with self._lock:
            entry = self._state[endpoint]
            return not entry.active_down and (
                entry.state == HEALTHY or self._clock() >= entry.ejected_until)

    def panic(self) -> bool:
        """Whether so few endpoints are healthy that health should be ignored."""
        threshold = self.policy.panic_threshold
        if threshold <= 0 or self.all_healthy:
            return False
        healthy = sum(1 for e in self._all if self.healthy(e))
        return healthy * 100 < threshold * len(self._all)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per endpoint: state, consecutive failures, ejections, seconds left ejected."""
        now = self._clock()
        with self._lock:
            return {
                str(e): {
                    "unit": e.unit,
                    "state": "down" if s.active_down else s.state,
                    "failures": s.failures,
                    "ejections": s.total_ejections,
                    "ejected_for_s": round(max(0.0, s.ejected_until - now), 3)
                    if s.state == EJECTED else 0.0,
                    **({"check": s.active_down} if s.active_down else {}),
                }
                for e, s in self._state.items()
            }
