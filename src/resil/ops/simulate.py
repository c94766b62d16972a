"""``resil scale simulate``: replay a demand curve through the scaling policies.

Each minute of the curve, in each unit:

1. instances asked for ``startup_time`` ago start serving; a unit that goes down loses
   all of its instances (and its traffic moves to the others, as the curve says);
2. the unit serves ``min(demand, ready × capacity)`` requests per second; its load, the
   sum of its instances' utilizations, is what the agents would report: demand over
   per-instance capacity, at most one per instance;
3. the minute is recorded in the history and :func:`resil.ops.scaling.recommend` — the
   very function ``resil scale`` runs — gives the desired instances;
4. the autoscaler acts as Kubernetes' does on the published figure: it asks for new
   instances at once, and removes them only when the recommendation stayed lower for
   ``scale_down_delay`` seconds (HPA's 300 s stabilisation window).

Policy variants are derived from one policy: ``reactive`` (target tracking and rules),
``+ schedule``, ``+ predictive``, ``+ predictive + reserve``. Each reports, over the
minutes after the first day (a forecast's warm-up; the same minutes for every variant):

- instance-minutes (cost; instances still starting count);
- minutes over target (unit-minutes whose demand needs more than ``target ×`` the
  ready instances' capacity);
- peak saturation (the highest demand over ready capacity);
- requests beyond capacity (demand that ready instances could not serve).
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..scalepolicy import ScalingPolicy
from .curves import Curve
from .forecast import Model, fit
from .history import Sample
from .scaling import RuleMemory, recommend

WARMUP_MINUTES = 1440
REFIT_EVERY = 60


@dataclass(frozen=True)
class Options:
    """The model of the platform the policies run on."""

    capacity: float
    """Requests per second one instance serves at 100 % utilization."""
    startup_time: float
    """Seconds from asking for an instance to its first request."""
    scale_down_delay: float = 300.0
    warmup: int = WARMUP_MINUTES


@dataclass
class Result:
    """One variant's run: the figures and the minute-by-minute supply."""

    name: str
    instance_minutes: float = 0.0
    minutes_over_target: int = 0
    peak_saturation: float = 0.0
    beyond_capacity: float = 0.0
    """Requests (not per second) that no ready instance could serve."""
    supply: dict[str, list[float]] = field(default_factory=dict)
    """Per unit, ready capacity (requests per second) each minute."""
    decided: dict[str, int] = field(default_factory=dict)
    """How many unit-minutes each policy decided."""

    def as_dict(self) -> dict[str, object]:
        """The figures (no series), for ``--json``."""
        return {"policy": self.name, "instance_minutes": round(self.instance_minutes),
                "minutes_over_target": self.minutes_over_target,
                "peak_saturation": round(self.peak_saturation, 3),
                "requests_beyond_capacity": round(self.beyond_capacity),
                "decided_by": dict(sorted(self.decided.items()))}


def variants(policy: ScalingPolicy) -> list[tuple[str, ScalingPolicy]]:
    """The policy variants compared (``+ schedule`` only when the policy has one)."""
    reactive = dataclasses.replace(policy, schedules=(), predictive=False,
                                   unit_loss_reserve=False)
    found = [("reactive", reactive)]
    if policy.schedules:
        found.append(("+ schedule", dataclasses.replace(reactive,
                                                        schedules=policy.schedules)))
    scheduled = dataclasses.replace(reactive, schedules=policy.schedules)
    found.append(("+ predictive", dataclasses.replace(scheduled, predictive=True)))
    found.append(("+ predictive + reserve", dataclasses.replace(
        scheduled, predictive=True, unit_loss_reserve=True)))
    return found


