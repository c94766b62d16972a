"""``resil drill``: rehearse a fault on a real deployment and measure what a client saw.

A drill runs the resil agent in its own process and a *probe* through it: one thread
that writes to the resource as an application would (its connections are routed by the
agent, held during a switch, moved to a new primary), as fast as a short pause allows,
and records every acknowledged write and every error with its time. Then it injects the
fault:

- **switch**: the planned switch of ``resil db switch`` (:class:`~.switch.Switch`);
- **kill**: ``SIGKILL`` of the process that listens on the current primary's endpoint
  (only on this host), then waits for a monitor to publish a new primary — a running
  ``resil monitor`` if one holds the lease ``monitor``, else one started in this process.

Afterwards it reads, through an admin connection to the primary that bypasses the agent,
which acknowledged writes are there, and reports RTO, RPO and client errors.

Its length (over 400 lines) is the drill's story told once, step by step, for both
faults and both kinds of resource; the probe, the local-process lookup and the servers
already live in modules of their own.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from .. import registry
from ..clock import Clock
from ..config import Config
from ..control import ControlPlane, open_configured
from ..errors import ControlPlaneError, SignalError, SwitchError
from ..state import ControlState, issuer
from ..topology import Endpoint, Resource
from .local import command_of, listening_pids, local_addresses
from .monitor import LEASE, Monitor, MonitorOptions
from .probe import (
    Ack,
    ClientError,
    DrillError,
    DrillInputError,
    MySQLStore,
    Probe,
    RedisStore,
    Store,
)
from .servers import Credentials
from .switch import Switch

SHOWN_ERRORS = 5


@dataclass(frozen=True)
class DrillOptions:
    """Flags of ``resil drill``."""

    duration: float = 3.0
    """switch: seconds of probing around the switch, half before and half after it."""
    timeout: float = 60.0
    """kill: longest wait for a new primary and a write acknowledged there."""
    keep: bool = False
    """Leave the probe's data in place."""
    monitor: MonitorOptions = field(default_factory=MonitorOptions)
    """kill: settings of the monitor started in-process when none runs."""


# ---------------------------------------------------------------------------- the report

