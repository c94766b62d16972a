"""Cron expressions of scheduled scaling: parsing, errors that name the field, matching,
and the last firing before a time (across midnight, the turn of a week, a year)."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from resil.cron import Cron, CronError

UTC = timezone.utc


def at(text: str, zone=UTC) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone)


def test_fields_lists_ranges_steps_and_names():
    cron = Cron.parse("*/15 8-18/2 * jan,jul mon-fri")
    assert cron.minutes == {0, 15, 30, 45}
    assert cron.hours == {8, 10, 12, 14, 16, 18}
    assert cron.months == {1, 7}
    assert cron.weekdays == {1, 2, 3, 4, 5}
    assert Cron.parse("0 0 * * 7").weekdays == {0}           # 7 is Sunday too
    assert Cron.parse("5/20 * * * *").minutes == {5, 25, 45}


@pytest.mark.parametrize("text,problem", [
    ("0 9 * *", "expected 5 fields"),
    ("60 9 * * *", "minute: 60 is outside 0-59"),
    ("0 25 * * *", "hour: 25 is outside 0-23"),
    ("0 9 0 * *", "day of month: 0 is outside 1-31"),
    ("0 9 * foo *", "month: 'foo' is not a number"),
    ("0 9 * * fri-mon", "day of week: range 'fri-mon' runs backwards"),
    ("0 9 * * */0", "is outside"),
])
def test_a_malformed_expression_names_its_field(text, problem):
    with pytest.raises(CronError, match=problem):
        Cron.parse(text)


def test_day_of_month_or_day_of_week_when_both_are_restricted():
    cron = Cron.parse("0 12 1 * mon")            # the 1st, and every Monday (cron's OR)
    assert cron.matches(at("2026-12-01T12:00"))  # a Tuesday, the 1st
    assert cron.matches(at("2026-12-07T12:00"))  # a Monday
    assert not cron.matches(at("2026-12-08T12:00"))
    only_mondays = Cron.parse("0 12 * * mon")
    assert not only_mondays.matches(at("2026-12-01T12:00"))


def test_previous_firing_is_found_across_midnight_and_the_turn_of_a_week():
    sunday_night = Cron.parse("0 22 * * sun")
    monday_2am = at("2026-12-07T02:00").timestamp()
    assert sunday_night.previous(monday_2am, UTC) == at("2026-12-06T22:00").timestamp()
    # On the very minute it fires, that minute counts.
    assert sunday_night.previous(at("2026-12-06T22:00:30").timestamp(), UTC) == \
        at("2026-12-06T22:00").timestamp()
    yearly = Cron.parse("0 0 1 jan *")
    assert yearly.previous(at("2026-12-01T00:00").timestamp(), UTC) == \
        at("2026-01-01T00:00").timestamp()
    never = Cron.parse("0 0 31 feb *")
    assert never.previous(at("2026-12-01T00:00").timestamp(), UTC) is None


def test_previous_firing_in_a_time_zone():
    shanghai = ZoneInfo("Asia/Shanghai")
    nine = Cron.parse("0 9 * * *")
    # 02:30 UTC is 10:30 in Shanghai: today's 09:00 there, 01:00 UTC.
    assert nine.previous(at("2026-12-01T02:30").timestamp(), shanghai) == \
        at("2026-12-01T01:00").timestamp()
