"""The agent: wires configuration → control plane → router → integrations.

Starting the agent reads the control state once, synchronously, and installs the
integrations' import hooks; it starts no thread. The control-plane watch starts lazily,
the first time the router is consulted, so that nothing runs in a process that never
talks to a resource, and so that a pre-forking server (gunicorn, uWSGI) gets a fresh
watch in each worker instead of a thread that did not survive ``fork()``.
"""

from __future__ import annotations

import atexit
import functools
import os
import sys
import threading
import time
from _socket import gethostname  # socket.gethostname itself, without importing socket

from . import _deps, _log, counters, registry
from .config import Config, load_config
from .control import ControlPlane, Watch, open_configured
from .control.base import Mark, live
from .errors import ControlPlaneError, ResilError, SignalError
from .gate import Gate
from .guard import fail_open
from .integrations import discover_deferred
from .router import Router
from .state import ControlState, Signal, issuer, newer

SCALE_CACHE = 5.0
"""Seconds an agent reuses the stored recommendation it read (``/scale``, ``/metrics``)."""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .integrations import Deferred
    from .integrations.base import Integration
    from .scale import Sampler
    from .serving.drain import Drain
    from .telemetry.admin import AdminServer

__all__ = ["Agent", "issuer", "start", "stop"]

log = _log.get("resil")
_fork_hook_registered = False
WITNESS_TTL = 10.0
"""Seconds a failed connect stays in the heartbeat without another failure."""
_agent: Agent | None = None


