"""The one home of resil's mutable process-wide state, with :func:`reset`.

Integrations reach the running agent only through :func:`router` and report their own
faults through :func:`record_fault`; nothing else in resil keeps global state.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .agent import Agent
    from .router import Router

log = logging.getLogger("resil")

_agent: Agent | None = None
_faults: Counter[str] = Counter()
_faults_lock = threading.Lock()


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


def reset() -> None:
    """Stop the agent and forget every fault (for tests)."""
    current = _agent
    if current is not None:
        current.stop()
    set_agent(None)
    with _faults_lock:
        _faults.clear()
