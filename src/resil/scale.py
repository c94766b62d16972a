"""Scale signals: utilization, saturation and ``desired_instances`` for autoscalers.

- **utilization**: the busy fraction of the instance's capacity over the last
  ``window`` seconds — request-seconds served (by the process and its workers) divided by
  elapsed seconds times capacity. Capacity is ``[admin] capacity`` (concurrent requests
  the instance can serve), or, when 0, the number of worker processes that report
  requests (gunicorn's sync workers serve one each), at least 1.
- **saturation**: work waiting — requests in flight beyond capacity, plus writes held
  by the gate right now.
- **desired_instances**: what Kubernetes' horizontal autoscaler would compute from a
  target utilization: ``ceil(instances × mean utilization / target)``, unchanged while
  the ratio is within the tolerance band (0.1). Instances and their utilization are
  the service's sums over the last complete window in the control plane (every
  heartbeat adds to them; see :meth:`resil.control.base.ControlPlane.fleet_load`), so
  each instance answers with the same fleet-wide number, and reading it costs the same
  at 10 instances as at 5,000.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .scalepolicy import ScalingPolicy

TOLERANCE = 0.1


class Sampler:
    """Request-seconds over a sliding window."""

    def __init__(self, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque()

    def utilization(self, busy_total: float, capacity: float) -> float:
        """Busy fraction since the oldest sample in the window (recording one now)."""
        now = self._clock()
        self._samples.append((now, busy_total))
        # Drop what fell out of the window, keeping a reference sample to measure from.
        while len(self._samples) > 2 and self._samples[0][0] < now - self.window:
            self._samples.popleft()
        then, busy_then = self._samples[0]
        elapsed = now - then
        if elapsed <= 0 or capacity <= 0:
            return 0.0
        return max(0.0, (busy_total - busy_then) / (elapsed * capacity))


def desired_instances(instances: int, utilization_sum: float, target: float,
                      tolerance: float = TOLERANCE) -> int:
    """The HPA rule over ``instances`` whose utilizations add up to ``utilization_sum``."""
    if instances <= 0 or target <= 0:
        return max(instances, 1)
    ratio = (utilization_sum / instances) / target
    if abs(ratio - 1.0) <= tolerance:
        return instances
    return max(1, math.ceil(instances * ratio))


# --------------------------------------------------------------------------- recommendation

DOCUMENT = "scale"
"""The control plane's document that holds the last recommendation of ``resil scale``."""
STALE_AFTER = 60.0
"""A recommendation is stale after three scaler intervals, and never before this."""


class RecommendationError(ValueError):
    """A stored recommendation that cannot be used; the message says why."""


def _digest(body: Mapping[str, Any], key: bytes) -> str:
    import hashlib
    import hmac
    payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def encode_recommendation(body: Mapping[str, Any], key: bytes | None) -> bytes:
    """The stored bytes of a recommendation: its JSON, signed (HMAC-SHA256 of the
    canonical JSON) when the control plane has a signing key."""
    document = dict(body)
    if key:
        document["signature"] = _digest(body, key)
    return json.dumps(document, sort_keys=True).encode()


def decode_recommendation(raw: bytes, keys: Sequence[bytes]) -> dict[str, Any]:
    """A stored recommendation, checked: JSON of the expected shape and, when ``keys``
    are given (the current key first), signed by one of them — an unsigned or forged
    recommendation could scale a service to nothing."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RecommendationError("not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
        raise RecommendationError("not a recommendation (no services)")
    signature = document.pop("signature", None)
    if keys:
        import hmac
        if not isinstance(signature, str):
            raise RecommendationError("unsigned, and signals must be signed")
        if not any(hmac.compare_digest(signature, _digest(document, k)) for k in keys):
            raise RecommendationError("bad signature (forged, or signed with another key)")
    try:
        float(document["generated_at"])
    except (KeyError, TypeError, ValueError):
        raise RecommendationError("no generated_at time") from None
    return dict(document)


def stale_after(document: Mapping[str, Any]) -> float:
    """Seconds after which ``document`` is stale."""
    try:
        return max(STALE_AFTER, 3 * float(document.get("interval", 0)))
    except (TypeError, ValueError):
        return STALE_AFTER


def clamped_target(policy: ScalingPolicy, unit: str, load: float, now: float) -> tuple[int, str]:
    """What an agent answers when no fresh recommendation exists: target tracking on the
    unit's current load, raised by any open schedule window, clamped to min/max."""
    desired = max(0, math.ceil(load / policy.target_utilization - 1e-9))
    why = f"target tracking on the current load {load:.2f}"
    for schedule in policy.schedules:
        if schedule.minimum_for(unit) > desired and schedule.active(now):
            desired, why = schedule.minimum_for(unit), f"schedule {schedule.name}"
    low, high = policy.bounds(unit)
    return min(high, max(low, desired)), why


def unit_answer(document: Mapping[str, Any] | None, problem: str, policy: ScalingPolicy,
                service: str, unit: str, load: Mapping[str, tuple[int, float]],
                now: float) -> dict[str, Any]:
    """The ``/scale`` document of one instance: its service's and unit's desired
    instances (top-level ``desired``, KEDA's ``valueLocation``), from the fresh
    recommendation ``document`` or, without one, from :func:`clamped_target`, saying
    which (``source``) and why."""
    units: dict[str, Any] = {}
    entry = None
    if document is not None:
        age = now - float(document["generated_at"])
        found = document["services"].get(service)
        if age > stale_after(document):
            problem = f"the last recommendation is {age:.0f} s old (resil scale stopped?)"
        elif age < -STALE_AFTER:   # it would stay "fresh" for as long as the skew lasts
            problem = f"the last recommendation is dated {-age:.0f} s ahead of this " \
                      "machine's clock (clocks apart, or a document written by hand)"
        elif not isinstance(found, dict) or not isinstance(found.get("units"), dict):
            problem = f"the recommendation has no service {service!r}"
        else:
            units = {str(u): v for u, v in found["units"].items() if isinstance(v, dict)}
            entry = units.get(unit)
            if entry is None:
                problem = f"the recommendation has no unit {unit!r}"
    if entry is not None and document is not None:
        answer = {"source": "resil scale", "age_seconds": round(now - float(
            document["generated_at"]), 1), "desired": int(entry.get("desired", 0)),
                  "decided_by": entry.get("decided_by"), "reason": entry.get("reason")}
    else:
        # Only units whose load was read get a figure: silence (a control plane that
        # cannot be read, or restarted empty) is not zero load, and a number made of it
        # would scale the service in during an incident. Without one, ``desired`` is
        # None and the endpoint answers 503, so that KEDA keeps the replicas it has.
        units = {}
        for name in sorted(u for u, (count, _) in load.items() if count > 0):
            desired, why = clamped_target(policy, name, load[name][1], now)
            units[name] = {"desired": desired, "decided_by": "fallback", "reason": why}
        problem = problem or "no recommendation yet"
        mine = units.get(unit)
        if mine is None:
            problem += f"; no load reported for unit {unit}: no figure (an autoscaler " \
                       "keeps what it has)"
        answer = {"source": "fallback", "problem": problem,
                  "desired": mine["desired"] if mine else None, "decided_by": "fallback",
                  "reason": mine["reason"] if mine else None}
    return {"service": service, "unit": unit, **answer, "units": units}
