"""The one home of the running agent, with :func:`reset`.

Integrations, serving code and sessions reach the running agent only through
:func:`runtime` (a :class:`~resil.runtime.Runtime`: the control state, the gate, the
router and the configuration, never the agent itself). Counters live one floor lower, in
:mod:`resil.counters`, and the per-thread context in :mod:`resil.context`, so that every
module can count without knowing the runtime; :func:`reset` clears them all.
"""

from __future__ import annotations

from collections.abc import Callable

from . import counters
from .context import bypass, bypassed, route_key
from .counters import faults, stats

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .router import Router
    from .runtime import Runtime

__all__ = ["agent", "bypass", "bypassed", "faults", "reset", "route_key", "router", "runtime",
           "set_runtime", "stats"]
"""``bypass``, ``bypassed``, ``route_key``, ``faults``, ``stats`` and :func:`agent` stay
importable from here, where the docs of earlier versions named them."""

_runtime: Runtime | None = None
_stop: Callable[[], None] | None = None


def runtime() -> Runtime | None:
    """The running agent's runtime face, or None when no agent runs."""
    return _runtime


def agent() -> Runtime | None:
    """The running agent, if any (the name earlier versions documented; see
    :func:`runtime`)."""
    return _runtime


def set_runtime(new: Runtime | None, stop: Callable[[], None] | None = None) -> None:
    """Install (or clear) the running agent and how to stop it (for :func:`reset`).
    Called by :mod:`resil.agent` only."""
    global _runtime, _stop
    _runtime, _stop = new, stop


def router() -> Router | None:
    """The running agent's router, or None when no agent runs (calls stay untouched)."""
    current = _runtime
    return current.router if current is not None else None


def reset() -> None:
    """Stop the agent and forget every count (for tests)."""
    stop = _stop
    set_runtime(None)
    if stop is not None:
        stop()
    counters.reset()
