"""``resil monitor``: detect a dead primary and fail over to the most advanced replica.

Every ``interval`` the monitor probes the current primary of each mysql/redis resource
(a fresh admin connection and a trivial command, bounded by ``timeout``). A primary is
declared dead only when

1. it failed ``failures`` probes in a row, **and**
2. every replica the monitor can reach has lost it too (MySQL: the replica's IO thread
   is not running; Redis: ``master_link_status:down``) — so a monitor cut off from a
   primary that its replicas still see does not fail over.

Then the monitor that holds the lease ``monitor`` in the control plane (several may run;
only one acts) fails over: it locks the resource (agents hold new writes), promotes the
replica with the most data (GTID / replication offset) after it applied what it had
received, fences the old primary if it answers, and publishes the new primary with the
next epoch. A resource that failed over is not failed over again for ``anti_flap``
seconds. Old primaries that come back writable are fenced. Every decision is logged with
its evidence.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..config import Config
from ..control import ControlPlane, live_agents
from ..errors import ControlPlaneError, ResilError, SignalError
from ..state import ControlState, Lock, issuer
from ..topology import Endpoint, Resource
from . import locks, truth
from .rejoin import Rejoin
from .servers import Credentials, Server, open_server

log = logging.getLogger("resil.monitor")
LEASE = "monitor"
REPEAT_AFTER = 30.0
"""Seconds before the monitor repeats the same word about an orphaned lock."""
REJOIN_RETRY = 60.0
"""Seconds before ``auto_rejoin`` tries again a server it could not rejoin."""
FENCE_BOUND = 0.3
"""Seconds a failover waits for the old primary to answer its fence before publishing
(it was just found dead or frozen; an answer that slow is fenced at the next round)."""
SILENCE_MARGIN = 0.25
"""How much longer than its heartbeat period a replica must have heard nothing from its
source for this monitor to count it as having lost the source."""
SEMI_SYNC_MARGIN = 3.0
"""Seconds a failover takes after detection, at worst (promote, fence, publish): the
semi-sync timeout should outlast detection plus this."""
SEMI_SYNC_RETRY_MAX = 60.0
"""The longest wait, in seconds, before the semi-sync check of a primary that did not
answer it (down, slow, or no admin account) is tried again; the wait doubles from 0.5 s."""


@dataclass
class MonitorOptions:
    """Detection and failover settings (flags of ``resil monitor``)."""

    interval: float = 0.5
    """Seconds between probes."""
    failures: int = 3
    """Consecutive failed probes before a primary is suspected."""
    timeout: float = 1.0
    """Bound of one probe (connect and command)."""
    anti_flap: float = 60.0
    """No second automatic failover of a resource within this many seconds."""
    lease_ttl: float = 3.0
    """How long the acting monitor's lease lasts without renewal."""
    apply_timeout: float = 5.0
    """Longest wait for the chosen replica to apply what it had received."""

    @property
    def detection_time(self) -> float:
        """Worst-case time from a crash to the decision (without replica confirmation)."""
        return self.failures * (self.interval + self.timeout)


def semi_sync_warning(timeout_ms: int | None, endpoint: Endpoint, needed: float,
                      whose: str = "a default `resil monitor`'s") -> str | None:
    """Why a semi-sync primary's ``rpl_semi_sync_master_timeout`` is too short, or None.

    A primary whose replica does not acknowledge within that timeout falls back to
    asynchronous replication and acknowledges writes that only it has. Cut off from its
    replica for longer (a partition, a frozen replica, the seconds before a monitor
    decides), it can die with them: lost. ``needed`` is the detection and failover time
    (with :data:`SEMI_SYNC_MARGIN`) of the monitor meant by ``whose``."""
    if timeout_ms is None or timeout_ms >= needed * 1000:
        return None
    return (f"rpl_semi_sync_master_timeout = {timeout_ms} ms on {endpoint} is shorter than "
            f"{whose} worst-case detection and failover (about {needed:.1f} s): a primary "
            "cut off from its replica that long falls back to asynchronous replication, "
            "and writes it then acknowledges are lost if it dies. Raise it above "
            f"{needed * 1000:.0f} ms")


