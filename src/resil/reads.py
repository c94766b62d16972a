"""Same-unit reads: whether a read may go to the own unit's replica, and how far behind
that replica is.

A mysql resource with ``reads = "local"`` sends provably read-only autocommit statements
to the endpoint of the process's own unit while that endpoint is a replica (the primary
is in another unit) and lags less than ``max_lag``. The drivers decide what a statement
is and carry it there (:mod:`resil.integrations._pymysql_reads`); this module, driver-
neutral, keeps the replica's lag and the outcome counters.

How the lag is known
    A :class:`ReplicaWatch` per resource and process samples, every
    :data:`PROBE_INTERVAL`, the primary's GTID position (``@@gtid_binlog_pos``) and then
    the replica's (``@@gtid_slave_pos``, with ``Slave_running``). The replica has
    everything the primary had at the time of the newest primary sample its position
    covers: its lag is at most the time since that sample (:class:`ReplicaLag`). The
    figure is an upper bound, coarse by one probe interval; a replica that has reached
    an idle primary's position is a few milliseconds behind (the time between the two
    reads). A primary that stops answering adds no samples, so the lag of a replica
    that had everything grows with the time since the last one: reads stay local for
    ``max_lag`` after the primary was last seen, not longer. No replica sample in the
    last :data:`FRESH_FOR` seconds, a replica that does not replicate, or one the
    primary's position never reached in the kept history: the lag is unknown, and reads
    go to the primary.

Why positions and not ``Seconds_Behind_Master``
    It needs a privilege the application's account rarely has, it is whole seconds, and
    a stopped replica reports NULL. Positions are readable by every account, and a
    server that stopped replicating (a demoted old primary, a broken replica) falls
    behind as soon as the primary writes.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from contextvars import ContextVar

from . import _log, counters, registry, spans
from .state import ControlState
from .topology import Endpoint, Resource

log = _log.get("resil.reads")

#: Seconds between two samples of the primary's and the replica's positions.
PROBE_INTERVAL = 0.25
#: Least time between the starts of two samples when reads kick the watch (see
#: :meth:`ReplicaWatch.kick`): at most 50 samples a second per process and resource.
KICK_GAP = 0.02
#: A lag older than this (no successful replica sample since) is unknown: reads go to the
#: primary. Above a probe's timeout plus its interval: a primary that times out every
#: sample still leaves the replica's lag known.
FRESH_FOR = 2.5
#: Longest wait for a probe's connect or statement (seconds).
PROBE_TIMEOUT = 1.0
#: Outcomes of a read of a ``reads = "local"`` resource (the ``outcome`` label).
OUTCOMES = ("local", "fallback_lag", "fallback_wait", "fallback_error", "pinned", "primary")


def parse_gtids(text: str | None) -> dict[int, int]:
    """A GTID position (``"0-1-100,1-2-7"``) as its sequence number per replication
    domain. The server id is left out: within a domain the sequence numbers only grow,
    whichever server wrote them. An unreadable element is skipped."""
    position: dict[int, int] = {}
    for part in (text or "").replace("\n", "").split(","):
        fields = part.strip().split("-")
        if len(fields) != 3:
            continue
        if not all(field.isdigit() for field in fields):
            continue
        domain, seq = int(fields[0]), int(fields[2])
        position[domain] = max(seq, position.get(domain, seq))
    return position


def covers(have: dict[int, int], want: dict[int, int]) -> bool:
    """Whether the position ``have`` includes every transaction of ``want``."""
    return all(have.get(domain, -1) >= seq for domain, seq in want.items())


class ReplicaLag:
    """How far a replica is behind its primary, from positions sampled over time.

    :meth:`primary` records the primary's position and when it was read;
    :meth:`replica` the replica's, read after it. The replica then holds everything the
    primary had at the newest primary sample its position covers."""

    def __init__(self, history: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.history = history
        self._clock = clock
        self._samples: deque[tuple[float, dict[int, int]]] = deque()
        self._lag: float | None = None
        self._at = float("-inf")
        self.covered_at = float("-inf")
        """When the newest primary sample the replica's position covers was taken: the
        replica holds every write that completed before then."""

    def primary(self, position: dict[int, int], at: float) -> None:
        """The primary's position, read at ``at``."""
        self._samples.append((at, position))
        while len(self._samples) > 2 and self._samples[1][0] < at - self.history:
            self._samples.popleft()     # the oldest kept sample is older than history

    def replica(self, position: dict[int, int] | None, at: float) -> None:
        """The replica's position read at ``at`` (after the newest primary sample);
        None: it does not replicate, so its lag is unknown."""
        self._at = at
        self.covered_at = float("-inf")
        if position is None or not self._samples:
            self._lag = None
            return
        for sampled, primary in reversed(self._samples):
            if covers(position, primary):
                self._lag = max(0.0, at - sampled)
                self.covered_at = sampled
                return
        self._lag = float("inf")        # behind everything kept: more than the history

    def failed(self) -> None:
        """A sample could not be taken: the lag is unknown until the next one."""
        self._lag = None
        self.covered_at = float("-inf")

    def lag(self) -> float | None:
        """Seconds the replica is behind at most; None when unknown or not fresh."""
        if self._clock() - self._at > FRESH_FOR:
            return None
        return self._lag