class Agent:
    """One process's agent. Use :func:`start` rather than building one directly."""

    def __init__(self, config: Config, plane: ControlPlane | None = None) -> None:
        self.config = config
        self.state = ControlState.initial(config.topology)
        """The control state applied now: an immutable snapshot, swapped as a whole by
        :meth:`apply` (a plain attribute, read on every statement: no property)."""
        self._changed = threading.Condition()
        self._beat = threading.Event()
        """Set when a heartbeat should go out now: a new state applied, or (during a
        lock) a write got held, so that the switch's drain sees it at once."""
        self._utilization_cache: tuple[float, float | None] = (-1.0, None)
        self.router = Router(config.topology, self.current_state)
        self.gate = Gate(self.current_state, self.wait_for_change, on_hold=self._beat.set)
        self.id = f"{gethostname()}:{os.getpid()}"
        self._pid = os.getpid()
        """The process this agent runs in: another one is a fork that Python's fork hooks
        did not reach (uWSGI forks its workers in C), found at first use."""
        self.started_at = time.time()
        self._heartbeat: threading.Thread | None = None
        self.admin: AdminServer | None = None
        self.drain: Drain | None = None
        self.plane = plane
        self._scale_cache: tuple[float, dict[str, Any] | None, str] | None = None
        self.warned_drivers: set[str] = set()
        """The unrouted MySQL drivers this agent said it leaves alone."""
        self.integrations: list[Integration | Deferred] = []
        self._watch: Watch | None = None
        self._watching = False      # reset in a forked child, whose watch thread is gone
        self._watch_lock = threading.Lock()
        self._stopped = False
        self._last_error = ""
        self.noted_unreachable: dict[str, tuple[str, float, float]] = {}
        """resource -> (endpoint, first, last time) of connects that did not reach it:
        what :meth:`reachable` withdraws (a connect path reads it before calling)."""
        """resource -> (endpoint, first failure, last failure): wall-clock seconds."""
        self.parent: str | None = None
        """The id of the agent that forked (gunicorn's master) or spawned (uvicorn's
        supervisor) this process, if any: it serves the instance's admin endpoint."""
        self._marked: dict[str, Mark] = {}
        """resource -> the mark this agent last wrote there."""
        self._marks_written = threading.Condition()
        """Notified when a mark was written (:meth:`wait_marked`)."""
        self._holders: dict[str, str] = {}
        """resource -> the holder of the lock on it this agent last saw (whose verify
        waits for this agent to apply the epoch that ends it)."""
        self._urgent = False
        """Whether the next heartbeat goes out at once (a witness to report)."""
        self._arrivals: list[tuple[str, str, str]] = []
        """(kind, resource, holder) of waits to leave at the next heartbeat round: a
        switch's intent whose spares are open."""
        self._prepared = False
        """Whether spares were ever opened ahead of a switch (then each heartbeat round
        closes those of switches that are over)."""
        if plane is None:
            try:
                self.plane = open_configured(config, poll_interval=config.poll_interval)
            except ControlPlaneError as exc:
                log.error("resil: %s; running on the configuration's initial state", exc)

    def current_state(self) -> ControlState:
        """The applied control state; starts the watch on first use in this process."""
        if not self._watching or self._pid != os.getpid():
            self._ensure_watching()
        return self.state

    def start(self) -> None:
        """Load the control state once, install the integrations and, unless it is off,
        start the admin endpoint (the one thread started here: a load balancer asks
        ``/readyz`` before the first request, so it cannot wait for first use)."""
        self.refresh()
        from .telemetry import otel
        otel.install_when_sdk_loads(self)
        if self.config.drain_period > 0:
            from .serving.drain import Drain
            self.drain = Drain(self.config.drain_period)
            self.drain.install()
        self.parent = _spawning_agent()
        # Processes this one starts (uvicorn's and multiprocessing's spawned workers)
        # learn that they are this instance's workers.
        mark_children(self.id)
        if self.config.admin_listen is not None and self.parent is None:
            from .telemetry.admin import AdminServer
            self.admin = AdminServer(self, *self.config.admin_listen)
            if not self.admin.start():
                self.admin = None
        self.integrations = discover_deferred(self.config.disabled_integrations)
        for integration in self.integrations:
            try:
                integration.instrument()
            except Exception as exc:
                counters.record_fault(f"{integration.name}.instrument", exc)
        global _unrouted_hooked
        if not _unrouted_hooked:      # once per process: a hook is never unregistered
            _unrouted_hooked = True
            from . import hooks
            for name in UNROUTED_DRIVERS:
                hooks.register(name, _guarded_warn_unrouted)

    def stop(self) -> None:
        """Stop the admin endpoint, watching and heartbeats, and remove every patch."""
        self._stopped = True
        mark_children(None)
        from .telemetry import otel
        otel.detach(self)
        if self.router.checks is not None:
            self.router.checks.stop()
        if self.drain is not None:
            self.drain.uninstall()
        if self.admin is not None:
            self.admin.stop()
            self.admin = None
        with self._changed:
            self._changed.notify_all()      # held writes see the agent stop
        self._beat.set()                    # the heartbeat loop wakes, then exits
        with self._watch_lock:
            if self._watch is not None and self._watching:
                self._watch.stop()
                if self._heartbeat is not None:
                    self._heartbeat.join(timeout=5)
                if self.plane is not None:
                    self.plane.retire(self.id)
            self._watch = None
            self._heartbeat = None
        for integration in reversed(self.integrations):
            integration.uninstrument()
        spares = sys.modules.get("resil.integrations._spare")   # loaded by a switch
        if spares is not None:
            spares.stop()
        chaos = sys.modules.get("resil.chaos")     # loaded only if a fault was applied
        if chaos is not None:
            chaos.shutdown()
        if self.plane is not None:
            self.plane.close()

    def refresh(self) -> None:
        """Read the control plane now and apply what it holds, if newer."""
        if self.plane is None:
            return
        try:
            signal = self.plane.load()
        except (SignalError, ControlPlaneError) as exc:
            self._report(exc)
            return
        if signal is not None:
            self.apply(signal)

    def apply(self, signal: Signal) -> bool:
        """Adopt ``signal``'s state if its epoch is newer; return whether it was."""
        with self._changed:
            current = self.state
            if not newer(current, signal):
                if signal.epoch < current.epoch:
                    log.warning("resil: stale signal ignored: epoch %d < applied epoch %d "
                                "(issuer %s)", signal.epoch, current.epoch, signal.issuer)
                return False
            self.state = signal.state      # one reference swap: readers never lock
            self._changed.notify_all()      # held writes wake up
        self._beat.set()                    # and the heartbeat reports the new epoch
        counters.count("signals_applied")
        moved = [n for n, u in signal.state.primaries.items() if current.primaries.get(n) != u]
        if moved:
            counters.count("primary_changes", len(moved))
            fail_open("agent.abandon", self._abandon, moved, current)
        if set(signal.state.locks) - set(current.locks):
            counters.count("locks_seen", len(set(signal.state.locks) - set(current.locks)))
        if signal.state.intents or self._prepared:
            fail_open("agent.prepare", self._prepare, current, signal.state)
        self._last_error = ""
        log.info("resil: applied epoch %d from %s (primaries %s)", signal.epoch,
                 signal.issuer, dict(signal.state.primaries))
        return True

    def _abandon(self, moved: list[str], before: ControlState) -> None:
        """Statements still waiting for a reply from a demoted primary get an error now
        (see :meth:`resil.integrations.base.Integration.abandon`)."""
        for name in moved:
            resource = self.config.resources.get(name)
            old = self.router.primary_of(resource, before) if resource is not None else None
            if old is None:
                continue
            cut = sum(i.abandon(name, (old.host, old.port)) for i in self.integrations)
            if cut:
                counters.count("statements_abandoned", cut)
                log.warning("resil: %s moved away from %s: %d connection(s) still waiting "
                            "there cut (a statement in flight there has an outcome unknown "
                            "to the application)", name, old, cut)

    def _prepare(self, before: ControlState, after: ControlState) -> None:
        """For each planned switch's intent newly applied, have the integrations open
        spare connections to its target now, while writes flow, and tell the switch
        (which waits for it, bounded, before it locks) once they are open. Spares of a
        switch that is over are closed."""
        from .integrations import _spare
        now = time.time()
        for name, intent in after.intents.items():
            resource = self.config.resources.get(name)
            target = resource.endpoint_in(intent.target) if resource is not None else None
            if before.intents.get(name) == intent or not intent.live(now) or target is None:
                continue
            self._prepared = True
            opened = sum(fail_open("agent.prepare", i.prepare, resource, target) or 0
                         for i in self.integrations)
            if opened:
                counters.count("spares_prepared", opened)
            _spare.when_opened(functools.partial(self._arrive, "spares", name, intent.holder))
        self._settle_prepared(after)

    def _arrive(self, kind: str, resource: str, holder: str) -> None:
        """Leave a switch's wait at the next heartbeat round (now)."""
        with self._marks_written:
            self._arrivals.append((kind, resource, holder))
        self._beat.set()

    def _settle_prepared(self, state: ControlState) -> None:
        """Close the spares opened ahead of switches that are over: neither their lock
        nor a live intent stands any more."""
        from .integrations import _spare
        now = time.time()
        for name in _spare.PREPARED.resources():
            intent = state.intents.get(name)
            if name not in state.locks and (intent is None or not intent.live(now)):
                _spare.PREPARED.drop(name)

    def wait_for_change(self, epoch: int, timeout: float) -> ControlState:
        """Block until the applied epoch differs from ``epoch`` (or ``timeout``)."""
        if not self._watching:
            self._ensure_watching()
        with self._changed:
            self._changed.wait_for(lambda: self.state.epoch != epoch or self._stopped, timeout)
            return self.state

    @property
    def draining(self) -> bool:
        """Whether SIGTERM arrived and the instance is draining (not ready)."""
        return self.drain is not None and self.drain.draining

    @property
    def sampler(self) -> Sampler | None:
        """The utilization sampler, when this process serves the admin endpoint."""
        return self.admin.sampler if self.admin is not None else None

    def children(self) -> list[dict[str, Any]]:
        """The live heartbeats of the agents this process forked (its workers): read
        from the control plane in one small step (empty when it is down)."""
        if self.plane is None:
            return []
        try:
            now = time.time()
            return [b for b in self.plane.children(self.id)
                    if live(b, self.config.heartbeat_interval, now)]
        except Exception:   # the control plane is down: this process's own figures
            return []

    def fleet_load(self) -> dict[str, tuple[int, float]]:
        """Per unit, the instances of this service and the sum of their utilizations over
        the last complete window (empty when unknown): a read whose size does not grow
        with the fleet."""
        if self.plane is None:
            return {}
        try:
            return self.plane.fleet_load(self.config.service)
        except Exception:   # the control plane is down
            return {}

    def scale_answer(self, load: dict[str, tuple[int, float]] | None = None
                     ) -> dict[str, Any]:
        """This instance's ``/scale`` document: its service's and unit's desired
        instances from the last recommendation of ``resil scale``, or a fallback that
        says why (see :func:`resil.scale.unit_answer`). The stored recommendation is read
        at most every :data:`SCALE_CACHE` seconds, whoever scrapes; ``load`` is the
        fleet's load when the caller has just read it."""
        from . import scale
        now = time.time()
        document, problem = None, ""
        cached = self._scale_cache
        if cached is not None and now - cached[0] < SCALE_CACHE:
            document, problem = cached[1], cached[2]
        elif self.plane is not None:
            try:
                raw = self.plane.get_document(scale.DOCUMENT)
                if raw is None:
                    problem = "no recommendation yet (is resil scale --watch or resil " \
                              "monitor running with [scaling]?)"
                else:
                    keys = [k for k in (self.config.signing_key,
                                        *self.config.previous_signing_keys) if k]
                    document = scale.decode_recommendation(raw, keys)
            except scale.RecommendationError as exc:
                problem = f"the stored recommendation was refused: {exc}"
            except Exception as exc:   # the control plane is down
                problem = f"control plane unreachable: {exc}"
            self._scale_cache = (now, document, problem)
        return scale.unit_answer(document, problem,
                                 self.config.scaling.policy(self.config.service),
                                 self.config.service, self.config.unit,
                                 self.fleet_load() if load is None else load, now)

    def in_flight(self) -> dict[str, int]:
        """Open transactions and running writes per resource, over all integrations."""
        total: dict[str, int] = dict.fromkeys(
            (n for n, r in self.config.resources.items() if r.kind != "http"), 0)
        for integration in self.integrations:
            for resource, n in integration.in_flight().items():
                total[resource] = total.get(resource, 0) + n
        return total

    def heartbeat(self) -> dict[str, Any]:
        """What this agent reports to the control plane: who it is, what it applied,
        what it has in flight and its load. A forked worker adds what its parent's
        ``/metrics`` sums up (requests, counters); everything else stays in the process."""
        beat: dict[str, Any] = {
            "id": self.id, "host": gethostname(), "pid": os.getpid(),
            "unit": self.config.unit, "service": self.config.service,
            "epoch": self.state.epoch, "in_flight": self.in_flight(),
            "started_at": self.started_at, "reported_at": time.time(),
            "program": " ".join(sys.argv)[:200],
            "utilization": self._utilization(),
        }
        if self.admin is not None and self.admin.address:
            beat["admin"] = "{}:{}".format(*self.admin.address)
        if self.parent is not None:
            beat["parent"] = self.parent
            beat["requests"] = counters.requests().snapshot() \
                if counters.requests().seen else None
            beat["events"] = counters.stats()
            beat["faults"] = counters.faults()
        if avoided := self._unhealthy_endpoints():
            beat["http_health"] = avoided
        if witnessed := self._witnessed():
            beat["unreachable"] = witnessed
        return beat

    def _mark(self) -> None:
        """Write this agent's mark on each database resource whose (epoch, in-flight)
        changed, while it is locked, or whose epoch changed: what a switch's drain and
        verify read. Between changes it writes nothing. The mark that completes what a
        switch waits for (no open transaction left under its lock; the epoch that ended
        its lock) also takes this agent off the switch's wait."""
        state = self.state
        in_flight: dict[str, int] | None = None
        for name, resource in self.config.resources.items():
            if resource.kind == "http":
                continue
            last = self._marked.get(name)
            lock = state.locks.get(name)
            if last is not None and last[0] == state.epoch and lock is None:
                continue
            if in_flight is None:
                in_flight = self.in_flight()
            mark = (state.epoch, in_flight.get(name, 0))
            if mark == last or self.plane is None:
                continue
            arrived = None
            if lock is not None:
                self._holders[name] = lock.holder
                arrived = ("drain", lock.holder) if mark[1] == 0 else None
            elif name in self._holders:
                arrived = ("verify", self._holders.pop(name))
            self.plane.mark(name, self.id, *mark, arrived=arrived)
            with self._marks_written:
                self._marked[name] = mark
                self._marks_written.notify_all()

    def wait_marked(self, resource: str, epoch: int, timeout: float) -> bool:
        with self._marks_written:
            return self._marks_written.wait_for(
                lambda: self._marked.get(resource, (-1, 0))[0] >= epoch or self._stopped,
                timeout)

    def unreachable(self, resource: str, endpoint: str) -> None:
        """A connect to ``endpoint`` of ``resource`` did not reach the server: reported
        in the heartbeat at once (the monitor counts agents that say so as witnesses)."""
        now = time.time()
        known = self.noted_unreachable.get(resource)
        if known is not None and known[0] == endpoint:
            self.noted_unreachable[resource] = (endpoint, known[1], now)
            return
        self.noted_unreachable[resource] = (endpoint, now, now)
        counters.count("primary_unreachable")
        self._report_now()

    def reachable(self, resource: str, endpoint: str) -> None:
        """A connect to ``endpoint`` succeeded: what :meth:`unreachable` said is withdrawn."""
        known = self.noted_unreachable.get(resource)
        if known is not None and known[0] == endpoint:
            self.noted_unreachable.pop(resource, None)
            self._report_now()

    def _report_now(self) -> None:
        """Send the heartbeat now rather than at the next interval."""
        self._urgent = True
        self._beat.set()

    def _witnessed(self) -> dict[str, dict[str, Any]]:
        """Endpoints that failed a connect in the last :data:`WITNESS_TTL` seconds."""
        cutoff = time.time() - WITNESS_TTL
        return {resource: {"endpoint": endpoint, "since": round(first, 3)}
                for resource, (endpoint, first, last) in list(self.noted_unreachable.items())
                if last >= cutoff}

    def _unhealthy_endpoints(self) -> dict[str, dict[str, Any]]:
        """The http endpoints this process avoids now (all others are healthy)."""
        return {name: bad for name, report in self.router.health_snapshot().items()
                if (bad := {e: h for e, h in report.items() if h["state"] != "healthy"})}

    def _utilization(self) -> float | None:
        """This instance's utilization, when it serves the admin endpoint: worked out at
        most once per heartbeat interval (it reads the workers' heartbeats), however
        often the heartbeat reports."""
        if self.admin is None:
            return None
        now = time.monotonic()
        at, value = self._utilization_cache
        if at >= 0 and now - at < self.config.heartbeat_interval:
            return value
        from .telemetry.metrics import instance_figures
        value = round(instance_figures(self, self.children())["utilization"], 4)
        self._utilization_cache = (now, value)
        return value

    def _heartbeat_loop(self) -> None:
        due = 0.0
        reported = -1
        while not self._stopped and self.plane is not None:
            self._beat.clear()      # before reading what to report: a later set() repeats
            try:
                # The marks whenever they change, first: a switch's drain waits on them.
                # The heartbeat every interval, and at once with a new epoch.
                self._mark()
                if self._arrivals:
                    with self._marks_written:
                        arrivals, self._arrivals = self._arrivals, []
                    for kind, name, holder in arrivals:
                        self.plane.arrive(kind, name, holder, [self.id])
                if self._prepared:
                    fail_open("agent.prepare", self._settle_prepared, self.state)
                if self._urgent or time.monotonic() >= due or self.state.epoch != reported:
                    epoch, self._urgent = self.state.epoch, False
                    self.plane.report(self.heartbeat())
                    due, reported = time.monotonic() + self.config.heartbeat_interval, epoch
            except ResilError as exc:   # the control plane is down: said once, not a fault
                self._report(exc)
            except Exception as exc:    # a full disk must not kill the loop
                counters.record_fault("heartbeat", exc)
            # While a switch holds a lock it waits on our in-flight count: look often
            # (a local check; the control plane hears only of a change).
            wait = 0.02 if self.state.locks else max(0.0, due - time.monotonic())
            if not self._stopped:
                self._beat.wait(wait)

    def _report(self, exc: Exception) -> None:
        message = str(exc)
        if message != self._last_error:     # a bad file is reported once, not per poll
            self._last_error = message
            if isinstance(exc, SignalError):
                counters.count("signals_rejected")
            kind = "signal rejected" if isinstance(exc, SignalError) else "control plane error"
            log.warning("resil: %s: %s; keeping epoch %d", kind, message, self.state.epoch)

    def _ensure_watching(self) -> None:
        if self.plane is None or self._stopped:
            return
        if self._pid != os.getpid():
            self._forked_unannounced()
        with self._watch_lock:
            if self._watching or self._stopped:
                return
            _warn_if_threads_off()
            self.refresh()   # a new worker routes its first connection on fresh state
            self._watch = self.plane.watch(self.apply, self._on_watch_error)
            self._heartbeat = threading.Thread(target=self._heartbeat_loop,
                                               name="resil-heartbeat", daemon=True)
            self._heartbeat.start()
            self._watching = True
            atexit.register(self._retire_at_exit)

    def _retire_at_exit(self) -> None:
        """At interpreter exit: take this agent's heartbeat off the control plane."""
        if self.plane is not None and self._watching and not self._stopped:
            try:
                self.plane.retire(self.id)
            except Exception:  # exiting anyway; a stale heartbeat ages out
                pass

    def _on_watch_error(self, exc: Exception) -> None:
        if isinstance(exc, ResilError):
            self._report(exc)
        else:
            counters.record_fault("control watch", exc)

    def _forked_unannounced(self) -> None:
        """This process is a fork that Python's fork hooks did not reach (uWSGI forks its
        workers in C, unless ``--py-call-osafterfork``): become its own agent now, a
        worker of the one it was copied from, as :func:`os.fork` would have made it.
        Without this, every worker would report, mark and drain as its parent."""
        with _FORK_LOCK:
            if self._pid == os.getpid():
                return                  # another thread of this process did it
            parent = self.id
            self._after_fork_in_child()
        log.warning("resil: process %d was forked without Python's fork hooks (uWSGI "
                    "without --py-call-uwsgi-fork-hooks, which resil-run sets): it now runs "
                    "as a worker of agent %s, but locks held at the fork stay held; pass "
                    "that option", os.getpid(), parent)

    def _after_fork_in_child(self) -> None:
        # The admin endpoint stays the parent's: close our copy of its socket.
        if self.admin is not None:
            self.admin.after_fork_in_child()
            self.admin = None
        if self.drain is not None:
            self.drain.after_fork_in_child()
            self.drain = None
        if self.router.checks is not None:
            self.router.checks.after_fork_in_child()
        # The watch thread did not survive fork(); its lock may have been held by it.
        close = getattr(self._watch, "close_after_fork", None)
        if close is not None:
            close()
        self._watch = None
        self._heartbeat = None
        self._watching = False
        self._watch_lock = threading.Lock()
        self._changed = threading.Condition()
        self._beat = threading.Event()
        self.gate = Gate(self.current_state, self.wait_for_change, on_hold=self._beat.set)
        self._utilization_cache = (-1.0, None)      # the parent's figure, not this child's
        self.noted_unreachable = {}
        self._marked = {}
        self._marks_written = threading.Condition()
        self._holders = {}
        self._arrivals = []
        self._prepared = False
        self.parent = self.id
        self.id = f"{gethostname()}:{os.getpid()}"
        self._pid = os.getpid()
        mark_children(self.id)
        self.started_at = time.time()


