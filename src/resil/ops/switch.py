"""The planned switch: move a resource's primary to another unit with no lost write.

precheck → converge → spares → lock → drain → fence → catch-up → promote → reverse →
publish → verify

- **converge** waits, writes still flowing, until the target is within ``max_catchup``
  of the primary (:mod:`.converge`), or refuses, nothing locked, past
  ``converge_timeout``: the catch-up under the lock takes milliseconds, not the lag.
- **spares** publishes the switch's intent (:class:`~resil.state.Intent`): every agent
  opens spare connections to the target while writes still flow, and the switch waits
  (at most ``spares_timeout``) until they say so. The writes the lock holds then take
  those at the publish, rather than all connecting at once then.
- **lock** publishes a control state that locks the resource: every agent holds new
  writes (they wait; they do not fail) from the moment it applies that epoch.
- **drain** waits, bounded, until the agents report no open transaction on it.
- **fence** stops the old primary accepting writes (MySQL ``read_only`` and the client
  connections killed; Redis ``CLIENT PAUSE WRITE``), so nothing lands there afterwards.
- **catch-up** waits until the target has applied everything the old primary wrote.
- **promote** makes the target writable; **reverse** makes the old primary its replica.
- **publish** names the new primary and drops the lock in one signal: held writes go.
- **verify** writes a probe through the new primary and checks agents applied the epoch.

A failure before promote rolls back (unfence, unlock) and raises :class:`SwitchError`;
the old primary keeps serving. ``dry_run`` runs the precheck only.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import spans
from ..clock import Clock
from ..config import Config
from ..control import ControlPlane
from ..errors import ResilError, SignalError, SwitchError, SwitchInterrupted
from ..state import SWITCH_REASON, ControlState, Intent, Lock, issuer
from ..telemetry import otel
from ..topology import Endpoint, Resource
from . import locks, truth
from .converge import converge
from .fleet import Pending
from .servers import Credentials, Server, database_resource, open_server, same_address

POLL_FAST, POLL_FAST_FOR, POLL_SLOW = 0.002, 0.2, 0.01
"""How often a wait under the lock (the drain; the agents applying an epoch) asks the
control plane: every 2 ms for its first 200 ms, then every 10 ms. Writes are held
while the drain waits, and a drain ends within tens of milliseconds: at 10 ms, it
overran by 5 ms on average. A look costs tens of microseconds (a folder listed, or one
Redis command)."""


def _poll_wait(waited: float) -> float:
    return POLL_FAST if waited < POLL_FAST_FOR else POLL_SLOW


@dataclass
class Step:
    """One finished step of a switch."""

    name: str
    seconds: float
    detail: str


INTENT_MARGIN = 5.0
"""Seconds an intent stands past ``spares_timeout``: time for the lock to follow it."""
MARGIN = 1.0
"""Seconds kept, within the agents' ``lock_timeout``, for promote, reverse and publish (or
a rollback) after the drain and the catch-up have used theirs."""
PAUSABLE_STEPS = ("lock", "drain", "fence", "catch-up", "promote", "reverse")
"""The steps of the locked part, after which ``--pause-after`` may stop."""


@dataclass
class SwitchOptions:
    """Bounds of a switch (command-line flags of ``resil db switch``)."""

    max_lag: float = 5.0
    """Refuse to start when the target is further behind than this (seconds)."""
    drain_timeout: float = 2.0
    """Longest wait for open transactions to finish before fencing."""
    catchup_timeout: float = 1.0
    """Longest wait, under the lock, for the target to apply the old primary's last write
    (short: the target converged before the lock)."""
    converge_timeout: float = 30.0
    """Longest wait, before the lock and with writes flowing, for the target to come
    within ``max_catchup`` of the primary; past it the switch refuses."""
    spares_timeout: float = 1.0
    """Longest wait, before the lock, for the agents to open spare connections to the
    target; past it the switch locks anyway (the held writes of the agents not ready
    then connect at the publish, as without spares)."""
    max_catchup: float = 0.1
    """Converged: what the target still lacks takes at most this long at its apply rate."""
    verify_timeout: float = 2.0
    """Longest wait for live agents to apply the final epoch."""
    reverse: bool = True
    """Make the old primary a replica of the new one."""
    dry_run: bool = False
    pause_after: tuple[str, float] | None = None
    """A rehearsal aid: (step, seconds) to stop for after that step of the locked part,
    so that an operator (or a test) can kill or stop the switch exactly there."""


@dataclass
class Switch:
    """One run of the procedure; :meth:`run` prints and returns the steps."""

    config: Config
    plane: ControlPlane
    resource_name: str
    to_unit: str
    options: SwitchOptions = field(default_factory=SwitchOptions)
    out: Callable[[str], None] = print
    clock: Clock = time.monotonic
    steps: list[Step] = field(default_factory=list)
    holder: str = field(default_factory=lambda: f"{issuer()}/{uuid.uuid4().hex[:8]}")
    """Names this run in its lock: a rollback removes its own lock, never another's."""
    deferred: str = ""
    """A stop signal that arrived while the switch could not stop (promote..publish)."""
    _critical: bool = False
    _lease: locks.HolderLease | None = None
    _locked: ControlState | None = None
    """The control state this switch published with its lock."""
    behind: list[str] = field(default_factory=list)
    """Live agents that had not applied the published epoch when verify gave up: the
    servers switched, but those processes still write to the old primary (held or
    refused), so the command must not report plain success."""

    @property
    def took_lock(self) -> bool:
        """Whether this run published its lock (a stop after that rolls it back)."""
        return self._locked is not None

    def interrupt(self, reason: str) -> None:
        """Stop the switch (called from a signal handler): before promote, raise
        :class:`SwitchInterrupted`, which rolls it back; from promote to publish, when
        the old primary is already a replica and the new one takes writes, stopping
        half-way would leave no primary published: the switch finishes and the reason
        is kept in :attr:`deferred`."""
        if self._critical:
            self.deferred = reason
            self.out(f"{reason} received after promote: finishing the switch first")
            return
        raise SwitchInterrupted(f"interrupted by {reason}")

    def run(self) -> list[Step]:
        """Run the switch; raise :class:`SwitchError` (after rolling back) on failure."""
        resource = self._resource()
        state = self._state()
        old_unit = state.primary_unit(resource)
        if old_unit == self.to_unit:
            raise SwitchError(f"{resource.name}: {self.to_unit} is already the primary")
        old_ep, new_ep = resource.endpoint_in(old_unit or ""), resource.endpoint_in(self.to_unit)
        if old_ep is None or new_ep is None:
            raise SwitchError(f"{resource.name}: no endpoint in unit "
                              f"{self.to_unit if new_ep is None else old_unit}")
        if resource.name in state.locks and locks.resolve_orphans(
                self.config, self.plane, self.holder,
                ControlState(locks={resource.name: state.locks[resource.name]}), self.out):
            raise SwitchError(f"{resource.name}: an interrupted switch's lock was resolved "
                              "(see above); check the primary, then run the switch again")
        if resource.name in state.locks:
            lock = state.locks[resource.name]
            raise SwitchError(f"{resource.name} is locked by {lock.holder} ({lock.reason}), "
                              "whose lease is alive: another switch or failover is under way")
        self._check_budget(resource)
        if "opentelemetry.sdk.trace" in sys.modules:
            otel.install()      # an operator running the SDK sees the steps as spans
        credentials = Credentials.of(resource)
        old = new = None
        try:
            old = open_server(resource, old_ep, credentials)
            new = open_server(resource, new_ep, credentials)
            self._step("precheck", lambda: self._precheck(old, new, old_ep))
            if self.options.dry_run:
                self.out("dry run: prechecks passed, nothing changed")
                return self.steps
            unit = "transactions" if resource.kind == "mysql" else "bytes"
            self._step("converge", lambda: converge(
                old, new, timeout=self.options.converge_timeout,
                max_catchup=self.options.max_catchup, unit=unit, say=self.out,
                clock=self.clock))
            self._switch(resource, old, new, new_ep, credentials)
        except (ResilError, KeyboardInterrupt):
            raise
        except Exception as exc:    # a server's own error (a connection cut by a fence,
            # a refused command): rolled back already; said in one line, not a traceback
            raise SwitchError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            for server in (old, new):
                if server is not None:
                    server.close()
        return self.steps

    # ------------------------------------------------------------------ procedure

    def _switch(self, resource: Resource, old: Server, new: Server, new_ep: Endpoint,
                credentials: Credentials) -> None:
        lease = locks.HolderLease(self.plane, resource.name, self.holder)
        lease.take()        # before the lock: a lock without a live lease is an orphan
        self._lease = lease
        try:
            # The live agents are listed before the lock: not while writes wait.
            ids = self.plane.agent_ids()
            self._step("spares", lambda: self._spares(resource, ids))
            self._locked_switch(resource, old, new, new_ep, credentials, lease, ids)
        finally:
            self._lease = None
            lease.release()

    def _locked_switch(self, resource: Resource, old: Server, new: Server, new_ep: Endpoint,
                       credentials: Credentials, lease: locks.HolderLease,
                       ids: set[str]) -> None:
        fencing = False
        started = self.clock()
        verify: Pending | None = None
        try:
            pending = self._pending(resource.name, "drain", ids)
            verify = self._pending(resource.name, "verify", ids)
            lock_epoch = self._step("lock", lambda: self._lock(resource))
            self._step("drain", lambda: self._drain(pending, lock_epoch))
            hold_for = self.options.catchup_timeout + 30
            self._still_holding(lease, "fence")
            fencing = True      # set before: a stop during the fence still unfences
            self._step("fence", lambda: f"{old.fence(hold_for)} client connections cut",
                       noted=True)
            position = old.position()
            self._step("catch-up", lambda: self._catch_up(new, position))
            semi_sync = old.semi_sync_primary()
            self._still_holding(lease, "promote")
            self._critical = True    # from here on a stop signal waits for publish
        except BaseException as exc:
            self._rollback(resource, old, fencing, exc)
            if verify is not None:
                verify.finish()
            raise
        try:
            self._step("promote", lambda: self._promote(new, new_ep, semi_sync), noted=True)
            self._step("reverse", lambda: self._reverse(old, new_ep, credentials))
            epoch = self._step("publish", lambda: self._publish(resource))
            held = self.clock() - started
        finally:
            self._critical = False
        self._step("verify", lambda: self._verify(verify, new, epoch))
        self.out(f"switched {resource.name} to {self.to_unit}: new writes held at most "
                 f"{held * 1000:.0f} ms (lock to publish); {(self.clock() - started) * 1000:.0f}"
                 " ms with verify")

    def _check_budget(self, resource: Resource) -> None:
        """The longest the lock can last — drain, catch-up, then promote to publish (and
        a rollback) within :data:`MARGIN` — stays below the agents' hold, ``lock_timeout``:
        a switch may never outlast the hold it asks of every writer."""
        pause = self.options.pause_after[1] if self.options.pause_after else 0.0
        budget = self.options.drain_timeout + self.options.catchup_timeout + MARGIN + pause
        if budget >= resource.lock_timeout:
            paused = f" + a {pause:g} s pause (--pause-after)" if pause else ""
            raise SwitchError(
                f"drain {self.options.drain_timeout:g} s + catch-up "
                f"{self.options.catchup_timeout:g} s + {MARGIN:g} s for promote..publish"
                f"{paused} could outlast the agents' hold (resources.{resource.name}."
                f"lock_timeout = {resource.lock_timeout:g} s): held writes would fail. Lower "
                "--drain-timeout/--catchup-timeout, or raise lock_timeout")

    @staticmethod
    def _still_holding(lease: locks.HolderLease, step: str) -> None:
        """Before a destructive step (recorded as the step reached, in the same renewal):
        a holder that lost its lease (paused past its TTL) may already have been resolved
        by someone else, and must not go on."""
        if not lease.alive(step):
            raise SwitchError("the lock's lease lapsed (this process was paused or cut "
                              "off from the control plane): not going on")

    def _step(self, name: str, action: Callable[[], Any], noted: bool = False) -> Any:
        if self._lease is not None and not noted:
            self._lease.reached(name)   # where a killed switch stopped: status, resolver
        begun, begun_ns = self.clock(), spans.now_ns()
        result = action()
        seconds = self.clock() - begun
        spans.span("resil.switch.step", begun_ns, spans.now_ns(), {
            "resil.step": name, "resil.resource": self.resource_name,
            "resil.target.unit": self.to_unit})
        detail = result if isinstance(result, str) else (
            f"epoch {result}" if isinstance(result, int) else "")
        self.steps.append(Step(name, seconds, detail))
        self.out(f"{name:<9} {seconds * 1000:8.1f} ms  {detail}")
        if self.options.pause_after and self.options.pause_after[0] == name:
            self.out(f"pausing {self.options.pause_after[1]:g} s after {name} (--pause-after)")
            time.sleep(self.options.pause_after[1])     # a stop signal interrupts it
        return result

    def _precheck(self, old: Server, new: Server, old_ep: Endpoint) -> str:
        # The servers are the truth: the primary to fence must really be the one that
        # takes writes (the control state may be stale in a way no epoch shows).
        if not old.writable():
            raise SwitchError(f"the control state names {old_ep} as the primary, but it "
                              "does not accept writes: `resil state reconcile` rebuilds the "
                              "control state from the servers")
        status = new.replication()
        if status["role"] != "replica":
            raise SwitchError(f"target {new.endpoint} is not a replica")
        if not status["running"]:
            raise SwitchError(f"target {new.endpoint} is not replicating: "
                              f"{status.get('error') or 'stopped'}")
        if not same_address(status["source"], old_ep):
            raise SwitchError(f"target {new.endpoint} replicates from "
                              f"{status['source'][0]}:{status['source'][1]}, not from the "
                              f"primary {old_ep}")
        lag = status.get("lag")
        if lag is None or lag > self.options.max_lag:
            raise SwitchError(f"target {new.endpoint} lags {lag} s (max {self.options.max_lag})")
        agents = len(self.plane.agent_ids())
        self._warn_semi_sync(old)
        return (f"target {new.endpoint} replicating, lag {lag:g} s; "
                f"{agents} live agent(s)")

    def _warn_semi_sync(self, old: Server) -> None:
        """Say when the primary's semi-sync timeout is shorter than a default monitor
        needs to detect and fail over: the primary the switch promotes takes the role
        with the same timeout (see :meth:`resil.ops.monitor.Monitor._check_semi_sync`)."""
        from .monitor import SEMI_SYNC_MARGIN, MonitorOptions, semi_sync_warning
        warning = semi_sync_warning(old.semi_sync_timeout_ms(), old.endpoint,
                                    MonitorOptions().detection_time + SEMI_SYNC_MARGIN)
        if warning:
            self.out(f"WARNING {warning}")

    def _spares(self, resource: Resource, ids: set[str]) -> str:
        """Publish this switch's intent and wait, at most ``spares_timeout``, for the
        live agents to say that their spare connections to the target are open. Nothing
        is held; the lock that follows ends the intent (and a switch that never locks
        leaves it to lapse: agents close the spares then)."""
        pending = self._pending(resource.name, "spares", ids)
        try:
            state = self._free_state(resource)
            now = time.time()
            intent = Intent(self.holder, self.to_unit,
                            now + self.options.spares_timeout + INTENT_MARGIN)
            intents = {k: v for k, v in state.intents.items() if v.live(now)}
            epoch = self._publish_unlocked(
                state.evolve(intents={**intents, resource.name: intent}))
            self._wait_for(pending, epoch, self.options.spares_timeout)
        finally:
            pending.finish()
        ready = pending.seen - pending.left
        late = f"; {pending.left} not ready in time (their held writes will connect at " \
            "the publish)" if pending.left else ""
        return f"epoch {epoch}: {ready}/{pending.seen} agent(s) opened spare connections " \
            f"to {self.to_unit}{late}"

    def _lock(self, resource: Resource) -> int:
        """Take the write lock: a compare-and-set on the epoch (a publish is refused when
        another landed since this state was read), and never over another's lock."""
        state = self._free_state(resource)
        lock = Lock(self.holder, time.time(), f"{SWITCH_REASON}{self.to_unit}")
        # The lock takes over from the intent: held writes take the spares it opened.
        intents = {k: v for k, v in state.intents.items()
                   if k != resource.name and v.live(lock.since)}
        new = state.evolve(locks={**state.locks, resource.name: lock}, intents=intents)
        epoch = self._publish_unlocked(new)
        self._locked = new
        return epoch

    def _free_state(self, resource: Resource) -> ControlState:
        """The trusted control state, which must not hold a lock on ``resource``."""
        state = self._state()
        if resource.name in state.locks:
            held = state.locks[resource.name]
            raise SwitchError(f"{resource.name} was locked meanwhile by {held.holder} "
                              f"({held.reason}): another switch runs")
        return state

    def _publish_unlocked(self, state: ControlState) -> int:
        """Publish ``state`` while nothing is locked yet: a lost epoch race refuses."""
        try:
            return self.plane.publish(state, issuer=issuer()).epoch
        except SignalError as exc:
            raise SwitchError(f"another operator published at the same moment ({exc}); "
                              "nothing locked") from None

    def _wait_for(self, pending: Pending, epoch: int, timeout: float) -> None:
        """Wait, at most ``timeout``, until every agent ``pending`` waits for is done
        with ``epoch``."""
        started = self.clock()
        deadline = started + timeout
        while not pending.check(epoch, idle=False) and self.clock() <= deadline:
            time.sleep(_poll_wait(self.clock() - started))

    def _pending(self, name: str, kind: str, ids: set[str]) -> Pending:
        return Pending.start(self.plane, name, self.config.heartbeat_interval, kind,
                             self.holder, ids)

    def _drain(self, pending: Pending, lock_epoch: int) -> str:
        started = self.clock()
        deadline = started + self.options.drain_timeout
        try:
            while True:
                if pending.check(lock_epoch, idle=True):
                    return f"{pending.seen} agent(s) holding writes, 0 open transactions"
                if self.clock() > deadline:
                    behind = f" (for example {', '.join(pending.behind[:5])})" \
                        if pending.behind else ""
                    return (f"gave up waiting for {pending.left} agent(s){behind}: "
                            f"{pending.busy or 'their'} open transaction(s) will be "
                            "interrupted")
                time.sleep(_poll_wait(self.clock() - started))
        finally:
            pending.finish()

    def _catch_up(self, new: Server, position: str) -> str:
        if not new.wait_for(position, self.options.catchup_timeout):
            raise SwitchError(f"target {new.endpoint} did not reach {position} within "
                              f"{self.options.catchup_timeout} s")
        return f"target applied {position}"

    def _promote(self, new: Server, new_ep: Endpoint, semi_sync: bool = False) -> str:
        new.promote()
        if semi_sync:       # the durability of the old primary moves with the role
            new.make_semi_sync_primary()
            return f"{new_ep} accepts writes (semi-sync primary, as the old one was)"
        return f"{new_ep} accepts writes"

    def _reverse(self, old: Server, new_ep: Endpoint, credentials: Credentials) -> str:
        reverse = self.options.reverse and (credentials.replication_user
                                           or not old.needs_replication_account)
        try:
            if reverse:
                old.replicate_from(new_ep, credentials)
            cut = old.after_promotion(bool(reverse))
        except Exception as exc:  # past promote there is no way back: report, go on
            return f"WARNING: old primary {old.endpoint} not reversed: {exc}"
        what = f"{old.endpoint} now replicates from {new_ep}" if reverse else \
            f"{old.endpoint} left fenced (no replication)"
        return f"{what}; {cut} client connections cut"

    def _publish(self, resource: Resource) -> int:
        """The new primary, unlocked: built on the state this switch locked (no read
        while writes wait); when another publish landed since, the epoch race refuses
        that, and it is built again on the trusted stored state."""
        if self._locked is not None:
            try:
                return self.plane.publish(self._unlocked(self._locked, resource),
                                          issuer=issuer()).epoch
            except SignalError:
                pass
        return self.plane.publish(self._unlocked(self._state(), resource),
                                  issuer=issuer()).epoch

    def _unlocked(self, state: ControlState, resource: Resource) -> ControlState:
        locks = {k: v for k, v in state.locks.items() if k != resource.name}
        return state.evolve(primaries={**state.primaries, resource.name: self.to_unit},
                            locks=locks)

    def _verify(self, pending: Pending, new: Server, epoch: int) -> str:
        token = f"{epoch}:{uuid.uuid4().hex[:8]}"
        new.probe(token)
        try:
            self._wait_for(pending, epoch, self.options.verify_timeout)
        finally:
            pending.finish()
        self.behind = list(pending.behind)
        more = pending.left - len(self.behind[:10])
        lagging = f"; NOT applied by {', '.join(self.behind[:10])}" \
            f"{f' and {more} more' if more > 0 else ''}" if pending.left else ""
        return f"probe written ({token}); {pending.seen - pending.left}/{pending.seen} " \
            f"agent(s) on epoch {epoch}{lagging}"

    def _rollback(self, resource: Resource, old: Server, fenced: bool,
                  exc: BaseException) -> None:
        reason = str(exc) or type(exc).__name__
        self.out(f"rolling back: {reason}")
        self._critical = True        # a second stop signal must not cut the rollback short
        if self._lease is not None:
            self._lease.reached("rollback")
        try:
            self._undo(resource, old, fenced)
        finally:
            self._critical = False

    def _undo(self, resource: Resource, old: Server, fenced: bool) -> None:
        if fenced:
            try:
                old.unfence()
                self.out(f"  {old.endpoint} accepts writes again")
            except Exception as undo:
                self.out(f"  WARNING: could not unfence {old.endpoint}: {undo}")
        try:
            self._unlock_own(resource)
        except Exception as undo:
            self.out(f"  WARNING: could not unlock {resource.name}: {undo}; "
                     "`resil db unlock` removes the lock")

    def _unlock_own(self, resource: Resource) -> None:
        """Remove this run's lock, if it took one; another's lock is left alone."""
        state = self._state()
        lock = state.locks.get(resource.name)
        if lock is None or lock.holder != self.holder:
            return
        locks = {k: v for k, v in state.locks.items() if k != resource.name}
        epoch = self.plane.publish(state.evolve(locks=locks), issuer=issuer()).epoch
        self.out(f"  unlocked {resource.name} (epoch {epoch}); the primary stays "
                 f"{state.primary_unit(resource)}")

    # ------------------------------------------------------------------ helpers

    def _resource(self) -> Resource:
        return database_resource(self.config, self.resource_name, self.to_unit)

    def _state(self) -> ControlState:
        # Never the configuration's primaries, nor a lost or rolled-back state: see truth.
        return truth.trusted_state(self.config, self.plane, issuer(), self.out)

