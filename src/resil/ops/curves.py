"""Demand curves for ``resil scale simulate``: read from CSV, or built in.

A curve is requests per second per unit, one row a minute. In CSV::

    time,beijing,hangzhou
    2026-11-02T00:00,212.5,140.1
    2026-11-02T00:01,215.0,
    ...

``time`` is ISO 8601 (UTC unless it carries an offset) or epoch seconds; a row holds
until the next one (rows further apart than a minute are repeated). An empty cell means
the unit is down from that minute: its instances are lost and it serves nothing (a
unit-loss curve moves its traffic into the other units' columns).

The built-in curves (:data:`BUILTIN`) are deterministic (seeded noise), eight days from
a Monday, so that a predictive policy has a week of history to learn from:

- ``daily``: two units (60 % / 40 % of the traffic); a lunch and an evening peak,
  quieter weekends;
- ``flash-sale``: the daily curve plus a 15-minute flash sale at 20:00 every day, four
  times the usual traffic at its height;
- ``unit-loss``: three units of unequal size (50 / 30 / 20 %); on the last day, at the
  evening peak (19:30), ``hangzhou`` is lost for the rest of the curve and its traffic
  moves to the others in proportion to their size.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

START = int(datetime(2026, 11, 2, tzinfo=timezone.utc).timestamp()) // 60
"""The built-in curves' first minute: Monday 2 November 2026, 00:00 UTC."""
DAYS = 8


class CurveError(ValueError):
    """A curve that cannot be read; the message names the file, line and problem."""


@dataclass(frozen=True)
class Curve:
    """Requests per second per unit, one value a minute (None: the unit is down)."""

    name: str
    start: int
    """The first minute (since the epoch)."""
    units: tuple[str, ...]
    demand: dict[str, list[float | None]]

    @property
    def minutes(self) -> int:
        """How many minutes the curve lasts."""
        return len(next(iter(self.demand.values()))) if self.demand else 0

    def losses(self) -> list[tuple[str, int]]:
        """(unit, minute index) of every unit going down."""
        found = []
        for unit, values in self.demand.items():
            for i, value in enumerate(values):
                if value is None and (i == 0 or values[i - 1] is not None):
                    found.append((unit, i))
        return found

    def write_csv(self, path: Path) -> None:
        """Write the curve in the CSV form :func:`read_csv` reads."""
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["time", *self.units])
            for i in range(self.minutes):
                stamp = datetime.fromtimestamp((self.start + i) * 60, timezone.utc)
                row = [self.demand[u][i] for u in self.units]
                writer.writerow([stamp.strftime("%Y-%m-%dT%H:%M"),
                                 *("" if v is None else f"{v:.1f}" for v in row)])


