"""Five-field cron expressions (minute hour day-of-month month day-of-week), for the
windows of scheduled scaling.

The fields take ``*``, numbers, ranges ``a-b``, steps ``*/n`` and ``a-b/n``, and lists
of these; months and weekdays also take their English three-letter names, and weekday 7
is Sunday like 0. As in every cron, when both the day of the month and the day of the
week are restricted, a day matches if either does.

A :class:`Cron` answers whether a minute matches (:meth:`Cron.matches`) and when it last
matched at or before a time (:meth:`Cron.previous`), skipping whole days and hours that
cannot match, so that looking back a week costs a few hundred steps, not ten thousand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS = (("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day of month", 1, 31, ()),
           ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS))

LOOKBACK_DAYS = 400
"""How far :meth:`Cron.previous` looks back (a yearly expression fired within it)."""


class CronError(ValueError):
    """A malformed expression; the message names the field and what is wrong."""


@dataclass(frozen=True)
class Cron:
    """A parsed expression: the allowed values of each field."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    """0 is Sunday (7 is folded into 0)."""
    any_day: bool
    """The day of the month is ``*``."""
    any_weekday: bool
    """The day of the week is ``*``."""

    @classmethod
    def parse(cls, text: str) -> Cron:
        """Parse ``text``; :class:`CronError` names what is wrong."""
        parts = text.split()
        if len(parts) != 5:
            raise CronError(f"expected 5 fields (minute hour day month weekday), got "
                            f"{len(parts)}")
        sets = [_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
        weekdays = frozenset(d % 7 for d in sets[4])
        return cls(" ".join(parts), sets[0], sets[1], sets[2], sets[3], weekdays,
                   parts[2] == "*", parts[4] == "*")

    def day_matches(self, when: datetime) -> bool:
        """Whether the date of ``when`` is one the expression can fire on."""
        if when.month not in self.months:
            return False
        in_month = when.day in self.days
        in_week = (when.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def matches(self, when: datetime) -> bool:
        """Whether the expression fires at the minute of ``when``."""
        return when.minute in self.minutes and when.hour in self.hours \
            and self.day_matches(when)

    def previous(self, ts: float, zone: tzinfo) -> float | None:
        """The start (epoch seconds) of the last minute at or before ``ts`` at which the
        expression fires in ``zone``, or None if it did not within :data:`LOOKBACK_DAYS`."""
        when = datetime.fromtimestamp(ts, zone).replace(second=0, microsecond=0)
        oldest = when - timedelta(days=LOOKBACK_DAYS)
        while when >= oldest:
            if not self.day_matches(when):
                when = when.replace(hour=0, minute=0) - timedelta(minutes=1)
            elif when.hour not in self.hours:
                when = when.replace(minute=0) - timedelta(minutes=1)
            elif when.minute not in self.minutes:
                when -= timedelta(minutes=1)
            else:
                return when.timestamp()
        return None


def _field(text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        span, _, step_text = item.partition("/")
        step = 1
        if step_text:
            step = _number(step_text, name, names, 1, high or 1, offset=0)
        if span == "*":
            first, last = low, high
        elif "-" in span:
            a, _, b = span.partition("-")
            first = _number(a, name, names, low, high)
            last = _number(b, name, names, low, high)
            if last < first:
                raise CronError(f"{name}: range {span!r} runs backwards")
        else:
            first = _number(span, name, names, low, high)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _number(text: str, name: str, names: tuple[str, ...], low: int, high: int,
            offset: int | None = None) -> int:
    lowered = text.strip().lower()
    if lowered in names:
        return names.index(lowered) + (low if offset is None else offset)
    if not lowered.isdigit():
        raise CronError(f"{name}: {text!r} is not a number" +
                        (f" or a name ({', '.join(names[:3])}, ...)" if names else ""))
    value = int(lowered)
    if not low <= value <= high:
        raise CronError(f"{name}: {value} is outside {low}-{high}")
    return value
