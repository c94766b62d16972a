"""``resil drill degrade`` and ``resil drill site``: drills built from chaos faults.

Both watch what callers in every unit see. A *caller* is a process of one unit
(:mod:`resil.ops.caller`) that calls the http resources through the agent, as that
unit's applications do, and reports every call. The drill slices the calls by step and
reports, per step and caller unit: calls, failed calls, the error rate, latency (p50,
p99) and how many calls met the fault.

- **degrade**: a fault (default: 50 % of calls lost) on one unit's endpoints of one http
  resource, for a while, then cleared. It also reports how long each caller unit kept
  meeting the fault before routing avoided it.
- **site**: one unit lost. Its http endpoints are faulted (refused), its traffic is cut,
  and every database whose primary is there is switched to another unit, each with the
  probe of ``resil drill switch`` (RTO, RPO, client errors). The faults are cleared at
  the end; the cut and the switches stay, and the drill says how to undo them.

Every fault a drill publishes carries an expiry a little past the drill's own end: a
drill that is killed leaves nothing that outlives it for long.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import Config
from ..control import ControlPlane, open_configured
from ..errors import ControlPlaneError, SignalError
from ..faults import Fault, check
from ..state import ControlState, issuer
from .probe import DrillError, DrillInputError

FAULT_MARGIN = 60.0
"""A drill's fault expires this long after the drill should have cleared it."""
CALLERS_READY = 20.0
"""Longest wait for every caller to make its first call."""


@dataclass(frozen=True)
class FaultSpec:
    """What the injected fault does (``resil chaos inject``'s flags)."""

    latency: float = 0.0
    jitter: float = 0.0
    error_rate: float = 0.0
    kind: str = "reset"
    loss: float = 0.0
    status: int = 503


# --------------------------------------------------------------------------- callers

