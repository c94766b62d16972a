"""The scaler: records the fleet's load history and publishes the recommendation.

Every ``[scaling] interval`` seconds the scaler that holds the ``scale`` lease (one per
control plane, whether it runs as ``resil scale --watch`` or inside ``resil monitor``):

1. reads the load of every service and unit over the last window (one read:
   :meth:`~resil.control.base.ControlPlane.fleet_loads`) and writes it into the
   current minute of each series of the history (:mod:`resil.ops.history`);
2. computes each service's advice per unit (:func:`resil.ops.scaling.recommend`) from
   that load, the history and its rules' memory;
3. publishes it as the ``scale`` document (signed like signals when a key is
   configured), which every agent's ``/scale`` and ``/metrics`` serve.

The rules' memory (when each fired, what it asked for) travels in the document, so a
scaler that restarts, or another that takes the lease over, keeps honouring cooldowns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from .. import scale
from ..clock import Clock
from ..config import Config
from ..control import ControlPlane
from ..errors import ControlPlaneError
from ..state import issuer
from . import history
from .forecast import Model
from .scaling import RuleMemory, UnitAdvice, recommend

log = logging.getLogger("resil.scale")

LEASE = "scale"
REFIT_EVERY = 60
"""Minutes between refits of a unit's forecast (the profile moves slowly)."""


@dataclass
class Recommendation:
    """One evaluation: per service, per unit, the advice; and what went wrong."""

    generated_at: float
    advice: dict[str, dict[str, UnitAdvice]]
    warnings: list[str] = field(default_factory=list)

    def body(self, memory: Mapping[str, RuleMemory], interval: float) -> dict[str, Any]:
        """The published document (before signing)."""
        return {"version": 1, "generated_at": self.generated_at, "by": issuer(),
                "interval": interval, "warnings": self.warnings,
                "services": {s: {"units": {u: a.as_dict() for u, a in units.items()}}
                             for s, units in self.advice.items()},
                "memory": {s: {k: list(v) for k, v in m.fired.items()}
                           for s, m in memory.items() if m.fired}}