class _OldPrimary:
    """The old primary's fence in a failover. Its connection is attempted at once, in a
    thread, bounded tighter than a probe (a frozen old primary, whose kernel still
    accepts connections, must not delay the publish while every write is held), so
    that it overlaps the promote; the fence itself is done only after the promote
    succeeded (a failover that aborts leaves the old primary as it was). If it cannot
    be fenced now, :meth:`Monitor._fence_stale` fences it the moment it answers."""

    def __init__(self, monitor: Monitor, resource: Resource, old: Endpoint) -> None:
        self.monitor, self.resource, self.old = monitor, resource, old
        self.bound = min(monitor.options.timeout, FENCE_BOUND)
        self.server: Server | None = None
        self.error: ResilError | None = None
        self.thread = threading.Thread(target=self._connect, name="resil-fence", daemon=True)
        self.thread.start()

    def _connect(self) -> None:
        try:
            self.server = open_server(self.resource, self.old, Credentials.of(self.resource),
                                      timeout=self.bound, read_timeout=self.bound)
        except ResilError as exc:
            self.error = exc

    def fence(self) -> None:
        """Fence the old primary if its connection was made; say what happened."""
        name, old = self.resource.name, self.old
        self.thread.join(self.bound + 1)
        server = self.server
        if server is None:
            self.monitor.say(f"{name}: old primary {old} unreachable: it will be fenced "
                             "when it answers again")
            return
        try:
            cut = server.fence_for_good()
            self.monitor.say(f"{name}: old primary {old} fenced, {cut} client(s) cut")
        except Exception as exc:
            self.monitor.say(f"{name}: could not fence old primary {old}: {exc!r}")
        finally:
            server.close()

    def abandon(self) -> None:
        """The failover did not promote: close the connection, fence nothing."""
        self.thread.join(self.bound + 1)
        if self.server is not None:
            self.server.close()


@dataclass
class _Health:
    failures: int = 0
    since: float = 0.0