class Callers:
    """One caller process per unit; their calls, collected as they come."""

    def __init__(self, config: Config, units: tuple[str, ...], resources: list[str],
                 path: str = "/", timeout: float = 1.0) -> None:
        if config.path is None:
            raise DrillInputError("a chaos drill needs a configuration file for its callers")
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._procs: list[tuple[str, subprocess.Popen[str]]] = []
        self._readers: list[threading.Thread] = []
        self._config = str(config.path)
        self._units = units
        self._resources = resources
        self._path = path
        self._timeout = timeout

    def start(self) -> None:
        """Start every caller and wait until each made a call."""
        env = dict(os.environ)      # the caller sets its own unit, and no admin port
        for unit in self._units:
            command = [sys.executable, "-m", "resil.ops.caller", "--config", self._config,
                       "--unit", unit, "--path", self._path, "--timeout", str(self._timeout)]
            for resource in self._resources:
                command += ["--resource", resource]
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True, env=env)
            self._procs.append((unit, proc))
            reader = threading.Thread(target=self._read, args=(unit, proc), daemon=True)
            reader.start()
            self._readers.append(reader)
        deadline = time.monotonic() + CALLERS_READY
        while {c["unit"] for c in self.snapshot()} != set(self._units):
            if time.monotonic() > deadline or any(p.poll() is not None for _, p in self._procs):
                self.stop()
                raise DrillError("the callers did not start (python -m resil.ops.caller)")
            time.sleep(0.05)

    def _read(self, unit: str, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                call = json.loads(line)
            except ValueError:
                continue
            call["unit"] = unit
            with self._lock:
                self.calls.append(call)

    def snapshot(self) -> list[dict[str, Any]]:
        """The calls so far."""
        with self._lock:
            return list(self.calls)

    def stop(self) -> None:
        """End every caller (its standard input closes) and collect its last calls."""
        for _, proc in self._procs:
            try:
                assert proc.stdin is not None
                proc.stdin.close()
            except OSError:
                pass
        for _, proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for reader in self._readers:
            reader.join(timeout=5)


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def window(calls: list[dict[str, Any]], start: float, end: float,
           units: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Per caller unit, the calls that started in ``[start, end)``: counts, error rate,
    latency and where their attempts went."""
    out: dict[str, dict[str, Any]] = {}
    for unit in units:
        mine = [c for c in calls if c["unit"] == unit and start <= c["t"] < end]
        failed = [c for c in mine if not c["ok"]]
        went: dict[str, int] = {}
        for call in mine:
            for target in call["units"]:
                went[target] = went.get(target, 0) + 1
        latencies = [c["ms"] for c in mine]
        p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
        out[unit] = {
            "calls": len(mine), "failed": len(failed),
            "error_rate": round(len(failed) / len(mine), 4) if mine else None,
            "p50_ms": None if p50 is None else round(p50, 1),
            "p99_ms": None if p99 is None else round(p99, 1),
            "faulted": sum(c["faulted"] for c in mine), "attempts_to": went,
            "errors": sorted({c["error"] for c in failed if c["error"]}),
        }
    return out


def _line(unit: str, figures: dict[str, Any]) -> str:
    rate = "n/a" if figures["error_rate"] is None else f"{figures['error_rate']:.1%}"
    went = ", ".join(f"{u} {n}" for u, n in sorted(figures["attempts_to"].items())) or "-"
    return (f"  from {unit:<10} {figures['calls']:>5} calls, {figures['failed']:>4} failed "
            f"({rate}), p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, "
            f"{figures['faulted']} met the fault; attempts to {went}")


# --------------------------------------------------------------------------- the drills

@dataclass
class ChaosDrill:
    """A drill of faults, traffic and switches, watched by callers in every unit."""

    config: Config
    out: Callable[[str], None] = print
    path: str = "/"
    call_timeout: float = 1.0
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    _plane: ControlPlane | None = field(default=None, init=False, repr=False)

    # ------------------------------------------------------------ degrade

    def degrade(self, resource_name: str, unit: str, spec: FaultSpec,
                duration: float) -> dict[str, Any]:
        """Baseline, the fault on ``unit``'s endpoints of ``resource_name``, then cleared:
        a third of ``duration`` each."""
        topology = self.config.topology
        resource = topology.resources.get(resource_name)
        if resource is None or resource.kind != "http":
            https = [n for n, r in topology.resources.items() if r.kind == "http"]
            raise DrillInputError(f"{resource_name!r} is not an http resource (http "
                                  f"resources: {', '.join(https) or 'none'})")
        if unit not in resource.endpoints:
            raise DrillInputError(f"{resource_name} has no endpoint in unit {unit!r} "
                                  f"(units: {', '.join(resource.endpoints)})")
        third = max(duration / 3, 1.0)
        fault = self._fault(resource_name, unit, spec, 2 * third)
        self.out(f"drill     degrade {resource_name} in {unit}: {fault.describe()}; "
                 f"callers in {', '.join(topology.units)}; run {self.run_id}")
        callers = Callers(self.config, topology.units, [resource_name], self.path,
                          self.call_timeout)
        callers.start()
        marks: dict[str, float] = {}
        try:
            marks["baseline"] = time.time()
            time.sleep(third)
            marks["fault"] = time.time()
            epoch = self._publish(lambda s: s.evolve(faults=(*_live(s), fault)))
            self.out(f"fault     injected {fault.id} at epoch {epoch}")
            time.sleep(third)
            marks["cleared"] = time.time()
            epoch = self._publish(lambda s: s.evolve(
                faults=tuple(f for f in _live(s) if f.id != fault.id)))
            self.out(f"clear     fault {fault.id} cleared at epoch {epoch}")
            time.sleep(third)
            marks["end"] = time.time()
        finally:
            callers.stop()
            self._clear_own((fault.id,))
        calls = callers.snapshot()
        steps = [self._step(name, marks[name], marks[following], calls)
                 for name, following in (("baseline", "fault"), ("fault", "cleared"),
                                         ("cleared", "end"))]
        avoided = {u: _avoided(calls, u, marks["fault"], marks["cleared"])
                   for u in topology.units}
        for caller_unit, seconds in avoided.items():
            what = "never met it" if seconds == 0.0 else \
                "still meeting it when it was cleared" if seconds is None else \
                f"after {seconds:.2f} s"
            self.out(f"avoided   callers in {caller_unit}: {what}")
        report: dict[str, Any] = {"drill": "degrade", "resource": resource_name, "unit": unit,
                  "run": self.run_id, "fault": fault.to_dict(), "steps": steps,
                  "avoided_after_s": avoided,
                  "failed_calls": {u: steps[1]["callers"][u]["failed"]
                                   for u in topology.units}}
        failed = sum(report["failed_calls"].values())
        self.out(f"result    during the fault: {failed} failed call(s) over all units; "
                 + "; ".join(f"{u}: {steps[1]['callers'][u]['error_rate']!s} error rate, "
                             f"p99 {steps[1]['callers'][u]['p99_ms']} ms"
                             for u in topology.units))
        return report

    # ------------------------------------------------------------ site

    def site_plan(self, unit: str) -> tuple[list[str], dict[str, str]]:
        """The http resources with endpoints in ``unit``, and per database whose primary
        is there, the unit it moves to; raises when the drill cannot run."""
        topology = self.config.topology
        if unit not in topology.units:
            raise DrillInputError(f"unknown unit {unit!r} (units: {', '.join(topology.units)})")
        state = self._state()
        others = [u for u in topology.units if u != unit and state.weights.get(u, 1.0) > 0]
        if not others:
            raise DrillInputError(f"no other unit has traffic: losing {unit} would be a "
                                  "total outage")
        https = [n for n, r in topology.resources.items()
                 if r.kind == "http" and unit in r.endpoints]
        moves: dict[str, str] = {}
        for name, resource in topology.resources.items():
            if resource.kind == "http" or state.primary_unit(resource) != unit:
                continue
            target = next((u for u in others if u in resource.endpoints), None)
            if target is None:
                raise DrillInputError(f"{name} has its primary in {unit} and no endpoint "
                                      "in a unit with traffic to switch to")
            moves[name] = target
        if name_locked := [n for n in moves if n in state.locks]:
            raise DrillError(f"{', '.join(name_locked)} locked: a switch or failover is "
                             "under way")
        return https, moves

    def site(self, unit: str, spec: FaultSpec, step_seconds: float) -> dict[str, Any]:
        """Unit ``unit`` lost, step by step: its services faulted, its traffic cut, its
        databases switched away; callers in every unit watch."""
        from .drill import Drill, DrillOptions
        topology = self.config.topology
        https, moves = self.site_plan(unit)
        total = step_seconds * (3 + len(moves)) + 30 * len(moves)
        faults = [self._fault(name, unit, spec, total) for name in https]
        moving = ", ".join(f"{n} to {t}" for n, t in moves.items()) or "no database"
        self.out(f"drill     site {unit} lost: fault {', '.join(https) or 'no http resource'}"
                 f", cut its traffic, switch {moving}; run {self.run_id}")
        callers = Callers(self.config, topology.units, https, self.path, self.call_timeout) \
            if https else None
        if callers is not None:
            callers.start()
        steps: list[tuple[str, float, float, dict[str, Any]]] = []
        switches: dict[str, Any] = {}

        def step(name: str, action: Callable[[], dict[str, Any]]) -> None:
            began = time.time()
            detail = action()
            if detail:
                self.out(f"{name:<9} " + ", ".join(f"{k} {v}" for k, v in detail.items()
                                                    if not isinstance(v, dict)))
            time.sleep(step_seconds)
            steps.append((name, began, time.time(), detail))
        try:
            step("baseline", dict)
            if faults:
                step("fault", lambda: {"epoch": self._publish(lambda s: s.evolve(
                    faults=(*_live(s), *faults))), "faults": [f.id for f in faults]})
            step("cut", lambda: {"epoch": self._publish(lambda s: s.evolve(
                weights={**s.weights, unit: 0.0}))})
            for name, target in moves.items():
                def switch(name: str = name, target: str = target) -> dict[str, Any]:
                    drill = Drill(self.config, name, DrillOptions(duration=step_seconds),
                                  out=lambda line: self.out(f"  {line}"))
                    report = drill.switch(target).to_dict()
                    switches[name] = report
                    return {"to": target, "rto_s": report["rto_s"], "rpo": report["rpo"],
                            "client_errors": report["client_errors"]["count"],
                            "ok": report["ok"]}
                step(f"switch {name}", switch)
        finally:
            if callers is not None:
                callers.stop()
            self._clear_own(tuple(f.id for f in faults))
        calls = callers.snapshot() if callers is not None else []
        report_steps = []
        self.out("what callers in each unit saw, step by step:")
        for name, began, ended, detail in steps:
            entry = self._step(name, began, ended, calls)
            entry.update(detail)
            report_steps.append(entry)
            if "rto_s" in detail:
                self.out(f"  database: RTO {detail['rto_s']} s, {detail['rpo']['lost_writes']}"
                         f" lost write(s), {detail['client_errors']} client error(s)")
        undo = [f"resil traffic restore {unit}"] + [
            f"resil db switch {n} --to {unit}" for n in moves]
        self.out(f"left      {unit} stays cut and its databases stay switched; to undo: "
                 + "; ".join(undo))
        return {"drill": "site", "unit": unit, "run": self.run_id, "steps": report_steps,
                "switches": switches, "undo": undo,
                "ok": all(s.get("ok", True) for s in report_steps)}

    # ------------------------------------------------------------ shared

    def _step(self, name: str, start: float, end: float,
              calls: list[dict[str, Any]]) -> dict[str, Any]:
        figures = window(calls, start, end, self.config.topology.units)
        self.out(f"{name:<9} {end - start:8.2f} s")
        for unit, numbers in figures.items():
            if numbers["calls"]:
                self.out(_line(unit, numbers))
        return {"name": name, "seconds": round(end - start, 3), "callers": figures}

    def _fault(self, resource: str, unit: str, spec: FaultSpec, lasting: float) -> Fault:
        now = time.time()
        fault = Fault(secrets.token_hex(3), resource, now + lasting + FAULT_MARGIN, now,
                      unit=unit, latency=spec.latency, jitter=spec.jitter,
                      error_rate=spec.error_rate, kind=spec.kind, loss=spec.loss,
                      status=spec.status, seed=secrets.randbits(31),
                      by=f"{issuer()} (drill {self.run_id})")
        problem = check(fault, self.config.topology.units)
        if problem:
            raise DrillInputError(problem)
        return fault

    def _plane_(self) -> ControlPlane:
        if self._plane is None:
            try:
                self._plane = open_configured(self.config)
            except ControlPlaneError as exc:
                raise DrillError(str(exc)) from exc
        return self._plane

    def _state(self) -> ControlState:
        from .truth import trusted_state
        try:
            return trusted_state(self.config, self._plane_(), issuer(), self.out)
        except (ControlPlaneError, SignalError) as exc:
            raise DrillError(f"cannot read the control state: {exc}") from exc

    def _publish(self, change: Callable[[ControlState], ControlState]) -> int:
        try:
            return self._plane_().publish(change(self._state()), issuer=issuer()).epoch
        except (ControlPlaneError, SignalError) as exc:
            raise DrillError(f"cannot publish: {exc}") from exc

    def _clear_own(self, ids: tuple[str, ...]) -> None:
        """Remove this drill's faults if any is still published (they expire anyway)."""
        try:
            state = self._state()
            if any(f.id in ids for f in state.faults):
                self._publish(lambda s: s.evolve(
                    faults=tuple(f for f in _live(s) if f.id not in ids)))
        except DrillError as exc:
            self.out(f"clear     not done ({exc}); the drill's faults expire on their own")


def _live(state: ControlState) -> tuple[Fault, ...]:
    now = time.time()
    return tuple(f for f in state.faults if f.active(now))


def _avoided(calls: list[dict[str, Any]], unit: str, start: float,
             end: float) -> float | None:
    """Seconds from ``start`` until the last call of ``unit``'s callers that met the
    fault: 0.0 when none did, None when they still met it in the last tenth of the
    window (routing never avoided it)."""
    met = [c["t"] for c in calls if c["unit"] == unit and start <= c["t"] < end
           and c["faulted"]]
    if not met:
        return 0.0
    last = float(max(met))
    if last >= end - (end - start) / 10:
        return None
    return round(last - start, 3)