class Scaler:
    """Computes, records and publishes recommendations for every service."""

    def __init__(self, config: Config, plane: ControlPlane, clock: Clock = time.time,
                 out: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.plane = plane
        self.clock = clock
        self.out = out or (lambda line: None)
        self.holder = issuer()
        self.memory: dict[str, RuleMemory] = {}
        self._models: dict[tuple[str, str], tuple[int, Model]] = {}
        self._restored = False
        self._refused: set[str] = set()
        self._history: dict[str, list[history.Sample]] = {}
        """Series name → its samples, kept by the acting scaler (see :meth:`_samples`)."""

    # ------------------------------------------------------------------ one step

    def evaluate(self, record: bool = False) -> Recommendation:
        """Read the load (recording it when ``record``) and compute every service's
        advice. Raises :class:`ControlPlaneError` when the control plane cannot be read."""
        now = self.clock()
        minute = int(now // 60)
        loads = self.plane.fleet_loads()
        if not self._restored:
            self._restore()
        warnings: list[str] = []
        if record:
            warnings += self.record(loads, minute)
        scaling = self.config.scaling
        services = sorted(set(loads) | set(scaling.services) | {self.config.service}
                          | {n.partition("@")[0] for n in self._series()})
        units = self.config.topology.units
        advice = {}
        for service in services:
            policy = scaling.policy(service)
            samples = {u: self._samples(history.series_name(service, u), minute, record)
                       for u in units}
            memory = self.memory.setdefault(service, RuleMemory())
            advice[service] = recommend(policy, units, now, loads.get(service, {}), samples,
                                        memory, fitter=partial(self._model, service))
        return Recommendation(now, advice, warnings)

    def step(self) -> Recommendation | None:
        """One round as the acting scaler: take (or renew) the lease, record, compute
        and publish. None when another scaler holds the lease."""
        interval = self.config.scaling.interval
        if not self.plane.lease(LEASE, self.holder, max(3 * interval, 10.0)):
            self._history.clear()       # another scaler records now: read it afresh
            return None
        found = self.evaluate(record=True)
        raw = scale.encode_recommendation(found.body(self.memory, interval),
                                          self.config.signing_key)
        self.plane.put_document(scale.DOCUMENT, raw)
        return found

    def run(self, stop: threading.Event) -> None:
        """Step every interval until ``stop`` is set; print each change of a unit's
        desired instances, and of the scaler's own role. A failure (the control plane
        unreachable, or a fault of the scaler itself) is reported and retried next
        round: it never ends the process that hosts the scaler (``resil monitor``)."""
        last: dict[tuple[str, str], int] = {}
        role = ""

        def out(line: str) -> None:
            self.out(f"{time.strftime('%H:%M:%S')} scale: {line}")
        try:
            while not stop.is_set():
                found = None
                try:
                    found = self.step()
                    now = "acting scaler" if found else \
                        "another scaler holds the lease; standing by"
                except ControlPlaneError as exc:
                    now = f"control plane unreachable: {exc}"
                except Exception as exc:  # a fault of the scaler: said, never fatal
                    log.exception("resil scale: evaluation failed")
                    now = f"evaluation failed: {type(exc).__name__}: {exc}"
                if now != role:
                    role = now
                    out(now)
                for line in (found.warnings if found else []):
                    out(line)
                for service, units in (found.advice if found else {}).items():
                    for unit, advice in units.items():
                        if last.get((service, unit)) != advice.desired:
                            last[(service, unit)] = advice.desired
                            out(f"{service} {unit}: {advice.desired} instances "
                                f"({advice.decided_by}: {advice.reason})")
                stop.wait(self.config.scaling.interval)
        finally:
            try:
                self.plane.release(LEASE, self.holder)
            except ControlPlaneError:
                pass

    # ------------------------------------------------------------------ parts

    def _series(self) -> list[str]:
        try:
            return self.plane.history_series()
        except ControlPlaneError:
            return []

    def record(self, loads: Mapping[str, Mapping[str, tuple[int, float]]],
               minute: int) -> list[str]:
        """Write this minute's load of every (service, unit) that reported; a series
        beyond the cap is not created (said once per series)."""
        scaling = self.config.scaling
        existing = set(self._series())
        size = history.ring_bytes(scaling.history_days)
        warnings = []
        for service, units in sorted(loads.items()):
            for unit, (count, load) in sorted(units.items()):
                name = history.series_name(service, unit)
                if name not in existing and len(existing) >= scaling.history_series:
                    if name not in self._refused:
                        self._refused.add(name)
                        warnings.append(f"history of {name} not recorded: "
                                        f"history_series = {scaling.history_series} "
                                        "series exist (the cap)")
                    continue
                existing.add(name)
                offset, data = history.record(minute, count, load, scaling.history_days)
                self.plane.history_write(name, offset, data, size)
                kept = self._history.get(name)
                if kept is not None:
                    if kept and kept[-1].minute == minute:
                        kept.pop()
                    kept.append(history.Sample(minute, count, load))
        return warnings

    def _samples(self, name: str, minute: int, cached: bool) -> list[history.Sample]:
        """A series' samples within the ring's span. The acting scaler reads each series
        once and then keeps it up to date itself (it writes every record), rather than
        reading every series, up to 242 KB each, every interval."""
        days = self.config.scaling.history_days
        if not cached:
            return history.decode(self.plane.history_read(name), days, minute)
        kept = self._history.get(name)
        if kept is None:
            kept = self._history[name] = history.decode(self.plane.history_read(name),
                                                        days, minute)
        oldest = minute - days * history.MINUTES_A_DAY
        drop = 0
        while drop < len(kept) and kept[drop].minute <= oldest:
            drop += 1
        del kept[:drop]
        return kept

    def _model(self, service: str, unit: str, samples: Sequence[history.Sample],
               minute: int) -> Model:
        """The unit's forecast, refitted every :data:`REFIT_EVERY` minutes."""
        from .forecast import fit
        cached = self._models.get((service, unit))
        if cached is not None and minute - cached[0] < REFIT_EVERY:
            return cached[1]
        model = fit(samples, minute)
        self._models[(service, unit)] = (minute, model)
        return model

    def _restore(self) -> None:
        """The rules' memory from the last published recommendation, if it is readable."""
        self._restored = True
        try:
            raw = self.plane.get_document(scale.DOCUMENT)
            if raw is None:
                return
            keys = [k for k in (self.config.signing_key,
                                *self.config.previous_signing_keys) if k]
            document = scale.decode_recommendation(raw, keys)
        except (ControlPlaneError, scale.RecommendationError) as exc:
            log.warning("resil scale: the last recommendation is not used: %s", exc)
            return
        for service, fired in dict(document.get("memory") or {}).items():
            memory = self.memory.setdefault(str(service), RuleMemory())
            for key, value in dict(fired).items():
                try:
                    memory.fired[str(key)] = (float(value[0]), int(value[1]))
                except (TypeError, ValueError, IndexError):
                    continue