UNROUTED_DRIVERS = {
    "mysql.connector": "mysql-connector-python (mysql.connector)",
}
"""MySQL drivers resil does not route or switch: an application that uses one is told."""


_unrouted_hooked = False


def _warn_unrouted(module: Any) -> None:
    """Say once per agent, when the application imports a MySQL driver resil leaves
    alone while MySQL resources are configured, what that means for it (not for PyMySQL
    posing as MySQLdb: that one is routed)."""
    agent, name = _agent, getattr(module, "__name__", "")
    if agent is None or name not in UNROUTED_DRIVERS or name in agent.warned_drivers \
            or not any(r.kind == "mysql" for r in agent.config.resources.values()):
        return
    agent.warned_drivers.add(name)
    log.warning("resil: %s is imported, and resil does not route or switch it: its "
                "connections go to the address the application gives, and during a switch "
                "or failover they fail as they would without resil. PyMySQL, aiomysql, "
                "asyncmy and mysqlclient are routed; see docs/integrations.md",
                UNROUTED_DRIVERS[module.__name__])


def _guarded_warn_unrouted(module: Any) -> None:
    """:func:`_warn_unrouted` as an import hook: it runs inside the application's
    ``import``, so a fault of its own is counted, never raised there."""
    fail_open("agent.unrouted_driver", _warn_unrouted, module)


