"""The scaling recommendation: what each policy asks of each unit, and which one decides.

For one service, in each unit, every policy that has something to say gives a number of
instances, with its reason in words:

- ``target``: target tracking, ``ceil(load / target_utilization)`` (load: the sum of the
  instances' utilizations, in busy instances);
- ``rule:NAME``: a threshold held for its duration (every minute of it recorded and on
  the rule's side) fires ``instances + step``; the figure it asked for stands until its
  cooldown ends, so a rule does not flap while the new instances start;
- ``schedule:NAME``: the window's minimum while it is open;
- ``predictive``: capacity for the highest forecast load from now until ``startup_time``
  + ``horizon`` ahead (an instance asked for now serves only after its start-up);
- ``reserve``: room to absorb ``reserve_fraction`` of the largest other unit's load
  (forecast, when predictive) within the target;
- ``hold``: a unit whose instances all stopped reporting keeps, for a while, the
  instances it had (silence is not zero load).

The highest figure wins, clamped to the unit's ``min``/``max``; ``decided_by`` names the
policy (or ``min``/``max`` when the clamp decided). :func:`recommend` is a pure function
of its inputs — the clock, the current load, the history and the rules' memory — so
``resil scale``, ``resil monitor`` and ``resil scale simulate`` run the very same code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..scalepolicy import ScalingPolicy
from .forecast import ForecastUnavailable, Model
from .history import Sample

SILENCE_HOLD = 900.0
"""Seconds a unit whose instances all went silent keeps the instances it had."""

Fitter = Callable[[str, Sequence[Sample], int], Model]
"""Fits (or returns a cached fit of) a unit's forecast: (unit, history, now minute)."""


@dataclass(frozen=True)
class Figure:
    """What one policy asks of one unit (``instances`` None: it asks nothing now)."""

    policy: str
    instances: int | None
    reason: str


@dataclass(frozen=True)
class UnitAdvice:
    """The recommendation for one unit."""

    unit: str
    desired: int
    decided_by: str
    reason: str
    instances: int
    """Instances that reported load in the last window."""
    load: float
    figures: tuple[Figure, ...]

    def as_dict(self) -> dict[str, object]:
        """JSON-able form (the ``/scale`` document, ``resil scale --json``)."""
        return {"desired": self.desired, "decided_by": self.decided_by,
                "reason": self.reason, "instances": self.instances,
                "load": round(self.load, 4),
                "policies": {f.policy: {"instances": f.instances, "reason": f.reason}
                             for f in self.figures}}


@dataclass
class RuleMemory:
    """When each rule last fired in each unit, and what it asked for (it stands until
    its cooldown ends). Kept by the scaler between evaluations (and in the published
    recommendation, so that a restarted scaler keeps honouring cooldowns)."""

    fired: dict[str, tuple[float, int]] = field(default_factory=dict)

    @staticmethod
    def key(unit: str, rule: str) -> str:
        """The memory's key of ``rule`` in ``unit``."""
        return f"{unit}/{rule}"


