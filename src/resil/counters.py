"""resil's own counters: faults caught by the fail-open guard, events (held writes,
moved connections, replays), the write holds, and the requests this process served.

The lowest module of the core: it imports nothing of resil's but :mod:`.requeststats`,
so that every other module can count. Heartbeats carry these figures; the telemetry
views read them. :func:`resil.registry.reset` clears them (for tests).
"""

from __future__ import annotations

import threading
from collections import Counter

from . import _log
from .requeststats import RequestStats

log = _log.get("resil")

_requests = RequestStats()
_faults: Counter[str] = Counter()
_lock = threading.Lock()
_stats: Counter[str] = Counter()
_max_hold = 0.0
_holding = 0


def requests() -> RequestStats:
    """This process's request metrics (recorded by the Flask and Django integrations)."""
    return _requests


def record_fault(where: str, exc: BaseException) -> None:
    """Count an exception raised by resil's own code; log it the first time only.

    Called by the fail-open guard: the application's call then proceeds unpatched.
    """
    with _lock:
        _faults[where] += 1
        first = _faults[where] == 1
    if first:
        log.error("resil: internal fault in %s; the call proceeds unpatched "
                  "(further faults here are counted, not logged)", where, exc_info=exc)


def faults() -> dict[str, int]:
    """Faults caught by the fail-open guard, by place."""
    with _lock:
        return dict(_faults)


def count(name: str, n: int = 1) -> None:
    """Add to one of resil's own event counters (switch moves, held writes, ...)."""
    with _lock:
        _stats[name] += n


def holding(delta: int = 0) -> int:
    """Writes held by the gate right now (``delta`` +1 when one starts waiting, -1 after)."""
    global _holding
    with _lock:
        _holding += delta
        return _holding


def observe_hold(seconds: float) -> None:
    """Record how long a write was held by the gate."""
    global _max_hold
    with _lock:
        _stats["held_ms_total"] += int(seconds * 1000)
        _max_hold = max(_max_hold, seconds)


def stats() -> dict[str, float]:
    """resil's own event counters, and the longest hold in seconds (``max_hold_s``)."""
    with _lock:
        return {**_stats, "max_hold_s": _max_hold}


def reset() -> None:
    """Forget every count (for tests: :func:`resil.registry.reset`)."""
    global _max_hold, _requests, _holding
    _requests = RequestStats()
    with _lock:
        _faults.clear()
        _stats.clear()
        _max_hold = 0.0
        _holding = 0
