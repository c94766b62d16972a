"""What a switch waits for: the live agents applying an epoch, and their writes ending.

A switch asks this many times a second while writes are held, so a round must cost the
same at 10 agents as at 5,000. Before the lock, the switch lists the live agents once
(names only) and records them as the agents it waits for
(:meth:`~resil.control.base.ControlPlane.expect`). Each agent takes itself off that
record with the mark that completes the wait (:meth:`~resil.control.base.ControlPlane.
mark`): no open transaction left under the lock, or the epoch that ends it. A round
asks how many are left: one counter read. Every :data:`LOOK_EVERY` seconds, a sample of
those left is looked at: one whose heartbeat stopped (dead, frozen) is no longer waited
for, nor one whose mark or heartbeat shows it done (an agent of an earlier version,
which never marks, or a mark whose removal was lost).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..control import ControlPlane
from ..control.base import Mark, live

LOOK_EVERY = 0.25
"""Seconds between looks at the agents still waited for."""
SAMPLE = 100
"""How many of the agents still waited for one look reads."""


@dataclass
class Pending:
    """The agents one switch (``holder``) waits for on one resource: for ``kind``
    ``drain``, the end of their open transactions under its lock; for ``verify``, the
    epoch that ended it. Start it before the event waited for."""

    plane: ControlPlane
    resource: str
    interval: float
    """The agents' heartbeat interval (a heartbeat older than 3 of them plus 1 s is dead)."""
    kind: str
    holder: str
    seen: int = 0
    """Live agents when the wait began, less those found dead since."""
    left: int = 0
    """Agents still waited for (after :meth:`check`)."""
    behind: list[str] = field(default_factory=list)
    """Agents found, at the last look, not to have applied the epoch yet."""
    busy: int = 0
    """Open transactions found at the last look."""
    _looked: float = 0.0

    @classmethod
    def start(cls, plane: ControlPlane, resource: str, interval: float, kind: str,
              holder: str, ids: set[str]) -> Pending:
        """Record the live agents ``ids`` (:meth:`ControlPlane.agent_ids`) as waited for."""
        plane.expect(kind, resource, holder, ids)
        return cls(plane, resource, interval, kind, holder, seen=len(ids), left=len(ids),
                   _looked=time.monotonic())

    def check(self, epoch: int, idle: bool) -> bool:
        """Whether every live agent applied ``epoch`` (and, when ``idle``, has no open
        transaction on the resource)."""
        now = time.monotonic()
        look = now - self._looked >= LOOK_EVERY
        self.left, sample = self.plane.expected(self.kind, self.resource, self.holder,
                                                SAMPLE if look else 0)
        if self.left and look:
            self._looked = now
            self._look(sample, epoch, idle)
        if not self.left:       # what an earlier look found is over
            self.behind, self.busy = [], 0
        return not self.left

    def finish(self) -> None:
        """Drop the record of the wait."""
        self.plane.forget(self.kind, self.resource, self.holder)

    def _look(self, sample: list[str], epoch: int, idle: bool) -> None:
        """Of a sample of the agents waited for: stop waiting for the dead and for those
        whose mark (or, unmarked, heartbeat) shows them done; note the others."""
        marks = self.plane.marks(self.resource, sample)
        beats = self.plane.heartbeats(sample)
        now = time.time()
        done, behind, busy = [], [], 0
        for agent_id in sample:
            beat = beats.get(agent_id)
            if beat is None or not live(beat, self.interval, now):
                done.append(agent_id)
                self.seen -= 1
                continue
            applied, open_ = marks.get(agent_id) or _from_heartbeat(beat, self.resource)
            if applied < epoch:
                behind.append(agent_id)
            elif idle and open_ > 0:
                busy += open_
            else:
                done.append(agent_id)
        self.plane.arrive(self.kind, self.resource, self.holder, done)
        self.left -= len(done)
        self.behind, self.busy = sorted(behind), busy


def _from_heartbeat(beat: dict[str, object], resource: str) -> Mark:
    """What an agent that never marked would have marked: its heartbeat's figures."""
    try:
        in_flight = beat.get("in_flight")
        busy = int(in_flight.get(resource, 0)) if isinstance(in_flight, dict) else 0
        return int(str(beat.get("epoch", 0))), busy
    except (TypeError, ValueError):
        return -1, 0