def run(curve: Curve, policy: ScalingPolicy, options: Options, name: str = "") -> Result:
    """Replay ``curve`` through ``policy`` on the platform of ``options``."""
    result = Result(name or "policy", supply={u: [] for u in curve.units})
    units = curve.units
    start_delay = max(1, math.ceil(options.startup_time / 60))
    hold = max(1, math.ceil(options.scale_down_delay / 60))
    first = {u: curve.demand[u][0] or 0.0 for u in units}
    ready = {u: _clamp(policy, u, math.ceil(first[u] / options.capacity /
                                            policy.target_utilization)) for u in units}
    pending: dict[str, deque[int]] = {u: deque() for u in units}
    recent: dict[str, deque[int]] = {u: deque(maxlen=hold) for u in units}
    history: dict[str, list[Sample]] = {u: [] for u in units}
    memory = RuleMemory()
    models: dict[str, tuple[int, Model]] = {}

    def fitter(unit: str, samples: Sequence[Sample], minute: int) -> Model:
        cached = models.get(unit)
        if cached is None or minute - cached[0] >= REFIT_EVERY:
            models[unit] = (minute, fit(samples, minute))
        return models[unit][1]

    for i in range(curve.minutes):
        minute = curve.start + i
        current: dict[str, tuple[int, float]] = {}
        for unit in units:
            demand = curve.demand[unit][i]
            if demand is None:                  # the unit is down: everything in it lost
                ready[unit] = 0
                pending[unit].clear()
                recent[unit].clear()
                result.supply[unit].append(0.0)
                continue
            while pending[unit] and pending[unit][0] <= i:
                pending[unit].popleft()
                ready[unit] += 1
            capacity = ready[unit] * options.capacity
            load = min(demand / options.capacity, float(ready[unit]))
            history[unit].append(Sample(minute, ready[unit], load))
            current[unit] = (ready[unit], load)
            result.supply[unit].append(capacity)
            if i >= options.warmup:
                result.instance_minutes += ready[unit] + len(pending[unit])
                if demand > policy.target_utilization * capacity + 1e-9:
                    result.minutes_over_target += 1
                saturation = demand / capacity if capacity else (math.inf if demand else 0)
                result.peak_saturation = max(result.peak_saturation, saturation)
                result.beyond_capacity += max(0.0, demand - capacity) * 60
        advice = recommend(policy, [u for u in units if u in current], minute * 60 + 30,
                           current, history, memory, fitter=fitter)
        for unit, found in advice.items():
            if i >= options.warmup:
                result.decided[found.decided_by.partition(":")[0]] = \
                    result.decided.get(found.decided_by.partition(":")[0], 0) + 1
            recent[unit].append(found.desired)
            # Up at once; down only to the highest figure of the stabilisation window.
            wanted = max(recent[unit])
            have = ready[unit] + len(pending[unit])
            if wanted > have:
                pending[unit].extend([i + start_delay] * (wanted - have))
            while wanted < ready[unit] + len(pending[unit]):
                if pending[unit]:
                    pending[unit].pop()
                else:
                    ready[unit] -= 1
    return result


def _clamp(policy: ScalingPolicy, unit: str, count: int) -> int:
    low, high = policy.bounds(unit)
    return min(high, max(low, count))


def compare(curve: Curve, policy: ScalingPolicy, options: Options) -> list[Result]:
    """Every variant of :func:`variants` on ``curve``."""
    return [run(curve, variant, options, name) for name, variant in variants(policy)]


def table(results: Sequence[Result]) -> list[str]:
    """The comparison, one line per variant."""
    lines = [f"{'policy':<24} {'instance-min':>12} {'min over target':>15} "
             f"{'peak saturation':>15} {'requests beyond capacity':>24}"]
    for r in results:
        peak = "inf" if math.isinf(r.peak_saturation) else f"{r.peak_saturation:.2f}"
        lines.append(f"{r.name:<24} {r.instance_minutes:>12,.0f} {r.minutes_over_target:>15,} "
                     f"{peak:>15} {r.beyond_capacity:>24,.0f}")
    return lines


def plot(curve: Curve, results: Sequence[Result], path: str, days: float = 1.0) -> None:
    """Draw demand against supply per variant, one panel per unit, over the last ``days``
    days; a unit's loss is marked. Needs matplotlib (``resil[scale]``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    span = min(curve.minutes, max(60, int(days * 1440)))
    first = curve.minutes - span
    hours = [(first + i) / 60 for i in range(span)]
    fig, axes = plt.subplots(len(curve.units), 1, figsize=(11, 2.8 * len(curve.units)),
                             sharex=True, squeeze=False)
    for ax, unit in zip(axes[:, 0], curve.units, strict=True):
        demand = [v if v is not None else float("nan") for v in curve.demand[unit][first:]]
        ax.plot(hours, demand, color="black", linewidth=1.6, label="demand")
        for result in results:
            ax.step(hours, result.supply[unit][first:], where="post", linewidth=1.0,
                    label=f"capacity: {result.name}")
        for lost, at in curve.losses():
            if at >= first:
                ax.axvline(at / 60, color="red", linestyle="--", linewidth=1)
                ax.annotate(f"{lost} lost", (at / 60, ax.get_ylim()[1] * 0.9),
                            color="red", fontsize=8)
        ax.set_ylabel(f"{unit}\nrequests/s")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel(f"hours since the start of {curve.name}")
    fig.suptitle(f"resil scale simulate: {curve.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