class ReplicaWatch:
    """Samples one resource's primary and own-unit replica in a daemon thread.

    ``probe(primary)`` reads the position of the endpoint ``primary`` (the current
    primary, from the control state); ``probe(None)``, the replica's, or None when it
    does not replicate. Either may raise: the sample fails and the lag is unknown.
    ``state()`` raises LookupError once the agent is gone. The thread starts on first use
    and again in a forked child, and stops when asked, when the agent is gone, or when
    nothing asked for the lag during :data:`IDLE_AFTER` seconds. ``on_down()`` is called
    when a known lag turns unknown (reads in flight on the replica may be cut)."""

    IDLE_AFTER = 60.0

    def __init__(self, resource: Resource, state: Callable[[], ControlState],
                 probe: Callable[[Endpoint | None], dict[int, int] | None],
                 on_down: Callable[[], object] = lambda: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.resource = resource
        self._state = state
        self._probe = probe
        self._on_down = on_down
        self._clock = clock
        self.lag_of = ReplicaLag(max(4 * resource.max_lag, 2.0), clock)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._pid = 0
        self._asked = clock()
        self._healthy = False

    def lag(self) -> float | None:
        """The replica's lag now (see :class:`ReplicaLag`); starts the watch if needed."""
        self._asked = self._clock()
        if self._pid != os.getpid():
            self._start()
        return self.lag_of.lag()

    def holds_writes_before(self, moment: float) -> bool:
        """Whether the replica is known to hold every write that completed by
        ``moment`` (a :func:`time.monotonic` reading): its position covers a primary
        sample taken after it."""
        return self.lag_of.covered_at > moment and self.lag_of.lag() is not None

    def usable(self) -> bool:
        """Whether reads may go to the replica now: its lag is known and below
        ``max_lag``."""
        lag = self.lag()
        return lag is not None and lag < self.resource.max_lag

    def kick(self) -> None:
        """Sample again now rather than at the next interval (at most every
        :data:`KICK_GAP`): a read waits for the replica to be known to hold a write."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._stop = threading.Event()
            self.lag_of = ReplicaLag(self.lag_of.history, self._clock)
            threading.Thread(target=self._run, name=f"resil-reads-{self.resource.name}",
                             daemon=True).start()

    def _run(self) -> None:
        stop = self._stop
        while not stop.is_set():
            if self._clock() - self._asked > self.IDLE_AFTER:
                with self._lock:            # asked again later: started again
                    self._pid = 0
                return
            began = self._clock()
            if not self.sample():
                with self._lock:            # no agent any more
                    self._pid = 0
                return
            self._wake.wait(PROBE_INTERVAL)     # or sooner, when kicked
            self._wake.clear()
            rest = KICK_GAP - (self._clock() - began)
            if rest > 0 and not stop.is_set():
                stop.wait(rest)

    def sample(self) -> bool:
        """Take one sample of both positions (the thread's step; tests call it too);
        False when there is no control state to read (the agent stopped)."""
        try:
            state = self._state()
        except LookupError:
            self.lag_of.failed()
            return False
        try:
            unit = state.primary_unit(self.resource)
            primary = self.resource.endpoint_in(unit) if unit else None
            if primary is None:
                raise LookupError("no primary endpoint")
            at = self._clock()
            try:
                position = self._probe(primary)
            except Exception as exc:
                # A primary that does not answer (dead, frozen, cut off) adds no sample:
                # the replica's lag then grows with the age of the newest one it has,
                # and reads stay local only while that is below max_lag.
                log.debug("resil: %s primary sample failed: %s", self.resource.name, exc)
                position = None
            if position is not None:
                self.lag_of.primary(position, at)
            self.lag_of.replica(self._probe(None), self._clock())
        except Exception as exc:
            self.lag_of.failed()
            log.debug("resil: %s replica sample failed: %s", self.resource.name, exc)
        healthy = self.lag_of.lag() is not None
        if self._healthy and not healthy:
            try:
                self._on_down()
            except Exception as fault:
                counters.record_fault("reads.on_down", fault)
        self._healthy = healthy
        return True


class Writes:
    """The positions written while serving one request, per resource: what reads of a
    ``read_your_writes = "request"`` resource wait for, on any connection."""

    __slots__ = ("positions", "texts", "unsure", "times")

    def __init__(self) -> None:
        self.positions: dict[str, dict[int, int]] = {}
        self.texts: dict[str, dict[int, str]] = {}
        self.unsure: set[str] = set()
        """Resources written to by a statement whose GTID was not reported: the rest of
        the request reads them from the primary."""
        self.times: dict[str, float] = {}
        """redis: when the request's newest write to each resource completed
        (:func:`time.monotonic`)."""

    def note(self, resource: str, gtid: str) -> None:
        """``gtid`` (``domain-server-seq``) was written to ``resource``."""
        for domain, seq in parse_gtids(gtid).items():
            position = self.positions.setdefault(resource, {})
            if seq > position.get(domain, -1):
                position[domain] = seq
                self.texts.setdefault(resource, {})[domain] = gtid.strip()


request_writes: ContextVar[Writes | None] = ContextVar("resil_request_writes", default=None)
"""The writes of the request being served, while a resource reads its own across
connections (set by the WSGI/ASGI wrappers, :func:`request_scope`)."""


def request_scoped(resources: Iterable[Resource]) -> bool:
    """Whether any resource has reads wait for its request's writes."""
    return any(r.reads == "local" and r.read_your_writes == "request" for r in resources)


class Watches:
    """A driver's watches: one per resource of the running agent, made on first use (an
    agent started again with another configuration gets new ones)."""

    def __init__(self) -> None:
        self._found: dict[str, ReplicaWatch] = {}
        self._lock = threading.Lock()

    def get(self, resource: Resource, make: Callable[[], ReplicaWatch]) -> ReplicaWatch:
        """The watch of ``resource``, made by ``make()`` if there is none for it."""
        found = self._found.get(resource.name)
        if found is None or found.resource is not resource:
            with self._lock:
                found = self._found.get(resource.name)
                if found is None or found.resource is not resource:
                    if found is not None:
                        found.stop()
                    found = self._found[resource.name] = make()
        return found

    def stop(self) -> None:
        """Stop every watch (the agent stops, or a test ends)."""
        with self._lock:
            for found in self._found.values():
                found.stop()
            self._found.clear()


def applied_state() -> ControlState:
    """The running agent's control state, for a watch; LookupError once it stopped."""
    agent = registry._runtime
    if agent is None:
        raise LookupError("the agent stopped")
    return agent.state


def local_endpoint(resource: Resource, unit: str, state: ControlState) -> Endpoint | None:
    """The endpoint reads of ``resource`` may go to in ``unit``: its own endpoint there,
    when the primary is elsewhere (None when the unit has none or holds the primary)."""
    if state.primary_unit(resource) == unit:
        return None
    return resource.endpoint_in(unit)


def count(resource: Resource, unit: str, outcome: str, started_ns: int = 0,
          endpoint: Endpoint | None = None) -> None:
    """Count a read of a ``reads = "local"`` resource by where it went and why; with
    ``started_ns`` (when tracing), record it as a ``resil.read`` span too."""
    counters.count(f"db_reads:{resource.name}:{unit}:{outcome}")
    if started_ns:
        spans.span("resil.read", started_ns, spans.now_ns(), {
            "resil.resource": resource.name, "resil.read.outcome": outcome,
            "resil.endpoint": str(endpoint) if endpoint else "",
            "resil.endpoint.unit": endpoint.unit if endpoint else ""})