@dataclass
class Monitor:
    """One monitor process. :meth:`run` loops until ``stop`` is set."""

    config: Config
    plane: ControlPlane
    options: MonitorOptions = field(default_factory=MonitorOptions)
    out: Callable[[str], None] = print
    holder: str = field(default_factory=issuer)
    clock: Callable[[], float] = time.monotonic
    _health: dict[str, _Health] = field(default_factory=dict)
    _leader: bool | None = None     # unknown until the first tick, which says which
    _said: dict[str, float] = field(default_factory=dict)     # see _say_unrepeated
    _distrust: str = ""             # the last reason the stored state was not trusted
    _lock_said: dict[str, str] = field(default_factory=dict)
    _rejoining: dict[str, threading.Thread] = field(default_factory=dict)
    _rejoin_tried: dict[str, float] = field(default_factory=dict)
    #: (resource, replica) → what the replica had last heard from its source, and since
    #: when (this monitor's clock): sampled at every failed probe of the primary.
    _heard: dict[tuple[str, Endpoint], tuple[object, float]] = field(default_factory=dict)
    #: resource → the primary whose semi-sync timeout was read (see _check_semi_sync)
    _semi_sync_checked: dict[str, Endpoint] = field(default_factory=dict)
    #: (resource, primary) → when to try a failed semi-sync check again, and the backoff
    _semi_sync_retry: dict[tuple[str, Endpoint], tuple[float, float]] = \
        field(default_factory=dict)

    def run(self, stop: threading.Event) -> None:
        """Probe, decide and act until ``stop`` is set; release the lease at the end."""
        self.say(f"monitoring {', '.join(self._resources())} every {self.options.interval} s "
                 f"(dead after {self.options.failures} failed probes of "
                 f"{self.options.timeout} s, confirmed by the replicas; worst-case "
                 f"detection {self.options.detection_time:.1f} s)")
        self._check_semi_sync()
        try:
            while not stop.is_set():
                self.tick()
                stop.wait(self.options.interval)
        finally:
            if self._leader:
                self.plane.release(LEASE, self.holder)

    def _check_semi_sync(self) -> None:
        """Say when a MySQL primary's semi-sync timeout is shorter than a failover takes.

        A primary whose replica does not acknowledge within ``rpl_semi_sync_master_timeout``
        falls back to asynchronous replication and acknowledges writes that only it has.
        Cut off from its replica for longer than that (a partition, a frozen replica,
        the seconds before this monitor decides), it can die with them: lost.

        A primary that does not answer now (down, or slow on a loaded machine) is checked
        again after the first probe it answers (:meth:`_semi_sync_once`), and so is every
        new primary after a switch or a failover."""
        state = self._trusted()
        for name in self._resources():
            resource = self.config.resources[name]
            endpoint = resource.endpoint_in((state.primary_unit(resource) if state else None)
                                            or "")
            if endpoint is not None:
                self._semi_sync_once(resource, endpoint)

    def _semi_sync_once(self, resource: Resource, primary: Endpoint) -> None:
        """The semi-sync check of :meth:`_check_semi_sync` for one primary, unless it was
        already made for this endpoint; a server that does not answer is left for later."""
        if resource.kind != "mysql" or self._semi_sync_checked.get(resource.name) == primary:
            return
        due, wait = self._semi_sync_retry.get((resource.name, primary), (0.0, 0.25))
        if self.clock() < due:
            return
        needed = self.options.detection_time + SEMI_SYNC_MARGIN
        try:
            server = open_server(resource, primary, Credentials.of(resource),
                                 timeout=self.options.timeout,
                                 read_timeout=self.options.timeout * 2)
            try:
                timeout_ms = server.semi_sync_timeout_ms()
            finally:
                server.close()
        except Exception:       # unreachable or no admin account: tried again later,
            wait = min(wait * 2, SEMI_SYNC_RETRY_MAX)           # less and less often
            self._semi_sync_retry[(resource.name, primary)] = (self.clock() + wait, wait)
            return
        self._semi_sync_checked[resource.name] = primary
        warning = semi_sync_warning(timeout_ms, primary, needed, "this monitor's")
        if warning:
            self.say(f"{resource.name}: WARNING {warning}")

    def tick(self) -> None:
        """One round: renew the lease, probe every resource, act if leader."""
        try:
            leader = self.plane.lease(LEASE, self.holder, self.options.lease_ttl)
        except ControlPlaneError as exc:
            self.say(f"control plane unreachable ({exc}): not acting")
            leader = False
        if leader != self._leader:
            self.say("holding the lease: this monitor acts" if leader else
                     "lease held by another monitor: observing only")
            self._leader = leader
        state = self._trusted()
        if state is None:
            return
        if state.locks and self._leader and locks.resolve_orphans(
                self.config, self.plane, self.holder, state, self._say_unrepeated):
            state = self._trusted()     # a dead holder's lock was resolved: read again
            if state is None:
                return
        for name in self._resources():
            try:
                self._check(self.config.resources[name], state)
            except ResilError as exc:
                self.say(f"{name}: {exc}")

    def _trusted(self) -> ControlState | None:
        """The control state to act on this round, or None to act on nothing.

        A stored state that is unreadable, missing while agents applied one, or older
        than what they applied is never acted on: the lease holder rebuilds it from the
        servers (:func:`~.truth.reconcile`); the others wait for it to.
        """
        try:
            stored = truth.read(self.config, self.plane)
        except ControlPlaneError as exc:
            self.say(f"cannot read control state: {exc}")
            return None
        if stored.trusted:
            self._distrust = ""
            return stored.state
        if stored.problem != self._distrust:    # said once, not every round
            self._distrust = stored.problem
            self.say(f"WARNING: {stored.problem}")
        if not self._leader:
            return None
        return self._reconcile(stored)

    def _reconcile(self, stored: truth.Stored) -> ControlState | None:
        try:
            return truth.reconcile(self.config, self.plane, self.holder, stored,
                                   self.say).state
        except (ResilError, SignalError) as exc:
            self.say(f"not acting this round: {exc}")
            return None

    def say(self, message: str) -> None:
        """Log and print one decision or observation."""
        log.info("resil monitor: %s", message)
        self.out(f"{time.strftime('%H:%M:%S')} {message}")

    def _say_unrepeated(self, message: str) -> None:
        """:meth:`say`, but a message said in the last :data:`REPEAT_AFTER` seconds is
        not said again: an orphaned lock the servers cannot resolve is looked at every
        round, and one line per round would bury the rest of the log."""
        now = self.clock()
        self._said = {m: t for m, t in self._said.items() if now - t < REPEAT_AFTER}
        if message not in self._said:
            self._said[message] = now
            self.say(message)

    # ------------------------------------------------------------------ detection

    def _resources(self) -> list[str]:
        return [n for n, r in self.config.resources.items() if r.kind in ("mysql", "redis")]

    def _check(self, resource: Resource, state: ControlState) -> None:
        unit = state.primary_unit(resource) or ""
        primary = resource.endpoint_in(unit)
        if primary is None:
            return
        lock = state.locks.get(resource.name)
        if lock is not None:
            said = f"{lock.holder}:{lock.since}"
            if self._lock_said.get(resource.name) != said:   # once per lock, not per round
                self._lock_said[resource.name] = said
                self.say(f"{resource.name}: locked by {lock.holder} ({lock.reason}); its "
                         "holder's lease is alive: not probing until it is released")
            return
        health = self._health.setdefault(resource.name, _Health())
        error = self._probe(resource, primary)
        if error is None:
            self._forget_heard(resource.name)
            if health.failures:
                self.say(f"{resource.name}: primary {primary} answers again after "
                         f"{health.failures} failed probe(s)")
            health.failures = 0
            self._semi_sync_once(resource, primary)
            if self._leader:
                alone = self._fence_stale(resource, primary, state)
                if alone:
                    self._auto_rejoin(resource, alone)
            return
        health.failures += 1
        if health.failures == 1:
            health.since = self.clock()
        self.say(f"{resource.name}: probe {health.failures}/{self.options.failures} of primary "
                 f"{primary} failed: {error}")
        replicas = self._replica_views(resource, primary)
        if health.failures < self.options.failures and not self._witnessed(resource, primary) \
                and not self._silent(resource, health.failures, replicas):
            return
        if not replicas:
            self.say(f"{resource.name}: no replica reachable: cannot confirm, no failover")
            return
        still_see = [ep for ep, lost in replicas.items() if not lost]
        if still_see:
            self.say(f"{resource.name}: replica(s) {', '.join(map(str, still_see))} still "
                     f"replicate from {primary}: this monitor is cut off, no failover")
            return
        if not self._leader:
            self.say(f"{resource.name}: primary {primary} is dead (replicas agree); the lease "
                     "holder acts")
            return
        self._failover(resource, state, primary, list(replicas))
        health.failures = 0

    def _witnessed(self, resource: Resource, primary: Endpoint) -> bool:
        """Whether the agents confirm this monitor's failed probe: agents in two or more
        units, or a majority of the live agents, report in their heartbeats that they
        cannot connect to ``primary``. Then one failed probe is enough; the replicas
        must still agree before anything is done. Read only after a failed probe: a
        healthy round costs the control plane nothing."""
        try:
            agents = live_agents(self.plane, self.config.heartbeat_interval)
        except ResilError:
            return False
        witnesses = [a for a in agents if str(dict(dict(a.get("unreachable") or {}).get(
            resource.name) or {}).get("endpoint")) == str(primary)]
        units = sorted({str(a.get("unit")) for a in witnesses})
        if len(units) < 2 and 2 * len(witnesses) <= len(agents):
            return False
        self._say_unrepeated(
            f"{resource.name}: {len(witnesses)} of {len(agents)} live agent(s), in unit(s) "
            f"{', '.join(units)}, cannot connect to {primary} either: one failed probe is "
            "enough (the replicas must still agree)")
        return True

    def _probe(self, resource: Resource, endpoint: Endpoint) -> str | None:
        try:
            server = open_server(resource, endpoint, Credentials.of(resource),
                                 timeout=self.options.timeout,
                                 read_timeout=self.options.timeout)
        except ResilError as exc:
            return str(exc).split(": ", 1)[-1]
        try:
            server.position()
            return None
        except Exception as exc:
            return repr(exc)
        finally:
            server.close()

    def _others(self, resource: Resource, primary: Endpoint,
                read_factor: float) -> Iterator[tuple[Endpoint, Server]]:
        """Admin handles on the reachable endpoints other than ``primary`` (closed after)."""
        for unit in resource.units:
            endpoint = resource.endpoint_in(unit)
            if endpoint is None or endpoint == primary:
                continue
            try:
                server = open_server(resource, endpoint, Credentials.of(resource),
                                     timeout=self.options.timeout,
                                     read_timeout=self.options.timeout * read_factor)
            except ResilError:
                continue
            try:
                yield endpoint, server
            finally:
                server.close()

    def _replica_views(self, resource: Resource, primary: Endpoint) -> dict[Endpoint, bool]:
        """Each reachable replica: True when it has lost the primary too (its replication
        stopped, or it has heard nothing from it for longer than its heartbeat period
        and :data:`SILENCE_MARGIN`, as this monitor's samples show)."""
        views: dict[Endpoint, bool] = {}
        now = self.clock()
        for endpoint, server in self._others(resource, primary, 3):
            try:
                status = server.replication()
            except Exception:
                continue
            lost = status["role"] != "replica" or not status["running"]
            views[endpoint] = lost or self._heard_nothing(resource.name, endpoint, status, now)
        return views

    def _heard_nothing(self, name: str, endpoint: Endpoint, status: dict[str, object],
                       now: float) -> bool:
        """Whether ``status`` says the same as this replica's sample at least its
        heartbeat period (plus :data:`SILENCE_MARGIN`) ago: its source sent nothing, not
        even a heartbeat, in that time. Only where the server reports what it heard."""
        heard, period = status.get("heard"), status.get("heartbeat_period")
        if heard is None or not isinstance(period, float) or period <= 0:
            return False
        key = (name, endpoint)
        before = self._heard.get(key)
        if before is None or before[0] != heard:
            self._heard[key] = (heard, now)
            return False
        return now - before[1] >= period + SILENCE_MARGIN

    def _silent(self, resource: Resource, failures: int,
                replicas: dict[Endpoint, bool]) -> bool:
        """Whether every reachable replica confirms a second failed probe by having heard
        nothing from the primary (a second vantage point, as the agents' reports are):
        a frozen primary is then acted on before the replicas' own timeouts."""
        if failures < 2 or not replicas or not all(replicas.values()):
            return False
        self._say_unrepeated(f"{resource.name}: every reachable replica has heard nothing "
                             "from the primary either: two failed probes are enough")
        return True

    def _forget_heard(self, name: str) -> None:
        for key in [k for k in self._heard if k[0] == name]:
            del self._heard[key]

    # ------------------------------------------------------------------ failover

    def _failover(self, resource: Resource, state: ControlState, old: Endpoint,
                  candidates: list[Endpoint]) -> None:
        name = resource.name
        if not self.plane.lease(f"failover:{name}", self.holder, self.options.anti_flap):
            self.say(f"{name}: failed over less than {self.options.anti_flap:g} s ago: "
                     "refusing another automatic failover (anti-flap)")
            return
        lease = locks.HolderLease(self.plane, name, self.holder)
        try:
            lease.take()
        except ResilError as exc:
            self.say(f"{name}: not failing over: {exc}")
            return
        try:
            self._locked_failover(resource, state, old, candidates, lease)
        finally:
            lease.release()

    def _locked_failover(self, resource: Resource, state: ControlState, old: Endpoint,
                         candidates: list[Endpoint], lease: locks.HolderLease) -> None:
        name = resource.name
        started = self.clock()
        lease.reached("lock")
        detected = started - self._health[name].since
        lock = Lock(self.holder, time.time(), f"failover from {old.unit}")
        locked = self.plane.publish(state.evolve(locks={**state.locks, name: lock}),
                                    issuer=self.holder)
        self.say(f"{name}: FAILOVER from {old} (unit {old.unit}): first failed probe "
                 f"{detected:.2f} s ago; locked at epoch {locked.epoch}, writes held")
        credentials = Credentials.of(resource)
        servers: dict[Endpoint, Server] = {}
        fence = _OldPrimary(self, resource, old)     # reached while the replica promotes
        try:
            for endpoint in candidates:
                try:
                    servers[endpoint] = open_server(resource, endpoint, credentials,
                                                    timeout=self.options.timeout)
                except ResilError as exc:
                    self.say(f"{name}: candidate {endpoint} unreachable: {exc}")
            if not servers:
                raise ResilError("no candidate replica reachable")
            ranked = sorted(servers.items(), key=lambda kv: kv[1].progress(), reverse=True)
            chosen_ep, chosen = ranked[0]
            self.say(f"{name}: promoting {chosen_ep} (unit {chosen_ep.unit}); progress "
                     + ", ".join(f"{ep.unit}={srv.progress()}" for ep, srv in ranked))
            if not chosen.apply_received(self.options.apply_timeout):
                self.say(f"{name}: {chosen_ep} did not apply its relay log within "
                         f"{self.options.apply_timeout} s; promoting anyway")
            lease.reached("promote")
            chosen.promote()
            lease.reached("repoint")
            for _endpoint, server in ranked[1:]:
                self._repoint(name, server, chosen_ep, credentials)
        except Exception as exc:
            unlock = self.plane.load()
            current = unlock.state if unlock else state
            locks = {k: v for k, v in current.locks.items() if k != name}
            self.plane.publish(current.evolve(locks=locks), issuer=self.holder)
            self.plane.release(f"failover:{name}", self.holder)
            self.say(f"{name}: failover aborted, unlocked: {exc}")
            fence.abandon()
            return
        finally:
            for server in servers.values():
                server.close()
        lease.reached("fence")
        fence.fence()
        lease.reached("publish")
        current_signal = self.plane.load()
        current = current_signal.state if current_signal else state
        locks = {k: v for k, v in current.locks.items() if k != name}
        epoch = self.plane.publish(current.evolve(
            primaries={**current.primaries, name: chosen_ep.unit}, locks=locks),
            issuer=self.holder).epoch
        self.say(f"{name}: new primary {chosen_ep} (unit {chosen_ep.unit}) published at epoch "
                 f"{epoch}; failover took {self.clock() - started:.2f} s after detection, "
                 f"{self.clock() - self._health[name].since:.2f} s after the first failed "
                 "probe")

    def _repoint(self, name: str, server: Server, primary: Endpoint,
                 credentials: Credentials) -> None:
        try:
            server.replicate_from(primary, credentials)
            self.say(f"{name}: {server.endpoint} now replicates from {primary}")
        except Exception as exc:
            self.say(f"{name}: could not re-point {server.endpoint}: {exc}")

    def _unchanged(self, resource: Resource, state: ControlState) -> bool:
        """Whether the control state is still ``state`` for ``resource`` (no newer epoch,
        no lock): read again, right before an irreversible fence."""
        signal = self.plane.load()
        current = signal.state if signal else ControlState.initial(self.config.topology)
        return current.epoch == state.epoch and resource.name not in current.locks

    def _auto_rejoin(self, resource: Resource, alone: list[Endpoint]) -> None:
        """``auto_rejoin``: an endpoint that is a fenced primary of its own (the old
        primary after a failover, fenced when it answered again) is rejoined as `resil
        db rejoin` does it, in a thread of its own (it may wait up to 10 s for the
        replica to catch up: the other resources' probes must not). A refusal is said,
        and tried again only after :data:`REJOIN_RETRY` seconds."""
        running = self._rejoining.get(resource.name)
        if running is not None and running.is_alive():
            return
        now = self.clock()
        due = [ep for ep in alone if now - self._rejoin_tried.get(str(ep), -REJOIN_RETRY)
               >= REJOIN_RETRY]
        if not due:
            return
        endpoint = due[0]
        self._rejoin_tried[str(endpoint)] = now
        thread = threading.Thread(target=self._rejoin, args=(resource, endpoint),
                                  name=f"resil-rejoin-{resource.name}", daemon=True)
        self._rejoining[resource.name] = thread
        thread.start()

    def _rejoin(self, resource: Resource, endpoint: Endpoint) -> None:
        name = resource.name
        self.say(f"{name}: {endpoint} (unit {endpoint.unit}) is fenced and alone: rejoining "
                 "it (auto_rejoin)")
        try:
            done = Rejoin(self.config, self.plane, name, endpoint.unit,
                          out=lambda line: self.say(f"{name}: rejoin: {line}")).run()
            self.say(f"{name}: {done}")
            self._rejoin_tried.pop(str(endpoint), None)
        except ResilError as exc:
            self.say(f"{name}: auto_rejoin of {endpoint} (unit {endpoint.unit}) refused: "
                     f"{exc}; tried again in {REJOIN_RETRY:g} s")
        except Exception as exc:
            self.say(f"{name}: auto_rejoin of {endpoint} failed: {exc!r}; tried again in "
                     f"{REJOIN_RETRY:g} s")

    def _fence_stale(self, resource: Resource, primary: Endpoint,
                     state: ControlState) -> list[Endpoint]:
        """Any other endpoint that accepts writes while ``primary`` does too is a stale
        primary: fence it. Returns, for ``auto_rejoin``, the other endpoints that are
        fenced primaries of their own (replicating from nothing), seen in the same pass.

        The servers are the truth. If the control state's primary is itself read-only
        (a replica, or fenced), the writable endpoint is the real primary and the
        control state is what is stale — lost, rolled back, or replayed: it is never
        fenced, since that would leave no writable server at all. Nor is anything fenced
        when the control state moved on since ``state`` was read: a planned switch locks
        the resource before it promotes, so an endpoint promoted by a switch is never
        mistaken for a stale one.
        """
        alone: list[Endpoint] = []
        for endpoint, server in self._others(resource, primary, 4):
            try:
                if server.writable():
                    if not self._writable(resource, primary):
                        self._stale_state(resource, primary, endpoint, state)
                        return []
                    if not self._unchanged(resource, state):
                        return []   # a switch or failover is under way: look next round
                    cut = server.fence_for_good()
                    self.say(f"{resource.name}: {endpoint} came back writable while "
                             f"{primary} is the primary: fenced, {cut} client(s) cut; make "
                             f"it a replica again: `resil db rejoin {resource.name} "
                             f"{endpoint.unit}`")
                if resource.auto_rejoin and server.replication()["role"] == "primary":
                    alone.append(endpoint)      # fenced, and a replica of nothing
            except Exception as exc:
                self.say(f"{resource.name}: could not check {endpoint}: {exc!r}")
        return alone

    def _writable(self, resource: Resource, endpoint: Endpoint) -> bool:
        """Whether ``endpoint`` accepts writes now (False when it cannot be asked)."""
        try:
            server = open_server(resource, endpoint, Credentials.of(resource),
                                 timeout=self.options.timeout,
                                 read_timeout=self.options.timeout * 4)
        except ResilError:
            return False
        try:
            return server.writable()
        finally:
            server.close()

    def _stale_state(self, resource: Resource, primary: Endpoint, real: Endpoint,
                     state: ControlState) -> None:
        """The control state names a read-only primary while ``real`` is writable: the
        state is what is wrong. Rebuild it from the servers rather than fence — unless the
        state moved on meanwhile (a switch locks before it fences and promotes)."""
        if not self._unchanged(resource, state):
            return
        self.say(f"{resource.name}: the control state (epoch {state.epoch}) names {primary} "
                 f"as the primary, but {primary} is read-only and {real} accepts writes: "
                 f"the control state is stale (lost, rolled back or replayed?). NOT fencing "
                 f"{real}, the only writable server; reconciling from the servers")
        try:
            stored = truth.read(self.config, self.plane)
        except ControlPlaneError as exc:
            self.say(f"cannot read control state: {exc}")
            return
        self._reconcile(stored)
