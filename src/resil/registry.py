"""The one home of resil's mutable process-wide state, with :func:`reset`.

Integrations reach the running agent only through :func:`router` and report their own
faults through :func:`record_fault`; nothing else in resil keeps global state.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from contextvars import ContextVar
from typing import TYPE_CHECKING

from .telemetry.requests import RequestStats

if TYPE_CHECKING:
    from .agent import Agent
    from .router import Router

log = logging.getLogger("resil")

_agent: Agent | None = None
_requests = RequestStats()
_faults: Counter[str] = Counter()
_faults_lock = threading.Lock()
_stats: Counter[str] = Counter()
_max_hold = 0.0
_holding = 0
class _Bypass(threading.local):
    depth = 0       # a class default: reading it never raises (fast on every connect)


_bypass = _Bypass()

route_key: ContextVar[str | None] = ContextVar("resil_route_key", default=None)
"""The routing key of the request being served (set by the Flask/Django layer), carried
on outgoing calls to http resources as ``x-resil-route-key``."""


def agent() -> Agent | None:
    """The running agent, if any."""
    return _agent


def set_agent(new: Agent | None) -> None:
    """Install (or clear) the running agent. Called by :mod:`resil.agent` only."""
    global _agent
    _agent = new


def router() -> Router | None:
    """The running agent's router, or None when no agent runs (calls stay untouched)."""
    current = _agent
    return current.router if current is not None else None


def requests() -> RequestStats:
    """This process's request metrics (recorded by the Flask and Django integrations)."""
    return _requests


def record_fault(where: str, exc: BaseException) -> None:
    """Count an exception raised by resil's own code; log it the first time only.

    Called by the fail-open guard: the application's call then proceeds unpatched.
    """
    with _faults_lock:
        _faults[where] += 1
        first = _faults[where] == 1
    if first:
        log.error("resil: internal fault in %s; the call proceeds unpatched "
                  "(further faults here are counted, not logged)", where, exc_info=exc)


def faults() -> dict[str, int]:
    """Faults caught by the fail-open guard, by place."""
    with _faults_lock:
        return dict(_faults)


def count(name: str, n: int = 1) -> None:
    """Add to one of resil's own event counters (switch moves, held writes, ...)."""
    with _faults_lock:
        _stats[name] += n


def holding(delta: int = 0) -> int:
    """Writes held by the gate right now (``delta`` +1 when one starts waiting, -1 after)."""
    global _holding
    with _faults_lock:
        _holding += delta
        return _holding


def observe_hold(seconds: float) -> None:
    """Record how long a write was held by the gate."""
    global _max_hold
    with _faults_lock:
        _stats["held_ms_total"] += int(seconds * 1000)
        _max_hold = max(_max_hold, seconds)


def stats() -> dict[str, float]:
    """resil's own event counters, and the longest hold in seconds (``max_hold_s``)."""
    with _faults_lock:
        return {**_stats, "max_hold_s": _max_hold}


class bypass:
    """Context manager: connections opened inside it are not routed or tracked.

    resil's own traffic (switch steps, probes, heartbeats) uses it, so that an operator
    command run inside an instrumented process talks to exactly the server it names.
    """

    def __enter__(self) -> None:
        _bypass.depth += 1

    def __exit__(self, *exc: object) -> None:
        _bypass.depth -= 1


def bypassed() -> bool:
    """Whether the current thread is inside :class:`bypass`."""
    return _bypass.depth > 0


def reset() -> None:
    """Stop the agent and forget every fault (for tests)."""
    current = _agent
    if current is not None:
        current.stop()
    set_agent(None)
    global _max_hold, _requests
    _requests = RequestStats()
    with _faults_lock:
        _faults.clear()
        _stats.clear()
        _max_hold = 0.0
