"""The span sink the core writes to: holds, moves, retries and switch steps.

It sits low so that the gate, the switching logic and the operator commands can record
spans without knowing OpenTelemetry. Until the SDK is loaded (:mod:`resil.telemetry.otel`
then calls :func:`set_tracer`), :func:`span` is a no-op: a process without the SDK pays
one attribute read per span.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from . import counters

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_tracer: Any = None
_common: dict[str, Any] = {}


def set_tracer(tracer: Any, common: Mapping[str, Any] | None = None) -> None:
    """Send spans to ``tracer`` (an OpenTelemetry ``Tracer``), or nowhere with None;
    every span carries the ``common`` attributes (the agent's unit)."""
    global _tracer, _common
    _tracer, _common = tracer, dict(common or {})


def tracing() -> bool:
    """Whether spans are recorded (an OpenTelemetry SDK is loaded)."""
    return _tracer is not None


def span(name: str, started_ns: int, ended_ns: int, attributes: Mapping[str, Any]) -> None:
    """Record a finished span (no-op until a tracer is set)."""
    tracer = _tracer
    if tracer is None:
        return
    attrs = {**_common, **attributes}
    try:
        item = tracer.start_span(name, start_time=started_ns, attributes=attrs)
        item.end(end_time=ended_ns)
    except Exception as exc:  # telemetry must never break what it observes
        counters.record_fault("otel span", exc)


def now_ns() -> int:
    """Wall-clock nanoseconds, as OpenTelemetry timestamps are."""
    return time.time_ns()
