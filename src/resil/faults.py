"""Chaos faults: what a fault is, and its form inside a signal.

A :class:`Fault` names the calls it applies to (a resource, optionally the unit of the
endpoint called, one endpoint, and the caller's unit) and what it does to each of them:
added latency (fixed plus a uniform jitter), a rate of calls that fail with an error of
one kind, and a rate of calls that are lost (black-holed until their own timeout).

Faults travel in the control state (:class:`resil.state.ControlState`), so they are
epoch-ordered and signed like the rest of it. Each carries an absolute expiry ``until``
(wall-clock seconds), at most :data:`MAX_TTL` after it was created: an agent ignores an
expired fault even when no one ever clears it, and rejects a signal whose fault would
outlive the limit. How a fault is applied is :mod:`resil.chaos`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from .errors import SignalError

KINDS = ("refused", "reset", "timeout", "error")
"""What an erroring call sees: connection refused, connection reset, a black hole (the
call waits for its own timeout), or an error reply (HTTP 5xx; a MySQL or Redis error)."""

MAX_TTL = 24 * 3600.0
"""The longest a fault may live (seconds): a forgotten one cannot outlive it."""
CLOCK_SLACK = 300.0
"""How far ahead of an agent's clock a fault's creation may be (seconds): clocks of
different hosts differ a little, but a fault dated far ahead would outlive its TTL."""


@dataclass(frozen=True)
class Fault:
    """One injected fault. Rates are per call, drawn from a generator seeded with
    ``seed`` (and the fault's id), so a drill can be repeated."""

    id: str
    resource: str
    until: float
    """Wall-clock time (Unix seconds) after which every agent ignores the fault."""
    created: float
    unit: str = ""
    """Only calls to this unit's endpoints ("" every unit)."""
    endpoint: str = ""
    """Only calls to this endpoint, as ``host:port`` or an http endpoint's URL ("" any)."""
    caller: str = ""
    """Only calls made by instances of this unit ("" any)."""
    latency: float = 0.0
    """Seconds added to every call it applies to."""
    jitter: float = 0.0
    """Up to this many more seconds, drawn uniformly per call."""
    error_rate: float = 0.0
    kind: str = "reset"
    loss: float = 0.0
    """The fraction of calls black-holed: they wait for their own timeout, then fail."""
    status: int = 503
    """The status of an http resource's ``error`` reply."""
    seed: int = 0
    by: str = ""
    """Who injected it (``user@host:pid``)."""

    def active(self, now: float) -> bool:
        """Whether the fault still applies at wall-clock time ``now``."""
        return now < self.until

    def describe(self) -> str:
        """One line: what it does, to which calls."""
        effects = []
        if self.latency or self.jitter:
            effects.append(f"latency {_ms(self.latency)}"
                           + (f" ±{_ms(self.jitter)}" if self.jitter else ""))
        if self.error_rate:
            effects.append(f"{self.error_rate:.0%} {self.kind}"
                           + (f" ({self.status})" if self.kind == "error" else ""))
        if self.loss:
            effects.append(f"{self.loss:.0%} lost")
        scope = self.resource
        if self.endpoint:
            scope += f" endpoint {self.endpoint}"
        if self.unit:
            scope += f" in {self.unit}"
        if self.caller:
            scope += f", called from {self.caller}"
        return f"{scope}: {', '.join(effects) or 'no effect'}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the defaults left out)."""
        out: dict[str, Any] = {"id": self.id, "resource": self.resource,
                               "until": self.until, "created": self.created}
        for name, default in _OPTIONAL.items():
            value = getattr(self, name)
            if value != default:
                out[name] = value
        return out


_OPTIONAL: dict[str, Any] = {
    "unit": "", "endpoint": "", "caller": "", "latency": 0.0, "jitter": 0.0,
    "error_rate": 0.0, "kind": "reset", "loss": 0.0, "status": 503, "seed": 0, "by": ""}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:g} ms"


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def check(fault: Fault, units: tuple[str, ...] | None = None,
          now: float | None = None) -> str | None:
    """What is wrong with ``fault`` (a sentence), or None. With ``units``, its unit and
    caller unit must be among them; with ``now`` (this host's clock), it may not expire
    later than :data:`MAX_TTL` from now (plus :data:`CLOCK_SLACK`)."""
    for name in ("latency", "jitter"):
        value = getattr(fault, name)
        if not _number(value) or value < 0 or value > 600:
            return f"{name} {value!r} is not a number of seconds from 0 to 600"
    for name in ("error_rate", "loss"):
        value = getattr(fault, name)
        if not _number(value) or not 0 <= value <= 1:
            return f"{name.replace('_', ' ')} {value!r} is not a fraction from 0 to 1"
    if fault.error_rate + fault.loss > 1 + 1e-9:
        return f"error rate {fault.error_rate:g} plus loss {fault.loss:g} is more than 1"
    if fault.kind not in KINDS:
        return f"kind {fault.kind!r} is not one of {', '.join(KINDS)}"
    if not isinstance(fault.status, int) or isinstance(fault.status, bool) \
            or not 500 <= fault.status <= 599:
        return f"status {fault.status!r} is not a 5xx status"
    if not (fault.latency or fault.jitter or fault.error_rate or fault.loss):
        return "it has no effect: give a latency, an error rate or a loss"
    if not _number(fault.until) or not _number(fault.created) or fault.until <= fault.created:
        return "it has no expiry after its creation"
    if fault.until - fault.created > MAX_TTL + 1e-6:
        return f"it lives {fault.until - fault.created:.0f} s, more than the limit of " \
            f"{MAX_TTL:.0f} s"
    if now is not None and fault.until > now + MAX_TTL + CLOCK_SLACK:
        return f"it expires {fault.until - now:.0f} s from now, more than the limit of " \
            f"{MAX_TTL:.0f} s (created {fault.created - now:+.0f} s from now)"
    if units is not None:
        for name in ("unit", "caller"):
            value = getattr(fault, name)
            if value and value not in units:
                return f"{name} {value!r} is not one of the units ({', '.join(units)})"
    return None


