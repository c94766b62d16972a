"""The retry budget of an http resource: retries may never multiply an outage's load."""

from __future__ import annotations

import threading
import time

from .clock import Clock

WINDOW = 10
"""Seconds of calls the retry budget looks back over."""


class RetryBudget:
    """Retries allowed: ``ratio`` × calls of the last :data:`WINDOW` seconds, plus
    ``min_per_second`` × :data:`WINDOW` (so a quiet service can still retry)."""

    def __init__(self, ratio: float, min_per_second: float,
                 clock: Clock = time.monotonic) -> None:
        self.ratio = ratio
        self.floor = min_per_second * WINDOW
        self._clock = clock
        self._lock = threading.Lock()
        self._calls = [0] * WINDOW
        self._retries = [0] * WINDOW
        self._second = int(clock())

    def _advance(self) -> int:
        now = int(self._clock())
        gap = now - self._second
        if gap > 0:
            for i in range(1, min(gap, WINDOW) + 1):
                slot = (self._second + i) % WINDOW
                self._calls[slot] = self._retries[slot] = 0
            self._second = now
        return now % WINDOW

    def record_call(self) -> None:
        """A call started (each call, not each attempt).

        Within the current second it takes no lock: two threads adding at once may lose
        one of the two counts, which can only make the budget smaller (calls allow
        retries), never let retries multiply an outage's load."""
        now = int(self._clock())
        if now == self._second:
            self._calls[now % WINDOW] += 1
            return
        with self._lock:
            self._calls[self._advance()] += 1

    def withdraw(self) -> bool:
        """Take one retry from the budget; False when it is spent."""
        with self._lock:
            slot = self._advance()
            if sum(self._retries) >= self.floor + self.ratio * sum(self._calls):
                return False
            self._retries[slot] += 1
            return True