PARENT_ENV = "_RESIL_PARENT_AGENT"
"""Set by every agent to its id, for the processes it starts: a new interpreter whose
parent process is that agent is one of its instance's workers (uvicorn ``--workers`` and
multiprocessing spawn them rather than fork)."""


def mark_children(agent_id: str | None) -> None:
    """Set :data:`PARENT_ENV` to ``agent_id`` (None: remove it) for the processes this
    one starts, in the C environment only (``os.putenv``), which a spawned worker
    inherits (multiprocessing passes no environment of its own). Kept out of
    ``os.environ``: some libraries read it whole on every call. requests walks it four
    times per request (proxy settings), and one more variable cost each call about
    27,000 instructions, as much as everything else resil adds to an unrouted call
    (measured with ``benchmarks/instructions.py``). The value this process inherited
    was read at start (:func:`_spawning_agent`) and is removed from ``os.environ`` too.
    """
    os.environ.pop(PARENT_ENV, None)
    if agent_id is None:
        os.unsetenv(PARENT_ENV)
    else:
        os.putenv(PARENT_ENV, agent_id)


def _spawning_agent() -> str | None:
    """The id of the agent whose process spawned this one as a multiprocessing worker
    (uvicorn ``--workers``, a spawn-context pool): that agent's admin endpoint serves
    the instance, and this one reports to it as a forked worker would. None otherwise:
    any other program an agent's process starts is an instance of its own."""
    if "--multiprocessing-fork" not in getattr(sys, "orig_argv", ()):
        return None
    value = os.environ.get(PARENT_ENV, "")
    host, _, pid = value.rpartition(":")
    if host == gethostname() and pid.isdigit() and int(pid) == os.getppid():
        return value
    return None


