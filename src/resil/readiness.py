"""Readiness: whether this instance should receive traffic now, and why not.

A policy, read by ``/readyz``, ``/metrics``, ``/state`` and the OTel gauge alike: the
instance is not ready while it drains after SIGTERM, while its unit is cut (weight 0),
and — with ``[admin] ready_requires_primary`` — while a database primary does not
accept TCP connections.
"""

from __future__ import annotations

import socket
import threading
import time

from . import context

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .runtime import AgentView


class _Reachability:
    """TCP reachability of primaries, cached briefly: /readyz may be asked very often."""

    TTL, TIMEOUT = 2.0, 0.5

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int], tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def problem(self, host: str, port: int) -> str | None:
        """None when ``host:port`` accepts a connection, else the error."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get((host, port))
        if cached is not None and now - cached[0] < self.TTL:
            return cached[1]
        try:
            with context.bypass(), socket.create_connection((host, port), self.TIMEOUT):
                error = None
        except OSError as exc:
            error = exc.strerror or str(exc)
        with self._lock:
            self._cache[(host, port)] = (now, error)
        return error


REACHABILITY = _Reachability()


def readiness(agent: AgentView) -> list[str]:
    """Why this instance should not get traffic now (empty: it should)."""
    reasons = []
    config = agent.config
    if agent.draining:
        reasons.append(f"draining after SIGTERM ({config.drain_period:g} s)")
    state = agent.state
    if state.weights.get(config.unit, 1.0) <= 0:
        reasons.append(f"unit {config.unit} is cut (weight 0 at epoch {state.epoch})")
    if config.ready_requires_primary:
        for name, resource in config.resources.items():
            if resource.kind == "http":
                continue
            endpoint = agent.router.primary_of(resource, state)
            error = REACHABILITY.problem(endpoint.host, endpoint.port) if endpoint else "none"
            if error:
                reasons.append(f"{name}: primary {endpoint} unreachable ({error})")
    return reasons