def read_csv(path: Path) -> Curve:
    """Read a curve file; :class:`CurveError` names what is wrong and where."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise CurveError(f"{path}: cannot read: {exc.strerror}") from None
    if not rows or not rows[0] or rows[0][0].strip().lower() != "time" or len(rows[0]) < 2:
        raise CurveError(f"{path}: line 1 must be the header `time,UNIT[,UNIT...]`")
    units = tuple(u.strip() for u in rows[0][1:])
    if len(set(units)) != len(units) or not all(units):
        raise CurveError(f"{path}: line 1: unit names must be distinct and not empty")
    points: list[tuple[int, list[float | None]]] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(units) + 1:
            raise CurveError(f"{path}: line {line}: {len(row)} fields, expected "
                             f"{len(units) + 1}")
        minute = _minute(row[0], f"{path}: line {line}")
        values = [_rate(cell, f"{path}: line {line}, {unit}") for cell, unit in
                  zip(row[1:], units, strict=True)]
        if points and minute <= points[-1][0]:
            raise CurveError(f"{path}: line {line}: time {row[0]!r} is not after the "
                             "previous row's")
        points.append((minute, values))
    if not points:
        raise CurveError(f"{path}: no rows after the header")
    demand: dict[str, list[float | None]] = {u: [] for u in units}
    for (minute, values), following in zip(points, [*points[1:], None], strict=True):
        repeat = (following[0] - minute) if following else 1
        for unit, value in zip(units, values, strict=True):
            demand[unit].extend([value] * repeat)
    return Curve(path.stem, points[0][0], units, demand)


def _minute(text: str, where: str) -> int:
    text = text.strip()
    try:
        return int(float(text)) // 60
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise CurveError(f"{where}: time {text!r} is neither ISO 8601 nor epoch seconds"
                         ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return int(stamp.timestamp()) // 60


def _rate(text: str, where: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise CurveError(f"{where}: {text!r} is not a number of requests per second"
                         ) from None
    if not math.isfinite(value) or value < 0:
        raise CurveError(f"{where}: {text!r} must be a finite rate, 0 or more")
    return value


# --------------------------------------------------------------------------- built in

def _daily_shape(minute_of_week: int) -> float:
    """Requests per second of the whole service at this minute of the week (Monday 0)."""
    day, minute = divmod(minute_of_week, 1440)
    hour = minute / 60
    lunch = math.exp(-((hour - 12.5) / 1.6) ** 2)
    evening = math.exp(-((hour - 20.5) / 2.0) ** 2)
    night = 0.15 + 0.1 * math.cos((hour - 3) / 24 * 2 * math.pi)
    weekend = 0.8 if day >= 5 else 1.0
    return 1000 * weekend * (night + 0.55 * lunch + 0.85 * evening)


def _build(name: str, shares: dict[str, float],
           extra: Callable[[int, int], float] = lambda day, minute: 1.0,
           lost: tuple[str, int, int] | None = None) -> Curve:
    rng = random.Random(name)
    demand: dict[str, list[float | None]] = {u: [] for u in shares}
    for i in range(DAYS * 1440):
        day, minute = divmod(i, 1440)
        total = _daily_shape(i % (7 * 1440)) * extra(day, minute)
        down = lost is not None and lost[1] <= i < lost[2]
        moved = total * shares[lost[0]] if lost is not None and down else 0.0
        alive = sum(s for u, s in shares.items() if not (down and lost and u == lost[0]))
        for unit, share in shares.items():
            if down and lost and unit == lost[0]:
                demand[unit].append(None)
                continue
            value = total * share + moved * share / alive
            demand[unit].append(round(value * rng.uniform(0.95, 1.05), 1))
    return Curve(name, START, tuple(shares), demand)


def _flash(day: int, minute: int) -> float:
    """Four times the traffic from 20:00 for 15 minutes (a one-minute ramp up)."""
    if 20 * 60 <= minute < 20 * 60 + 15:
        return 4.0 if minute > 20 * 60 else 2.5
    return 1.0


def daily() -> Curve:
    """The ``daily`` curve."""
    return _build("daily", {"beijing": 0.6, "hangzhou": 0.4})


def flash_sale() -> Curve:
    """The ``flash-sale`` curve."""
    return _build("flash-sale", {"beijing": 0.6, "hangzhou": 0.4}, extra=_flash)


def unit_loss() -> Curve:
    """The ``unit-loss`` curve."""
    last = (DAYS - 1) * 1440
    return _build("unit-loss", {"beijing": 0.5, "hangzhou": 0.3, "shenzhen": 0.2},
                  lost=("hangzhou", last + 19 * 60 + 30, DAYS * 1440))


BUILTIN: dict[str, Callable[[], Curve]] = {
    "daily": daily, "flash-sale": flash_sale, "unit-loss": unit_loss}


def load(source: str) -> Curve:
    """A built-in curve by name, or a CSV file by path."""
    if source in BUILTIN:
        return BUILTIN[source]()
    path = Path(source)
    if not path.exists():
        raise CurveError(f"{source}: no such file, and not a built-in curve "
                         f"({', '.join(BUILTIN)})")
    return read_csv(path)