_FORK_LOCK = threading.Lock()
_threads_warned = False


def _warn_if_threads_off() -> None:
    """Under uWSGI without Python threads (``--enable-threads`` off, on versions where
    that is not the default) the watch and the heartbeat run only while a request does:
    switches are seen late and the switch's drain waits on this process. Said once."""
    global _threads_warned
    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is None or _threads_warned or getattr(uwsgi, "has_threads", True):
        return
    _threads_warned = True
    log.warning("resil: uWSGI runs without Python threads: the agent's watch and heartbeat "
                "cannot run between requests, so this worker sees a switch late and a "
                "planned switch waits on it; start uWSGI with --enable-threads")


def _after_fork() -> None:
    current = _agent
    if current is not None:
        current._after_fork_in_child()


def start(config: Config | str | os.PathLike[str] | None = None) -> Agent | None:
    """Start the agent in this process (idempotent); return it, or None when disabled.

    ``config`` is a :class:`Config`, a path, or None for ``RESIL_CONFIG`` /
    ``./resil.toml``. Raises :class:`~resil.errors.ConfigError` for a bad configuration.
    """
    global _fork_hook_registered
    from ._entry import disabled
    current = _agent
    if current is not None:
        return current
    if disabled():
        return None
    cfg = config if isinstance(config, Config) else load_config(config)
    if cfg.disabled:
        return None
    _deps.require_for_agent(cfg)
    _log.configure(cfg.log_level, cfg.log_format)
    agent = Agent(cfg)
    _set(agent)
    agent.start()
    if not _fork_hook_registered:
        os.register_at_fork(after_in_child=_after_fork)
        _fork_hook_registered = True
    log.info("resil: agent started in unit %s at epoch %d", cfg.unit, agent.state.epoch)
    return agent


def stop() -> None:
    """Stop the agent and remove its patches (idempotent)."""
    current = _agent
    _set(None)
    if current is not None:
        current.stop()


def running() -> Agent | None:
    """The agent running in this process, if any."""
    return _agent


def _set(agent: Agent | None) -> None:
    global _agent
    _agent = agent
    registry.set_runtime(agent, stop)
