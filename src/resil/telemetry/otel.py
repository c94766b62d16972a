"""OpenTelemetry: resil's metrics as instruments, and spans for holds, moves and switches.

Nothing here is imported at start-up. When a process loads the OpenTelemetry *SDK*
(``opentelemetry.sdk.metrics`` or ``opentelemetry.sdk.trace`` — the application's own
set-up, or ``opentelemetry-instrument``), a post-import hook calls :func:`install`, which
registers observable instruments on the global meter (through ``opentelemetry-api``, so
they bind to whatever provider the application sets, before or after) and a tracer.
A process without the SDK pays nothing: the API alone would record nothing anyway.

Spans carry ``resil.unit``, ``resil.resource``, ``resil.epoch`` and, per kind,
``resil.held_ms``, ``resil.endpoint.unit`` or ``resil.step``.
"""

from __future__ import annotations

from collections.abc import Iterable

from .. import counters, hooks, spans

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..runtime import AgentView

_installed = False
_view: AgentView | None = None
"""The agent whose figures the observable instruments report."""


def install_when_sdk_loads(view: AgentView) -> None:
    """Report ``view``'s figures, and run :func:`install` when (or if already) the
    OpenTelemetry SDK is imported."""
    global _view
    _view = view
    for module in ("opentelemetry.sdk.metrics", "opentelemetry.sdk.trace"):
        hooks.register(module, _on_sdk)


def _on_sdk(module: Any) -> None:
    try:
        install()
    except Exception as exc:  # an unexpected OpenTelemetry version: resil goes on
        counters.record_fault("otel install", exc)


def install() -> None:
    """Create resil's instruments and tracer (idempotent; called by the import hook)."""
    global _installed
    if _installed:
        return
    from opentelemetry import metrics, trace

    from .._version import __version__
    view = _view
    spans.set_tracer(trace.get_tracer("resil", __version__),
                     {"resil.unit": view.config.unit} if view is not None else {})
    meter = metrics.get_meter("resil", __version__)
    meter.create_observable_gauge("resil.applied_epoch", callbacks=[_epoch],
                                  description="Epoch of the control state applied")
    meter.create_observable_gauge("resil.ready", callbacks=[_ready],
                                  description="1 when this instance should get traffic")
    meter.create_observable_gauge("resil.in_flight", callbacks=[_in_flight],
                                  description="Open transactions and running statements")
    meter.create_observable_counter("resil.events", callbacks=[_events],
                                    description="Held writes, moved connections, replays")
    meter.create_observable_counter("resil.hold.duration", callbacks=[_held], unit="s",
                                    description="Time writes spent held by the gate")
    meter.create_observable_counter("resil.faults", callbacks=[_faults],
                                    description="Faults caught by the fail-open guard")
    from .metrics import LABELED
    for name, help_text, labels in LABELED:
        meter.create_observable_counter(f"resil.{name.replace('_', '.', 1)}",
                                        callbacks=[_labeled(name, labels)],
                                        description=help_text)
    _installed = True


def detach(view: AgentView) -> None:
    """Stop reporting ``view``'s figures (the agent stops)."""
    global _view
    if _view is view:
        _view = None


def installed() -> bool:
    """Whether the SDK is loaded and resil's instruments are registered."""
    return _installed


def _observations(values: Iterable[tuple[float, dict[str, str]]]) -> list[Any]:
    from opentelemetry.metrics import Observation
    return [Observation(value, attributes) for value, attributes in values]


def _agent_unit() -> tuple[AgentView | None, dict[str, str]]:
    agent = _view
    return agent, ({"resil.unit": agent.config.unit} if agent is not None else {})


def _epoch(options: Any) -> list[Any]:
    agent, unit = _agent_unit()
    return _observations([(agent.state.epoch, unit)] if agent is not None else [])


def _ready(options: Any) -> list[Any]:
    from ..readiness import readiness
    agent, unit = _agent_unit()
    return _observations([(0 if readiness(agent) else 1, unit)] if agent is not None else [])


def _in_flight(options: Any) -> list[Any]:
    agent, unit = _agent_unit()
    if agent is None:
        return []
    return _observations((n, {**unit, "resil.resource": r}) for r, n in agent.in_flight().items())


def _events(options: Any) -> list[Any]:
    _, unit = _agent_unit()
    stats = counters.stats()
    return _observations((n, {**unit, "resil.event": e}) for e, n in stats.items()
                         if e not in ("max_hold_s", "held_ms_total") and ":" not in e)


def _labeled(name: str, labels: tuple[str, ...]) -> Any:
    """The callback of a labeled counter kept as ``name:label:...`` events."""
    def observe(options: Any) -> list[Any]:
        _, unit = _agent_unit()
        found = []
        for key, count in counters.stats().items():
            if key.startswith(name + ":"):
                values = key.split(":", len(labels))[1:]
                found.append((count, {**unit, **{f"resil.{label.replace('_', '.')}": value
                                                 for label, value
                                                 in zip(labels, values, strict=True)}}))
        return _observations(found)
    return observe


def _held(options: Any) -> list[Any]:
    _, unit = _agent_unit()
    return _observations([(counters.stats().get("held_ms_total", 0) / 1000, unit)])


def _faults(options: Any) -> list[Any]:
    _, unit = _agent_unit()
    return _observations((n, {**unit, "resil.where": w}) for w, n in counters.faults().items())
