"""The control-plane interface every backend implements."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping

from .._record import dataclass
from ..state import ControlState, Signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol
else:
    Protocol = object      # structural types for the type checker; plain bases at run time


class Watch(Protocol):
    """A running watch; ``stop()`` ends it (idempotent)."""

    def stop(self) -> None:
        """Stop watching and release the watcher's resources."""


MAX_EPOCH = 2**53
"""No genuine epoch is higher (one publish per millisecond for 285,000 years): a
heartbeat or stored state claiming more was forged."""

Mark = tuple[int, int]
"""What an agent last marked on a resource: (applied epoch, open transactions there)."""

NOTE_TTL = 600.0
"""Seconds a lease's note outlives its last renewal: long enough for a resolver (or an
operator running ``resil status``) to read where a dead holder stopped."""


@dataclass(frozen=True)
class LeaseNote:
    """What a lease holder last recorded about its work (a switch: the step it began)."""

    holder: str
    note: str
    at: float

    @classmethod
    def parse(cls, raw: object) -> LeaseNote | None:
        """The note stored as JSON in ``raw`` (None: absent or not a note)."""
        if raw is None:
            return None
        try:
            data = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
            return cls(str(data["holder"]), str(data["note"]), float(data["at"]))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


class ControlPlane(Protocol):
    """Where control state is stored and watched.

    Backends verify every signal they hand out (format, topology, HMAC when a key is
    configured) and never hand out a rejected one. Deciding whether a valid signal is
    *newer* than what a caller has applied is the caller's job (:func:`resil.state.newer`).
    """

    url: str

    def load(self) -> Signal | None:
        """The current signal, or None if none was ever published.

        Raises :class:`~resil.errors.SignalError` for a stored signal that fails
        verification and :class:`~resil.errors.ControlPlaneError` when unreadable.
        """

    def watch(self, on_signal: Callable[[Signal], object],
              on_error: Callable[[Exception], None]) -> Watch:
        """Call ``on_signal`` with each new valid signal, ``on_error`` with each failure.

        Runs in a daemon thread of the backend's own; the callbacks must not block.
        """

    def publish(self, state: ControlState, *, issuer: str) -> Signal:
        """Store ``state`` as a new signal (signed when a key is configured).

        Refuses, with :class:`~resil.errors.SignalError`, a state whose epoch is not
        higher than the stored one: two operators racing cannot overwrite each other.
        """

    def report(self, heartbeat: Mapping[str, Any]) -> None:
        """Publish one agent's heartbeat (JSON-able; its ``id`` names the agent)."""

    def retire(self, agent_id: str) -> None:
        """Remove an agent's heartbeat (it is stopping)."""

    def agents(self) -> list[dict[str, Any]]:
        """The latest heartbeat of every agent that reported, oldest first. Reads the
        whole fleet: for operator commands (``resil status``), never an agent's loop."""

    def agent_ids(self) -> set[str]:
        """The ids of the agents whose heartbeat has not expired (names only, not their
        contents: cheap enough for a switch to read once per step)."""

    def heartbeats(self, ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """The heartbeats of these agents (an expired one is absent)."""

    def children(self, parent: str) -> list[dict[str, Any]]:
        """The heartbeats of the agents forked by the agent ``parent`` (gunicorn's
        workers, whose requests and counters their master's ``/metrics`` adds up)."""

    def mark(self, resource: str, agent_id: str, epoch: int, in_flight: int,
             arrived: tuple[str, str] | None = None) -> None:
        """Record, in ``resource``'s own structure, the epoch an agent applied and its
        open transactions on the resource. Agents write it when either changes during a
        lock, and on every epoch change. With ``arrived`` (kind, holder), the agent also
        leaves what that switch waits for (:meth:`expect`), in the same round trip."""

    def marks(self, resource: str, ids: Collection[str]) -> dict[str, Mark]:
        """The last :meth:`mark` of each of these agents on ``resource`` (absent: none)."""

    def expect(self, kind: str, resource: str, holder: str, ids: Collection[str]) -> None:
        """Record the agents a switch (``holder``) waits for on ``resource``: ``kind`` is
        ``drain`` (their open transactions end under the lock) or ``verify`` (they apply
        the epoch that ends it). Marks of agents not among ``ids`` are forgotten."""

    def arrive(self, kind: str, resource: str, holder: str, ids: Collection[str]) -> None:
        """These agents are no longer waited for (an agent says so itself, with its
        mark; the switch, for one that died)."""

    def expected(self, kind: str, resource: str, holder: str,
                 sample: int = 0) -> tuple[int, list[str]]:
        """How many agents the switch still waits for, and up to ``sample`` of them."""

    def forget(self, kind: str, resource: str, holder: str) -> None:
        """Drop the record :meth:`expect` made."""

    def fleet_load(self, service: str) -> dict[str, tuple[int, float]]:
        """The instances of ``service`` that reported utilization over the last complete
        window, per unit: (instances, sum of their utilizations). Aggregated by the
        reports themselves (:meth:`report`), so reading it does not grow with the fleet."""

    def fleet_loads(self) -> dict[str, dict[str, tuple[int, float]]]:
        """:meth:`fleet_load` of every service that reported: service → unit → sums."""

    def history_write(self, series: str, offset: int, data: bytes, size: int) -> None:
        """Write ``data`` at byte ``offset`` of the history series ``series``, a ring of
        ``size`` bytes (:mod:`resil.ops.history`): it never grows past ``size``."""

    def history_read(self, series: str) -> bytes:
        """The bytes of a history series (empty: none recorded)."""

    def history_series(self) -> list[str]:
        """The names of the recorded history series."""

    def put_document(self, name: str, data: bytes) -> None:
        """Store a small document (the scaling recommendation) under ``name``."""

    def get_document(self, name: str) -> bytes | None:
        """The document stored under ``name`` (None: none)."""

    def applied_epoch(self) -> int:
        """The highest epoch that agents reported applying in the last two windows (0:
        none): a stored state older than this was lost or rolled back."""

    def lease(self, name: str, holder: str, ttl: float, note: str = "") -> bool:
        """Take the lease ``name`` if it is free or expired, or renew it if ``holder``
        has it; return whether ``holder`` holds it now (for ``ttl`` seconds). A non-empty
        ``note`` is recorded when it does, and outlives the lease (:data:`NOTE_TTL`)."""

    def release(self, name: str, holder: str) -> None:
        """Give the lease up, and drop its note, if ``holder`` has it."""

    def lease_note(self, name: str) -> LeaseNote | None:
        """The last note recorded by a holder of the lease ``name``, alive or dead."""

    def lease_holder(self, name: str) -> str | None:
        """Who holds the lease ``name`` now (None: nobody, or it expired)."""

    def durability(self) -> str | None:
        """Why a restart of the store could lose the control state (None: it cannot, or
        it cannot be told). A lost state is rebuilt from the servers, but weights and
        routing rules are not on any server."""

    def close(self) -> None:
        """Release connections and files."""


def live_agents(plane: ControlPlane, interval: float) -> list[dict[str, Any]]:
    """Agents whose last heartbeat is recent: within three intervals plus a second of
    now, either way (clocks differ between machines). A heartbeat dated further in the
    future is not believed: it would otherwise stay "live" for ever and make every
    switch wait out its drain and verify timeouts."""
    now = time.time()
    return [beat for beat in plane.agents() if live(beat, interval, now)]


def live(beat: Mapping[str, Any], interval: float, now: float) -> bool:
    """Whether a heartbeat is recent (see :func:`live_agents`)."""
    window = 3 * interval + 1
    try:
        age = now - float(beat.get("reported_at", 0))
    except (TypeError, ValueError):
        return False
    return -window <= age <= window


def highest_epoch(beats: list[dict[str, Any]]) -> int:
    """The highest believable epoch in these heartbeats (0 when none)."""
    epochs = [0]
    for beat in beats:
        try:
            epoch = int(beat.get("epoch", 0))
        except (TypeError, ValueError):
            continue
        if 0 <= epoch <= MAX_EPOCH:
            epochs.append(epoch)
    return max(epochs)


def load_window(agent_ttl: float) -> float:
    """The width of the windows the fleet's load and applied epochs are summed over:
    the heartbeat's time to live, so that every live agent (reporting at least three
    times per ``agent_ttl``) lands in every window exactly once."""
    return max(1.0, agent_ttl)


LEASE_FLOOR = 61.0
"""No genuine lease of up to 30 s (the longest ``--lease-ttl``) has more left than this."""


def lease_cap(ttl: float) -> float:
    """The longest a genuine lease can have left, for a caller asking for ``ttl``: twice
    ``ttl`` plus a second of clock skew, and never less than :data:`LEASE_FLOOR` (a
    monitor's lease, at most 30 s, or a drill checking it with a shorter ``ttl``). A lease
    with more time left — or with no expiry — was planted by a writer of the store, not
    taken by a monitor: it is taken over, so that it cannot stop failover for long."""
    return max(2 * ttl + 1.0, LEASE_FLOOR)
