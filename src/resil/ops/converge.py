"""Converge before locking: wait, with writes still flowing, until the switch's target is
close enough to the primary that the catch-up under the lock takes milliseconds.

Replication lag under load is the normal case. A switch that locked first and caught up
after held every write for the whole lag (3 s, measured) — or ran out its catch-up
timeout while the agents' holds expired. Here the distance is measured in what the
servers count exactly — GTID sequence numbers (MySQL), replication offsets in bytes
(Redis) — not in ``Seconds_Behind_Master``, whose 1 s granularity hides seconds of work,
and the target's *apply rate* is measured over the last second. The target has
converged when it is level, or when what it still lacks would take it at most
``max_catchup`` seconds at that rate.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..clock import Clock
from ..errors import SwitchError
from .servers import Server

WINDOW = 1.0
"""Seconds of samples the apply rate is measured over."""


@dataclass(frozen=True)
class Sample:
    """One look at both servers."""

    at: float
    lead: int
    """How far the primary is ahead (transactions, or bytes for Redis)."""
    applied: int
    """The target's own position (same unit)."""


def converge(old: Server, new: Server, *, timeout: float, max_catchup: float,
             unit: str, say: Callable[[str], None], clock: Clock = time.monotonic,
             sleep: Callable[[float], None] = time.sleep) -> str:
    """Wait until ``new`` is within ``max_catchup`` seconds of ``old``; the result line.

    Raises :class:`SwitchError` — nothing locked, nothing fenced — when it is not within
    ``timeout`` seconds, giving the distance, the apply rate and the trend.
    """
    started = clock()
    samples: deque[Sample] = deque()
    said = started
    while True:
        sample = _look(old, new, clock)
        samples.append(sample)
        while len(samples) > 2 and samples[0].at < sample.at - WINDOW:
            samples.popleft()
        rate = _rate(samples)
        if sample.lead <= 0 or (rate > 0 and sample.lead / rate <= max_catchup):
            eta = 0.0 if sample.lead <= 0 else sample.lead / rate * 1000
            return (f"target level with the primary ({sample.lead} {unit} behind, applying "
                    f"{rate:.0f}/s: about {eta:.0f} ms of catch-up under the lock) after "
                    f"{clock() - started:.2f} s")
        if sample.at - started > timeout:
            trend = _trend(samples)
            raise SwitchError(
                f"target did not converge within {timeout:g} s: {sample.lead} {unit} behind, "
                f"applying {rate:.0f}/s, {trend}; nothing was locked or fenced. Retry when "
                "the load is lower, or make the replica apply faster (MariaDB: "
                "slave_parallel_threads, slave_parallel_mode=optimistic)")
        if sample.at - said >= 1.0:
            said = sample.at
            say(f"  converging: {sample.lead} {unit} behind, applying {rate:.0f}/s, "
                f"{_trend(samples)}")
        sleep(0.05)


def _look(old: Server, new: Server, clock: Clock) -> Sample:
    # The primary first: the target can only be further along by the time it is read.
    ahead = sum(old.progress())
    applied = sum(new.progress())
    return Sample(clock(), ahead - applied, applied)


def _rate(samples: deque[Sample]) -> float:
    """Units the target applied per second over the window."""
    first, last = samples[0], samples[-1]
    elapsed = last.at - first.at
    return (last.applied - first.applied) / elapsed if elapsed > 0 else 0.0


def _trend(samples: deque[Sample]) -> str:
    first, last = samples[0], samples[-1]
    if last.lead < first.lead:
        return "shrinking"
    return "steady" if last.lead == first.lead else "growing"
