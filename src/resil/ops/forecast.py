"""A seasonal forecast of a unit's load, for predictive scaling (``resil[scale]``: numpy).

The model is a seasonal profile scaled by the current level:

- the **profile** is, for each minute of the day (each minute of the week once two
  weeks of history exist), the median of the load at that minute over the past days
  (weeks). A median keeps the shape of a recurring event — the 9 a.m. rise, the 20:00
  flash sale — at the minute it happens, and ignores a one-off day such as a unit loss;
- the **level** is the ratio of the last hour's load to what the profile said for that
  hour (bounded to 0.5–3), so a day busier than usual is forecast busier.

numpy does the work: a fortnight of one-minute samples is a 14 × 1440 matrix whose
``nanmedian`` along the days is the profile, refitted in a few milliseconds. Predictive
scaling runs only in ``resil scale`` and ``resil monitor``, never in an application
process, so numpy is needed only there (the ``resil[scale]`` extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .history import MINUTES_A_DAY, Sample

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

MINUTES_A_WEEK = 7 * MINUTES_A_DAY
MIN_COVERAGE = 0.6
"""A day (week) of history counts when at least this share of its minutes is recorded."""
LEVEL_MINUTES = 60
LEVEL_BOUNDS = (0.5, 3.0)


class ForecastUnavailable(Exception):
    """Why there is no forecast (numpy missing, history too short); said in words."""


@dataclass(frozen=True)
class Model:
    """A fitted profile: ``period`` minutes long, aligned on the epoch's minute 0."""

    period: int
    profile: npt.NDArray[np.float64]
    level: float
    days: int
    """Days of history it was fitted on."""

    def load_at(self, minute: int) -> float:
        """The forecast load at ``minute`` (since the epoch)."""
        return float(self.profile[minute % self.period]) * self.level

    def peak(self, first: int, last: int) -> float:
        """The highest forecast load from minute ``first`` to ``last`` (inclusive)."""
        import numpy as np
        span = np.arange(first, max(first, last) + 1) % self.period
        return float(np.max(self.profile[span])) * self.level

    def describe(self) -> str:
        """``daily profile from 6 days, level ×1.08``."""
        kind = "weekly" if self.period == MINUTES_A_WEEK else "daily"
        return f"{kind} profile from {self.days} days of history, level ×{self.level:.2f}"


def fit(samples: Sequence[Sample], now_minute: int) -> Model:
    """Fit the model to ``samples`` (oldest first); :class:`ForecastUnavailable` says why
    it cannot be."""
    try:
        import numpy as np
    except ImportError:
        raise ForecastUnavailable("numpy is not installed where `resil scale` runs "
                                  "(pip install 'resil[scale]')") from None
    if not samples:
        raise ForecastUnavailable("no load history yet")
    span_days = (now_minute - samples[0].minute + 1) // MINUTES_A_DAY
    period = MINUTES_A_WEEK if span_days >= 14 else MINUTES_A_DAY
    cycles = min(span_days // (period // MINUTES_A_DAY), 4 if period == MINUTES_A_WEEK else 28)
    if cycles < 1:
        hours = (now_minute - samples[0].minute + 1) / 60
        raise ForecastUnavailable(f"{hours:.1f} h of load history: a forecast needs a day")
    # Row k holds the cycle ending k+1 cycles before now, each column one phase.
    start = now_minute + 1 - cycles * period
    grid = np.full(cycles * period, np.nan)
    minutes = np.fromiter((s.minute for s in samples), dtype=np.int64, count=len(samples))
    loads = np.fromiter((s.load for s in samples), dtype=np.float64, count=len(samples))
    keep = minutes >= start
    grid[minutes[keep] - start] = loads[keep]
    table = grid.reshape(cycles, period)
    covered = np.mean(~np.isnan(table), axis=1) >= MIN_COVERAGE
    if not covered.any():
        raise ForecastUnavailable(f"load history is too sparse (under {MIN_COVERAGE:.0%} of "
                                  "the minutes of any day recorded)")
    rows = table[covered]
    # Phases never recorded take the cycle's overall median: never NaN, never 0 by default.
    with np.errstate(all="ignore"):
        profile = np.nanmedian(rows, axis=0) if rows.shape[0] > 0 else np.zeros(period)
    profile = np.where(np.isnan(profile), np.nanmedian(rows), profile)
    # The phase of column 0 is ``start``: roll so that index = minute % period.
    profile = np.roll(profile, start % period)
    level = _level(minutes, loads, profile, period, now_minute)
    return Model(period, profile, level, int(covered.sum()) * (period // MINUTES_A_DAY))


def _level(minutes: npt.NDArray[np.int64], loads: npt.NDArray[np.float64],
           profile: npt.NDArray[np.float64], period: int, now_minute: int) -> float:
    import numpy as np
    recent = minutes > now_minute - LEVEL_MINUTES
    if not recent.any():
        return 1.0
    expected = float(np.sum(profile[minutes[recent] % period]))
    actual = float(np.sum(loads[recent]))
    if expected <= 0:
        return 1.0
    low, high = LEVEL_BOUNDS
    return min(high, max(low, actual / expected))
