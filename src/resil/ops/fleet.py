"""What a switch waits for: the live agents applying an epoch, and their writes ending.

A switch asks this many times a second while writes are held, so it must not read the
whole fleet each time. It reads the agents' ids once (names only), then only the marks
of the agents it still waits for (:meth:`~resil.control.base.ControlPlane.marks`): one
read per round, shrinking as agents catch up. Heartbeats are read only for the agents
that have no mark at all (an older agent: its heartbeat says the same), and, every
:data:`LOOK_EVERY` seconds, for the agents still waited for: a dead one (its heartbeat
expired or stopped) is no longer waited for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..control import ControlPlane
from ..control.base import live

LOOK_EVERY = 0.25
"""Seconds between looks at the heartbeats of the agents still waited for."""


@dataclass
class Pending:
    """The agents a switch still waits for on one resource."""

    plane: ControlPlane
    resource: str
    interval: float
    """The agents' heartbeat interval (a heartbeat older than 3 of them plus 1 s is dead)."""
    waiting: set[str] = field(default_factory=set)
    seen: int = 0
    """How many agents were live when the wait began."""
    behind: list[str] = field(default_factory=list)
    """Agents that have not applied the epoch yet (after :meth:`check`)."""
    busy: int = 0
    """Open transactions of the agents that applied it (after :meth:`check`)."""
    _looked: float = field(default_factory=time.monotonic)

    @classmethod
    def start(cls, plane: ControlPlane, resource: str, interval: float) -> Pending:
        """Begin waiting for every agent that has a heartbeat now."""
        ids = plane.agent_ids()
        return cls(plane, resource, interval, set(ids), len(ids))

    def check(self, epoch: int, idle: bool) -> bool:
        """Whether every live agent applied ``epoch`` (and, when ``idle``, has no open
        transaction on the resource): one read of the marks still waited for."""
        if not self.waiting:
            self.behind, self.busy = [], 0
            return True
        marks = self.plane.marks(self.resource, self.waiting)
        now = time.monotonic()
        if now - self._looked >= LOOK_EVERY:     # the stragglers: dead, or just slow?
            self._looked = now
            self._look(self.waiting, marks)
        elif unmarked := self.waiting - marks.keys():
            self._look(unmarked, marks)
        behind, busy = [], 0
        for agent_id in sorted(self.waiting):
            applied, in_flight = marks.get(agent_id, (0, 0))
            if applied < epoch:
                behind.append(agent_id)
            elif idle and in_flight:
                busy += in_flight
            else:
                self.waiting.discard(agent_id)
        self.behind, self.busy = behind, busy
        return not self.waiting

    def _look(self, agents: set[str], marks: dict[str, tuple[int, int]]) -> None:
        """Drop those of ``agents`` that died; take an unmarked agent's figures from its
        heartbeat (an agent that never marked: the mark it would have written)."""
        now = time.time()
        beats = self.plane.heartbeats(agents)
        for agent_id in list(agents):
            beat = beats.get(agent_id)
            if beat is None or not live(beat, self.interval, now):
                self.waiting.discard(agent_id)
                self.seen -= 1
            elif agent_id not in marks:
                try:
                    marks[agent_id] = (int(beat.get("epoch", 0)), int(
                        dict(beat.get("in_flight") or {}).get(self.resource, 0)))
                except (TypeError, ValueError):
                    continue