@dataclass
class Report:
    """What a drill measured; :meth:`to_dict` is what ``--json`` prints."""

    drill: str
    resource: str
    kind: str
    run: str
    old_primary: Endpoint
    epoch_before: int
    new_primary: Endpoint | None = None
    epoch_after: int | None = None
    zero: float = 0.0
    """The moment measurements count from (switch started / kill sent)."""
    acks: list[Ack] = field(default_factory=list)
    errors: list[ClientError] = field(default_factory=list)
    lost: list[Ack] | None = None
    """Acknowledged writes missing on the primary; None when it could not be read."""
    rto_s: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    problem: str = ""

    @property
    def exit_code(self) -> int:
        """0 when the drill ran, 1 when its fault or the recovery failed."""
        return 1 if self.problem else 0

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-able data."""
        lost = self.lost
        window = (max(a.acked for a in lost) - min(a.acked for a in lost)) if lost else 0.0
        return {
            "drill": self.drill, "resource": self.resource, "kind": self.kind,
            "run": self.run, "ok": not self.problem, "problem": self.problem or None,
            "old_primary": _primary(self.old_primary),
            "new_primary": _primary(self.new_primary),
            "epoch": {"before": self.epoch_before, "after": self.epoch_after},
            "rto_s": _round(self.rto_s),
            "rpo": {"lost_writes": None if lost is None else len(lost),
                    "lost_window_s": None if lost is None else _round(window),
                    "lost_seqs": None if lost is None else [a.seq for a in lost[:20]]},
            "client_errors": {
                "count": len(self.errors),
                "window_s": _round(self.errors[-1].at - self.errors[0].at)
                if self.errors else 0.0,
                "first": [{"at_s": _round(e.at - self.zero), "type": e.type,
                           "message": e.message} for e in self.errors[:SHOWN_ERRORS]]},
            "writes": len(self.acks),
            **self.details,
        }

    def summary(self) -> str:
        """One line: RTO, RPO, client errors, writes, epochs."""
        data = self.to_dict()
        rto = "n/a" if self.rto_s is None else f"{self.rto_s:.3f} s"
        lost = data["rpo"]["lost_writes"]
        rpo = "not verified" if lost is None else \
            f"{lost} lost write(s) over {data['rpo']['lost_window_s']:g} s"
        return (f"result    RTO {rto}; RPO {rpo}; {len(self.errors)} client error(s); "
                f"{len(self.acks)} write(s) acknowledged; epoch {self.epoch_before} -> "
                f"{self.epoch_after}")


def _primary(endpoint: Endpoint | None) -> dict[str, str] | None:
    return None if endpoint is None else {"unit": endpoint.unit, "endpoint": str(endpoint)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def longest_gap(acks: list[Ack]) -> float | None:
    """The longest time between two consecutive acknowledgements (None: fewer than 2)."""
    times = sorted(a.acked for a in acks)
    return max((b - a for a, b in zip(times, times[1:], strict=False)), default=None)


# ---------------------------------------------------------------------------- the drills

@dataclass
class _DrillMonitor(Monitor):
    """A monitor of the drilled resource only: the drill acts on nothing else."""

    only: str = ""

    def _resources(self) -> list[str]:
        return [self.only]


@dataclass
class Drill:
    """One drill of one resource; :meth:`switch` or :meth:`kill` runs it."""

    config: Config
    resource_name: str
    options: DrillOptions = field(default_factory=DrillOptions)
    out: Callable[[str], None] = print
    clock: Clock = time.monotonic
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    _store: Store = field(init=False, repr=False)

    # ------------------------------------------------------------ switch

    def switch(self, to_unit: str) -> Report:
        """Probe, run the planned switch to ``to_unit``, probe on, verify."""
        resource = self._resource()
        if to_unit not in resource.endpoints:
            raise DrillInputError(f"{resource.name} has no endpoint in unit {to_unit!r} "
                                  f"(units: {', '.join(resource.endpoints)})")
        plane = self._plane()
        old = self._primary(resource, self._state(plane))
        if old.unit == to_unit:
            raise DrillInputError(f"{resource.name}: {to_unit} is already the primary")
        report = self._report("switch", resource, old, plane)
        self.out(f"drill     planned switch of {resource.name} ({resource.kind}) from "
                 f"{old.unit} ({old}) to {to_unit} ({resource.endpoint_in(to_unit)}); "
                 f"run {self.run_id}, epoch {report.epoch_before}")
        half = max(self.options.duration / 2, 0.2)
        with self._probing(resource, old, report) as probe:
            self._warm_up(probe, half)
            job = Switch(self.config, plane, resource.name, to_unit, out=self.out,
                         clock=self.clock)
            report.zero = began = self.clock()
            try:
                job.run()
            except (SwitchError, ControlPlaneError, SignalError) as exc:
                report.problem = f"switch failed: {exc}"
                self.out(f"drill     {report.problem}")
            ended = self.clock()
            report.details["steps"] = [{"name": s.name, "seconds": _round(s.seconds),
                                        "detail": s.detail} for s in job.steps]
            report.details["switch_s"] = _round(ended - began)
            self._probe_for(probe, half, "after")
            if not report.problem and not probe.acked_since(ended):
                report.problem = f"no write acknowledged within {half:g} s after the switch"
        report.rto_s = longest_gap(report.acks)
        self._finish(report, resource, plane)
        return report

    # ------------------------------------------------------------ kill

    def kill_target(self) -> str:
        """What :meth:`kill` would kill: checked as it checks, nothing done."""
        resource, _plane, _state, old, pids = self._kill_plan()
        killed = ", ".join(f"{pid} ({command_of(pid)})" for pid in pids)
        return f"the primary of {resource.name} ({resource.kind}), {old} (unit {old.unit}): " \
            f"pid {killed}"

    def _kill_plan(self) -> tuple[Resource, ControlPlane, ControlState, Endpoint, list[int]]:
        """The resource, control plane, state, primary and the pids to kill; raises when
        the drill cannot run."""
        resource = self._resource()
        plane = self._plane()
        state = self._state(plane)
        old = self._primary(resource, state)
        if len(resource.endpoints) < 2:
            raise DrillInputError(f"{resource.name} has no endpoint in another unit to fail "
                                  "over to")
        try:
            addresses = local_addresses(old.host)
        except DrillInputError as exc:
            raise DrillInputError(f"cannot kill the primary of {resource.name} at {old} "
                                  f"(unit {old.unit}): {exc}; `resil drill kill` only kills "
                                  "servers on this host") from exc
        if resource.name in state.locks:
            raise DrillError(f"{resource.name} is locked ({state.locks[resource.name].reason})"
                             ": a switch or failover is under way")
        inodes, pids = listening_pids(old.port, addresses)
        if not inodes:
            raise DrillError(f"nothing listens on {old} (unit {old.unit}): is the primary "
                             "already down?")
        if not pids:
            raise DrillError(f"a process listens on {old} but this user cannot see which "
                             "(run the drill as the server's user or root)")
        return resource, plane, state, old, pids

    def kill(self) -> Report:
        """Probe, SIGKILL the primary's server, wait for a new primary, verify."""
        resource, plane, _state, old, pids = self._kill_plan()
        report = self._report("kill", resource, old, plane)
        killed = ", ".join(f"{pid} ({command_of(pid)})" for pid in pids)
        report.details["killed"] = {"pids": pids, "commands": [command_of(p) for p in pids]}
        self.out(f"drill     kill -9 of the primary of {resource.name} ({resource.kind}): "
                 f"{old} (unit {old.unit}), pid {killed}; run {self.run_id}, epoch "
                 f"{report.epoch_before}")
        with self._probing(resource, old, report) as probe, \
                self._monitoring(resource, plane, report):
            self._warm_up(probe, 1.0)
            self._kill(pids, old, report)
            self._await_recovery(probe, resource, old, plane, report)
            self._probe_for(probe, 0.5, "after")
        self._say_left_behind(report, resource, old)
        self._finish(report, resource, plane)
        return report

    def _kill(self, pids: list[int], old: Endpoint, report: Report) -> None:
        began = self.clock()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            except PermissionError as exc:
                raise DrillError(f"cannot kill pid {pid}: {exc}") from exc
        report.zero = self.clock()
        self._say("kill", self.clock() - began, f"SIGKILL sent to pid "
                  f"{', '.join(map(str, pids))} listening on {old}")

    def _await_recovery(self, probe: Probe, resource: Resource, old: Endpoint,
                        plane: ControlPlane, report: Report) -> None:
        killed, deadline = report.zero, report.zero + self.options.timeout
        timeline: dict[str, float | None] = {"locked_s": None, "published_s": None,
                                             "first_write_s": None}
        report.details["timeline"] = timeline
        while self.clock() < deadline:
            state = self._state(plane)
            unit = state.primary_unit(resource)
            if timeline["locked_s"] is None and resource.name in state.locks:
                timeline["locked_s"] = _round(self.clock() - killed)
                self._say("locked", self.clock() - killed, f"epoch {state.epoch}: "
                          f"{state.locks[resource.name].reason}; writes held")
            if timeline["published_s"] is None and unit != old.unit \
                    and resource.name not in state.locks:
                timeline["published_s"] = _round(self.clock() - killed)
                report.new_primary = resource.endpoint_in(unit or "")
                self._say("published", self.clock() - killed, f"new primary "
                          f"{report.new_primary} (unit {unit}) at epoch {state.epoch}")
            after = probe.acked_since(killed)
            if timeline["published_s"] is not None and after:
                report.rto_s = after[0].acked - killed
                timeline["first_write_s"] = _round(report.rto_s)
                self._say("recovered", report.rto_s, "first write sent after the kill "
                          "acknowledged (by the new primary)")
                return
            time.sleep(0.01)
        report.problem = (f"no recovery within {self.options.timeout:g} s: "
                          + ("no new primary was published" if report.new_primary is None
                             else "no write acknowledged on the new primary"))
        self.out(f"drill     {report.problem}")

    def _say_left_behind(self, report: Report, resource: Resource, old: Endpoint) -> None:
        new = report.new_primary
        note = f"{old} (unit {old.unit}) was killed and stays down: it is your server. "
        if new is None:
            note += ("No new primary was published, so the resource has none: start the "
                     "server again, then check `resil status`")
        else:
            how = (f"start it with read_only = 1, then CHANGE MASTER TO MASTER_HOST="
                   f"'{new.host}', MASTER_PORT={new.port}, MASTER_USE_GTID=current_pos, ...; "
                   "START SLAVE" if resource.kind == "mysql" else
                   f"start it with --replicaof {new.host} {new.port}")
            note += (f"To bring it back as a replica of the new primary, {how} (a running "
                     f"`resil monitor` fences it if it comes back writable); then `resil db "
                     f"switch {resource.name} --to {old.unit}` if the primary should return "
                     "there")
        report.details["left_behind"] = note
        self.out(f"note      {note}")

    @contextmanager
    def _monitoring(self, resource: Resource, plane: ControlPlane,
                    report: Report) -> Iterator[None]:
        """Run a monitor in this process unless another one holds the lease."""
        holder = issuer()
        if not plane.lease(LEASE, holder, self.options.monitor.lease_ttl):
            report.details["monitor"] = "external"
            self.out("monitor   external: a `resil monitor` holds the lease and will act")
            yield
            return
        report.details["monitor"] = "in-process"
        self.out("monitor   in-process: no `resil monitor` holds the lease")
        monitor = _DrillMonitor(self.config, plane, self.options.monitor, holder=holder,
                                out=lambda line: self.out(f"monitor   {line}"),
                                only=resource.name)
        stop = threading.Event()
        thread = threading.Thread(target=monitor.run, args=(stop,), name="resil-drill-monitor",
                                  daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=30)
            plane.release(LEASE, holder)    # also when the monitor never ticked

    # ------------------------------------------------------------ shared steps

    @contextmanager
    def _probing(self, resource: Resource, primary: Endpoint,
                 report: Report) -> Iterator[Probe]:
        """Start the agent in this process and the probe through it; stop both after."""
        from .. import agent as agent_module
        credentials = self._credentials(resource)
        store: Store = MySQLStore(credentials, self.run_id) if resource.kind == "mysql" \
            else RedisStore(credentials, self.run_id)
        self._store = store
        began = self.clock()
        try:
            detail = store.prepare(primary)
        except Exception as exc:
            raise DrillError(f"cannot prepare the probe on {primary}: {exc}") from exc
        self._say("prepare", self.clock() - began, detail)
        own = registry.runtime() is None
        # Not the application's admin port, and SIGTERM left alone: this is a tool.
        running = agent_module.start(replace(self.config, admin_listen=None,
                                             drain_period=0.0))
        wanted = "pymysql" if resource.kind == "mysql" else "redis"
        if running is None or wanted not in {i.name for i in running.integrations}:
            if own:
                agent_module.stop()
            raise DrillInputError(f"the probe needs the agent with its {wanted} integration "
                                  "(RESIL_DISABLED or disabled_integrations turn it off)")
        probe = Probe(store, primary, self.clock)
        probe.start()
        try:
            yield probe
        finally:
            probe.stop()
            report.acks, report.errors = probe.acks, probe.errors
            if own:
                agent_module.stop()

    def _warm_up(self, probe: Probe, seconds: float) -> None:
        self._probe_for(probe, seconds, "probe")
        if not probe.acks:
            raise DrillError(f"the probe could not write in {seconds:g} s: "
                             f"{probe.errors[-1].type}: {probe.errors[-1].message}"
                             if probe.errors else "the probe could not write")

    def _probe_for(self, probe: Probe, seconds: float, name: str) -> None:
        began, acks, errors = self.clock(), len(probe.acks), len(probe.errors)
        time.sleep(seconds)
        self._say(name, self.clock() - began, f"{len(probe.acks) - acks} write(s) "
                  f"acknowledged through the agent, {len(probe.errors) - errors} error(s)")

    def _finish(self, report: Report, resource: Resource, plane: ControlPlane) -> None:
        """Verify the acknowledged writes on the primary now, clean up, summarise."""
        try:
            state = self._state(plane)
            report.epoch_after = state.epoch
            primary = self._primary(resource, state)
        except DrillError as exc:
            self.out(f"verify    not done: {exc}")
        else:
            if primary != report.old_primary:
                report.new_primary = primary
            if primary == report.old_primary and report.drill == "kill":
                self.out(f"verify    not done: the primary {primary} was killed")
            else:
                self._verify(report, primary)
        self.out(report.summary())

    def _verify(self, report: Report, primary: Endpoint) -> None:
        began = self.clock()
        try:
            present = self._store.present(primary)
        except Exception as exc:
            self.out(f"verify    not done: cannot read {primary}: {exc}")
            return
        report.lost = [a for a in report.acks if a.seq not in present]
        self._say("verify", self.clock() - began, f"{len(report.acks) - len(report.lost)}"
                  f" of {len(report.acks)} acknowledged write(s) present on {primary} "
                  f"(unit {primary.unit})")
        if self.options.keep:
            self.out(f"keep      probe data of run {self.run_id} left on {primary}")
            return
        began = self.clock()
        try:
            removed = self._store.cleanup(primary)
        except Exception as exc:
            self.out(f"cleanup   failed on {primary}: {exc}")
            return
        self._say("cleanup", self.clock() - began,
                  f"{removed} probe entries of run {self.run_id} removed")

    # ------------------------------------------------------------ helpers

    def _say(self, name: str, seconds: float, detail: str) -> None:
        self.out(f"{name:<9} {seconds * 1000:8.1f} ms  {detail}")

    def _report(self, drill: str, resource: Resource, old: Endpoint,
                plane: ControlPlane) -> Report:
        return Report(drill, resource.name, resource.kind, self.run_id, old,
                      self._state(plane).epoch)

    def _resource(self) -> Resource:
        resource = self.config.resources.get(self.resource_name)
        if resource is None:
            raise DrillInputError(f"unknown resource {self.resource_name!r} (known: "
                                  f"{', '.join(self.config.resources) or 'none'})")
        if resource.kind == "http":
            raise DrillInputError(f"{resource.name} is an http resource: it has no primary")
        return resource

    def _credentials(self, resource: Resource) -> Credentials:
        try:
            return Credentials.of(resource)
        except SwitchError as exc:
            raise DrillInputError(str(exc)) from exc

    def _plane(self) -> ControlPlane:
        try:
            return open_configured(self.config)
        except ControlPlaneError as exc:
            raise DrillError(str(exc)) from exc

    def _state(self, plane: ControlPlane) -> ControlState:
        try:
            signal_ = plane.load()
        except (ControlPlaneError, SignalError) as exc:
            raise DrillError(f"cannot read the control state: {exc}") from exc
        return signal_.state if signal_ else ControlState.initial(self.config.topology)

    def _primary(self, resource: Resource, state: ControlState) -> Endpoint:
        unit = state.primary_unit(resource) or ""
        endpoint = resource.endpoint_in(unit)
        if endpoint is None:
            raise DrillInputError(f"{resource.name} has no primary endpoint (unit {unit!r})")
        return endpoint