def recommend(policy: ScalingPolicy, units: Sequence[str], now: float,
              current: Mapping[str, tuple[int, float]],
              history: Mapping[str, Sequence[Sample]], memory: RuleMemory,
              fitter: Fitter | None = None) -> dict[str, UnitAdvice]:
    """The advice for every unit of ``units``. ``current``: per unit, (instances, load)
    over the last window; ``history``: per unit, the recorded minutes, oldest first."""
    minute = int(now // 60)
    forecast: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    if policy.predictive:
        lead = math.ceil((policy.startup_time + policy.horizon) / 60)
        for unit in units:
            try:
                model = (fitter or _fit)(unit, history.get(unit, ()), minute)
            except ForecastUnavailable as exc:
                forecast[unit], notes[unit] = None, str(exc)
                continue
            forecast[unit] = model.peak(minute, minute + lead)
            notes[unit] = model.describe()
    demand = {unit: max(current.get(unit, (0, 0.0))[1], forecast.get(unit) or 0.0)
              for unit in units}
    advice = {}
    for unit in units:
        instances, load = current.get(unit, (0, 0.0))
        figures = [_target(policy, load)]
        figures += _rules(policy, unit, instances, now, history.get(unit, ()), memory)
        figures += _schedules(policy, unit, now)
        if policy.predictive:
            figures.append(_predictive(policy, forecast.get(unit), notes.get(unit, "")))
        if policy.unit_loss_reserve:
            figures.append(_reserve(policy, unit, demand))
        if instances == 0:
            figures += _silence(policy, unit, now, history.get(unit, ()))
        advice[unit] = _decide(policy, unit, instances, load, figures)
    return advice


def _fit(unit: str, samples: Sequence[Sample], minute: int) -> Model:
    from .forecast import fit
    return fit(samples, minute)


def _needed(load: float, target: float) -> int:
    """Instances for ``load`` at ``target`` utilization (a hair of float noise forgiven)."""
    return max(0, math.ceil(load / target - 1e-9))


def _target(policy: ScalingPolicy, load: float) -> Figure:
    needed = _needed(load, policy.target_utilization)
    return Figure("target", needed, f"load {load:.2f} busy instances at target "
                  f"{policy.target_utilization:g}: {needed}")


def _rules(policy: ScalingPolicy, unit: str, instances: int, now: float,
           history: Sequence[Sample], memory: RuleMemory) -> list[Figure]:
    figures = []
    for rule in policy.rules:
        key = RuleMemory.key(unit, rule.name)
        fired_at, asked = memory.fired.get(key, (0.0, 0))
        name = f"rule:{rule.name}"
        if now - fired_at < rule.cooldown:
            figures.append(Figure(name, asked, f"fired {now - fired_at:.0f} s ago "
                                  f"({rule.describe()}); cooldown {rule.cooldown:g} s"))
            continue
        held, why = _held(rule.duration, rule.holds, history, now)
        if not held:
            figures.append(Figure(name, None, why))
            continue
        asked = max(0, instances + rule.step)
        memory.fired[key] = (now, asked)
        figures.append(Figure(name, asked, f"{rule.describe()}: {instances} "
                              f"{'+' if rule.step > 0 else '-'} {abs(rule.step)}"))
    return figures


def _held(duration: float, holds: Callable[[float], bool], history: Sequence[Sample],
          now: float) -> tuple[bool, str]:
    """Whether every complete minute of the last ``duration`` seconds is recorded and
    holds; else why not."""
    minutes = max(1, math.ceil(duration / 60))
    last = int(now // 60) - 1             # the last complete minute
    wanted = range(last - minutes + 1, last + 1)
    recorded: dict[int, Sample] = {}
    for sample in reversed(history):     # newest first: only the tail is looked at
        if sample.minute < wanted.start:
            break
        if sample.minute in wanted:
            recorded.setdefault(sample.minute, sample)
    missing = sum(1 for m in wanted if m not in recorded)
    if missing:
        return False, f"{missing} of the last {minutes} minutes not recorded"
    failing = [m for m in wanted if not holds(recorded[m].utilization)]
    if failing:
        return False, f"held for {last - failing[-1]} of {minutes} minutes"
    return True, ""


def _silence(policy: ScalingPolicy, unit: str, now: float,
             history: Sequence[Sample]) -> list[Figure]:
    """A unit none of whose instances reported, though some did within
    :data:`SILENCE_HOLD`: its agents cannot reach the control plane (or it restarted
    empty), which says nothing of its load. Keep what it had, rather than scale it in
    during an incident (not where ``min`` is 0: scaling to zero is allowed there)."""
    if policy.bounds(unit)[0] == 0:
        return []
    oldest = int((now - SILENCE_HOLD) // 60)
    had = 0
    for sample in reversed(history):
        if sample.minute < oldest:
            break
        had = max(had, sample.instances)
    if not had:
        return []
    return [Figure("hold", had, f"no instance reported in the last window, {had} did within "
                   f"{SILENCE_HOLD / 60:.0f} min: silence is not zero load, keeping them")]


def _schedules(policy: ScalingPolicy, unit: str, now: float) -> list[Figure]:
    figures = []
    for schedule in policy.schedules:
        name = f"schedule:{schedule.name}"
        if schedule.active(now):
            count = schedule.minimum_for(unit)
            figures.append(Figure(name, count, f"window open ({schedule.start.text} → "
                                  f"{schedule.end.text}, {schedule.zone_name}): min {count}"))
        else:
            figures.append(Figure(name, None, "window closed"))
    return figures


def _predictive(policy: ScalingPolicy, peak: float | None, note: str) -> Figure:
    if peak is None:
        return Figure("predictive", None, f"{note}; the reactive policies decide")
    needed = _needed(peak, policy.target_utilization)
    ahead = policy.startup_time + policy.horizon
    return Figure("predictive", needed, f"forecast peak {peak:.2f} busy instances within "
                  f"{ahead:.0f} s ({note}): {needed}")


def _reserve(policy: ScalingPolicy, unit: str, demand: Mapping[str, float]) -> Figure:
    others = {u: d for u, d in demand.items() if u != unit}
    if not others:
        return Figure("reserve", None, "a single unit: nothing to absorb")
    largest = max(others, key=lambda u: others[u])
    absorb = policy.reserve_fraction * others[largest]
    needed = _needed(demand[unit] + absorb, policy.target_utilization)
    return Figure("reserve", needed, f"own load {demand[unit]:.2f} + "
                  f"{policy.reserve_fraction:g} × {others[largest]:.2f} of {largest} "
                  f"at target {policy.target_utilization:g}: {needed}")


def _decide(policy: ScalingPolicy, unit: str, instances: int, load: float,
            figures: list[Figure]) -> UnitAdvice:
    low, high = policy.bounds(unit)
    voting = [f for f in figures if f.instances is not None]
    best = max(voting, key=lambda f: f.instances or 0) if voting else None
    wanted = best.instances if best and best.instances is not None else low
    desired = min(high, max(low, wanted))
    if best is None or desired > wanted:
        decided, reason = "min", f"min {low}" + (f" (highest policy: {best.policy} "
                                                 f"{wanted})" if best else "")
    elif desired < wanted:
        decided, reason = "max", f"max {high} (clamped: {best.policy} asked {wanted})"
    else:
        decided, reason = best.policy, best.reason
    return UnitAdvice(unit, desired, decided, reason, instances, load, tuple(figures))
