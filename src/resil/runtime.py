"""The narrow face of the running agent that the lower layers may see.

Integrations, serving code, sessions and the telemetry views never see the
:class:`~resil.agent.Agent` itself: they ask :func:`resil.registry.runtime` for a
:class:`Runtime` — the applied control state, the write gate, the router's questions and
the configuration — and nothing else. The views (admin endpoint, Prometheus text, OTel
observables, scale figures) read a little more through :class:`AgentView`. Both are
Protocols, so this module imports only the core types they name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from .clock import Clock

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .config import Config
    from .gate import Gate
    from .router import Router
    from .scale import Sampler
    from .state import ControlState

__all__ = ["AgentView", "Clock", "Runtime"]


class Runtime(Protocol):
    """What integrations, serving code and sessions may ask the running agent."""

    config: Config
    state: ControlState
    """The control state applied now: an immutable snapshot, read on every statement
    (a plain attribute; reading it does not start the watch)."""
    gate: Gate
    router: Router

    def current_state(self) -> ControlState:
        """The applied control state; starts the control-plane watch on first use."""

    def refresh(self) -> None:
        """Read the control plane now and apply what it holds, if newer."""

    def wait_for_change(self, epoch: int, timeout: float) -> ControlState:
        """Block until the applied epoch differs from ``epoch`` (or ``timeout``)."""

    def wait_marked(self, resource: str, epoch: int, timeout: float) -> bool:
        """Block until this agent has told a switch where it stands on ``resource`` at
        ``epoch`` or later (its mark: what a drain waits for), or ``timeout``; whether
        it has. Background work a switch makes (a spare connection) waits for it, so
        that it does not delay the drain."""

    def unreachable(self, resource: str, endpoint: str) -> None:
        """A connect to ``endpoint`` of ``resource`` did not reach the server (refused,
        timed out): reported in the heartbeat at once, a witness for ``resil monitor``."""

    def reachable(self, resource: str, endpoint: str) -> None:
        """A connect to ``endpoint`` succeeded: withdraw what :meth:`unreachable` said.
        Only needed for a resource in :attr:`noted_unreachable`."""

    @property
    def noted_unreachable(self) -> Mapping[str, tuple[str, float, float]]:
        """Resources with an unreachable endpoint noted: resource -> (endpoint, first,
        last time). A connect that succeeded asks here before calling :meth:`reachable`
        (every connect succeeds; few need to withdraw anything)."""


class AgentView(Runtime, Protocol):
    """What the telemetry views and the readiness policy read of the running agent."""

    id: str
    """``host:pid``: names this agent's heartbeat."""

    @property
    def draining(self) -> bool:
        """Whether SIGTERM arrived and the instance is draining (not ready)."""

    @property
    def sampler(self) -> Sampler | None:
        """The utilization sampler, when this process serves the admin endpoint."""

    def in_flight(self) -> dict[str, int]:
        """Open transactions and running writes per resource, over all integrations."""

    def children(self) -> list[dict[str, Any]]:
        """The live heartbeats of the agents this process forked (its workers; empty
        when the control plane is unreachable)."""

    def fleet_load(self) -> dict[str, tuple[int, float]]:
        """Per unit, the instances of this service and the sum of their utilizations
        over the last complete window (empty when unknown)."""

    def scale_answer(self, load: dict[str, tuple[int, float]] | None = None
                     ) -> dict[str, Any]:
        """This instance's ``/scale`` document (see :func:`resil.scale.unit_answer`)."""