def decode(raw: object, resources: Any, units: tuple[str, ...],
           where: str = "") -> tuple[Fault, ...]:
    """The ``faults`` list of a signal; :class:`SignalError` naming a malformed one.
    Faults on resources that ``resources`` (a name → resource mapping) does not know
    are dropped, as primaries of unknown resources are: another agent may run a newer
    configuration."""
    if not isinstance(raw, list):
        raise SignalError(f"{where}faults must be a list")
    out = []
    seen = set()
    for i, item in enumerate(raw):
        what = f"{where}fault {i + 1}"
        if not isinstance(item, dict):
            raise SignalError(f"{what}: expected an object")
        unknown = set(item) - set(_OPTIONAL) - {"id", "resource", "until", "created"}
        if unknown:
            raise SignalError(f"{what}: unknown field {sorted(unknown)[0]!r}")
        ident, resource = item.get("id"), item.get("resource")
        if not isinstance(ident, str) or not ident or ":" in ident \
                or not isinstance(resource, str):
            raise SignalError(f"{what}: id and resource must be strings (an id without ':')")
        if ident in seen:
            raise SignalError(f"{what}: id {ident!r} is given twice")
        seen.add(ident)
        values: dict[str, Any] = {}
        for name, default in _OPTIONAL.items():
            value = item.get(name, default)
            if isinstance(default, str) and not isinstance(value, str):
                raise SignalError(f"{what} ({ident}): {name} must be a string")
            if isinstance(default, float) and isinstance(value, int) \
                    and not isinstance(value, bool):
                value = float(value)
            values[name] = value
        if not isinstance(values["seed"], int) or isinstance(values["seed"], bool):
            raise SignalError(f"{what} ({ident}): seed must be an integer")
        fault = Fault(ident, resource, item.get("until"), item.get("created"),  # type: ignore[arg-type]
                      **values)
        problem = check(fault, units, time.time())
        if problem:
            raise SignalError(f"{what} ({ident}): {problem}")
        if resource in resources:
            out.append(fault)
    return tuple(out)
