"""The fleet's load history: one record a minute per service and unit, in a fixed ring.

A series (one service in one unit) is a byte string of ``days × 1440`` slots of
:data:`RECORD` (12 bytes: the minute since the epoch, the instances that reported, the
sum of their utilizations). The record of minute ``m`` lives at slot ``m mod slots``,
so a series never grows past its size (242 KB for 14 days), a record older than the
ring is overwritten by a newer one, and two scalers recording the same minute write the
same bytes to the same place. The control plane stores the bytes (a file per series, or
a Redis string written with ``SETRANGE``); :data:`Scaling.history_series` caps how many
series there are, so the whole history has a fixed ceiling.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

RECORD = struct.Struct("<IHHf")
"""minute since the epoch, instances, (reserved), load (sum of utilizations)."""
MINUTES_A_DAY = 1440


def series_name(service: str, unit: str) -> str:
    """The name a series is stored under."""
    return f"{service}@{unit}"


def ring_bytes(days: int) -> int:
    """The size of one series kept for ``days`` days."""
    return days * MINUTES_A_DAY * RECORD.size


def record(minute: int, instances: int, load: float, days: int) -> tuple[int, bytes]:
    """(byte offset, bytes) of minute ``minute``'s record in a ring of ``days`` days."""
    offset = (minute % (days * MINUTES_A_DAY)) * RECORD.size
    return offset, RECORD.pack(minute, max(0, min(instances, 65535)), 0, max(0.0, load))


@dataclass(frozen=True)
class Sample:
    """One minute of a unit's load."""

    minute: int
    instances: int
    load: float

    @property
    def utilization(self) -> float:
        """The mean busy fraction of the instances that reported (0 with none)."""
        return self.load / self.instances if self.instances else 0.0


def decode(blob: bytes, days: int, now_minute: int) -> list[Sample]:
    """The records of ``blob`` within the ring's span before ``now_minute`` (inclusive),
    oldest first. Empty slots and records left from an older span are skipped."""
    oldest = now_minute - days * MINUTES_A_DAY
    found = [Sample(minute, instances, load)
             for minute, instances, _, load in _records(blob)
             if oldest < minute <= now_minute]
    found.sort(key=lambda s: s.minute)
    return found


def _records(blob: bytes) -> Iterator[tuple[int, int, int, float]]:
    usable = len(blob) - len(blob) % RECORD.size
    for minute, instances, reserved, load in RECORD.iter_unpack(blob[:usable]):
        if minute:
            yield minute, instances, reserved, load
