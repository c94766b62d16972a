"""The scaling policies, each against the numbers a user relies on: a rule fires only
after its duration and its cooldown holds; schedules open and close at their minutes
(across midnight and the turn of a week); the forecast anticipates a daily cycle by the
start-up time; the unit-loss reserve for 2 and 3 units of unequal size; min/max clamp."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from resil._configparse import Source
from resil.errors import ConfigError
from resil.ops.forecast import ForecastUnavailable, fit
from resil.ops.history import Sample
from resil.ops.scaling import RuleMemory, recommend
from resil.scalepolicy import build_scaling

UNITS = ("beijing", "hangzhou")
MONDAY = int(datetime(2026, 11, 2, tzinfo=timezone.utc).timestamp())


def policy(units=UNITS, **values):
    return build_scaling({"scaling": values}, units, Source(None)).defaults


def advise(p, now, current, history=None, memory=None, units=UNITS):
    return recommend(p, units, now, current, history or {}, memory or RuleMemory())


def flat(utilization: float, instances: int, minutes: int, end: float) -> list[Sample]:
    last = int(end // 60) - 1
    return [Sample(m, instances, utilization * instances)
            for m in range(last - minutes + 1, last + 1)]


# ------------------------------------------------------------------ target and clamp

def test_target_tracking_and_the_min_max_clamp():
    p = policy(min=2, max=8, target_utilization=0.5)
    found = advise(p, MONDAY, {"beijing": (4, 3.2), "hangzhou": (4, 0.3)})
    assert found["beijing"].desired == 7 and found["beijing"].decided_by == "target"
    assert found["hangzhou"].desired == 2 and found["hangzhou"].decided_by == "min"
    busy = advise(p, MONDAY, {"beijing": (8, 8.0)})["beijing"]
    assert busy.desired == 8 and busy.decided_by == "max"
    assert "target asked 16" in busy.reason


def test_min_and_max_per_unit():
    p = policy(min={"beijing": 3}, max={"hangzhou": 2})
    found = advise(p, MONDAY, {"beijing": (1, 0.0), "hangzhou": (5, 5.0)})
    assert found["beijing"].desired == 3
    assert found["hangzhou"].desired == 2


# ------------------------------------------------------------------ rules

RULE = {"name": "hot", "comparison": ">", "value": 0.7, "duration": 300, "step": 2,
        "cooldown": 600}


def test_a_rule_fires_only_after_its_whole_duration():
    p = policy(target_utilization=1.0, rules=[RULE])
    memory = RuleMemory()
    now = MONDAY + 3600
    four = {"beijing": flat(0.9, 4, 4, now)}                  # 4 of the 5 minutes
    found = advise(p, now, {"beijing": (4, 3.6)}, four, memory)["beijing"]
    assert found.desired == 4 and found.decided_by == "target"
    assert memory.fired == {}
    # One minute under the threshold inside the window also keeps it from firing.
    dipped = flat(0.9, 4, 5, now)
    dipped[1] = Sample(dipped[1].minute, 4, 2.0)
    found = advise(p, now, {"beijing": (4, 3.6)}, {"beijing": dipped}, memory)["beijing"]
    assert found.desired == 4 and memory.fired == {}
    five = {"beijing": flat(0.9, 4, 5, now)}
    found = advise(p, now, {"beijing": (4, 3.6)}, five, memory)["beijing"]
    assert found.desired == 6 and found.decided_by == "rule:hot"
    assert "utilization > 0.7 for 300 s" in found.reason


def test_a_rule_holds_its_figure_through_its_cooldown_and_only_then_fires_again():
    p = policy(target_utilization=1.0, rules=[RULE])
    memory = RuleMemory()
    now = MONDAY + 3600
    hot = {"beijing": flat(0.9, 4, 30, now + 1200)}
    assert advise(p, now, {"beijing": (4, 3.6)}, hot, memory)["beijing"].desired == 6
    # Still hot, and the new instances not yet up: the rule neither flaps back to the
    # target's 4 nor adds 2 more while its cooldown runs.
    for later in (60, 300, 599):
        found = advise(p, now + later, {"beijing": (4, 3.6)}, hot, memory)["beijing"]
        assert found.desired == 6 and found.decided_by == "rule:hot", later
        assert "cooldown 600 s" in found.reason
    # The cooldown over, it fires again from the instances there are now.
    found = advise(p, now + 600, {"beijing": (6, 5.4)}, hot, memory)["beijing"]
    assert found.desired == 8


def test_a_rule_that_cannot_see_its_minutes_does_not_fire():
    p = policy(rules=[RULE])
    found = advise(p, MONDAY, {"beijing": (4, 3.6)})["beijing"]
    rule = next(f for f in found.figures if f.policy == "rule:hot")
    assert rule.instances is None and "5 of the last 5 minutes not recorded" in rule.reason


# ------------------------------------------------------------------ schedules

def _window(start: str, end: str, minimum=6, zone="UTC"):
    return policy(schedules=[{"name": "peak", "start": start, "end": end, "min": minimum,
                              "timezone": zone}])


def _scheduled(p, when: str) -> int:
    now = datetime.fromisoformat(when).replace(tzinfo=timezone.utc).timestamp()
    return advise(p, now, {"beijing": (1, 0.1)})["beijing"].desired


def test_a_schedule_applies_inside_its_window_only():
    p = _window("30 8 * * mon-fri", "0 20 * * mon-fri")
    assert _scheduled(p, "2026-11-02T08:29") == 1         # Monday, before
    assert _scheduled(p, "2026-11-02T08:30") == 6
    assert _scheduled(p, "2026-11-02T19:59") == 6
    assert _scheduled(p, "2026-11-02T20:00") == 1
    assert _scheduled(p, "2026-11-07T10:00") == 1         # Saturday


def test_a_schedule_across_midnight_and_the_turn_of_a_week():
    p = _window("0 22 * * sun", "0 2 * * mon", minimum=9)
    assert _scheduled(p, "2026-11-08T21:59") == 1         # Sunday
    assert _scheduled(p, "2026-11-08T22:00") == 9
    assert _scheduled(p, "2026-11-08T23:59") == 9
    assert _scheduled(p, "2026-11-09T00:00") == 9         # Monday: a new week
    assert _scheduled(p, "2026-11-09T01:59") == 9
    assert _scheduled(p, "2026-11-09T02:00") == 1


def test_a_schedule_in_its_own_time_zone_and_per_unit():
    p = policy(schedules=[{"start": "0 9 * * *", "end": "0 18 * * *", "timezone":
                           "Asia/Shanghai", "min": {"hangzhou": 5}}])
    now = datetime(2026, 11, 2, 1, 30, tzinfo=timezone.utc).timestamp()   # 09:30 there
    found = advise(p, now, {})
    assert found["hangzhou"].desired == 5 and found["beijing"].desired == 1


# ------------------------------------------------------------------ forecast

def _daily_cycle(minute: int) -> float:
    """Busy instances of a synthetic day: a rise at 09:00 to a plateau until 17:00."""
    hour = (minute % 1440) / 60
    return 12.0 if 9 <= hour < 17 else 2.0


def test_the_forecast_anticipates_a_daily_cycle_by_the_startup_time():
    startup = 300.0
    p = policy(target_utilization=0.5, predictive=True, startup_time=startup, horizon=0)
    start = MONDAY // 60
    # Three days of history, up to 08:50 of the fourth day.
    now_minute = start + 3 * 1440 + 8 * 60 + 50
    history = [Sample(m, 4, _daily_cycle(m)) for m in range(start, now_minute)]
    current = {"beijing": (4, 2.0)}

    def at(minute):
        return advise(p, minute * 60, current, {"beijing": history})["beijing"]

    # Ten minutes before the rise: more than the start-up time ahead, nothing yet.
    early = at(now_minute)
    assert early.desired == 4 and early.decided_by == "target"
    # Within the start-up time of 09:00 (08:56 + 300 s = 09:01): capacity for the
    # plateau now, so that it serves at 09:00. Reactive target tracking still says 4.
    found = at(now_minute + 6)
    assert found.decided_by == "predictive" and found.desired == 24
    target = next(f for f in found.figures if f.policy == "target")
    assert target.instances == 4


def test_the_forecast_says_why_it_cannot_forecast():
    with pytest.raises(ForecastUnavailable, match="a forecast needs a day"):
        fit([Sample(1000 + i, 1, 1.0) for i in range(120)], 1000 + 120)
    p = policy(predictive=True)
    found = advise(p, MONDAY, {"beijing": (3, 1.0)},
                   {"beijing": flat(0.3, 3, 120, MONDAY)})["beijing"]
    predictive = next(f for f in found.figures if f.policy == "predictive")
    assert predictive.instances is None
    assert "2.0 h of load history" in predictive.reason
    assert "the reactive policies decide" in predictive.reason
    assert found.decided_by == "target"


# ------------------------------------------------------------------ unit-loss reserve

def test_the_reserve_for_two_units_of_unequal_size():
    p = policy(target_utilization=0.5, unit_loss_reserve=True)
    found = advise(p, MONDAY, {"beijing": (12, 6.0), "hangzhou": (4, 2.0)})
    # beijing: (6 + 2) / 0.5 = 16; hangzhou: (2 + 6) / 0.5 = 16
    assert found["beijing"].desired == 16 and found["hangzhou"].desired == 16
    assert found["hangzhou"].decided_by == "reserve"
    assert "1 × 6.00 of beijing" in found["hangzhou"].reason


def test_the_reserve_for_three_units_of_unequal_size_and_a_fraction():
    units = ("a", "b", "c")
    load = {"a": (10, 5.0), "b": (6, 3.0), "c": (4, 2.0)}
    full = advise(policy(units, target_utilization=0.5, unit_loss_reserve=True),
                  MONDAY, load, units=units)
    # Each unit absorbs the largest *other* unit: a takes b's 3, b and c take a's 5.
    assert {u: a.desired for u, a in full.items()} == {"a": 16, "b": 16, "c": 14}
    half = advise(policy(units, target_utilization=0.5, unit_loss_reserve=True,
                         reserve_fraction=0.5), MONDAY, load, units=units)
    assert {u: a.desired for u, a in half.items()} == {"a": 13, "b": 11, "c": 9}
    assert all(math.isclose(a.load, load[u][1]) for u, a in half.items())


def test_a_single_unit_has_no_reserve_to_keep():
    p = policy(("a",), unit_loss_reserve=True)
    found = advise(p, MONDAY, {"a": (2, 0.6)}, units=("a",))["a"]
    reserve = next(f for f in found.figures if f.policy == "reserve")
    assert reserve.instances is None and found.desired == 1


# ------------------------------------------------------------------ configuration

@pytest.mark.parametrize("values,problem", [
    ({"min": 5, "max": 3}, r"scaling.min = 5: more than max \(3\) in unit beijing"),
    ({"min": {"nowhere": 2}}, "'nowhere' is not one of the units"),
    ({"rules": [{**RULE, "step": 0}]}, r"scaling.rules\[0\].step = 0: must not be 0"),
    ({"rules": [{**RULE, "duration": 30}]}, "duration = 30: expected a number between 60"),
    ({"rules": [{**RULE, "comparison": "=>"}]}, "comparison = '=>': expected one of"),
    ({"rules": [{**RULE, "metric": "cpu"}]}, "metric = 'cpu': expected utilization"),
    ({"rules": [{**RULE, "treshold": 1}]}, "treshold = 1: unknown key"),
    ({"schedules": [{"start": "0 9 * *", "end": "0 18 * * *", "min": 2}]},
     r"schedules\[0\].start = '0 9 \* \*': not a cron expression: expected 5 fields"),
    ({"schedules": [{"start": "0 9 * * *", "end": "0 18 * * *", "min": 2,
                     "timezone": "Mars/Olympus"}]}, "not a known time zone"),
    ({"schedules": [{"start": "0 9 * * *", "min": 2}]}, r"schedules\[0\].end: required"),
    ({"predictiv": True}, "scaling.predictiv = True: unknown key; did you mean 'predictive'"),
    ({"target_utilization": 0}, "target_utilization = 0: must be more than 0"),
])
def test_bad_scaling_configuration_names_the_key(values, problem):
    with pytest.raises(ConfigError, match=problem):
        policy(**values)


def test_a_service_overrides_the_defaults_and_keeps_the_rest():
    scaling = build_scaling({"scaling": {"max": 10, "predictive": True, "services": {
        "checkout": {"max": 50}}}}, UNITS, Source(None))
    assert scaling.policy("checkout").maximum == 50
    assert scaling.policy("checkout").predictive is True
    assert scaling.policy("anything-else").maximum == 10
    with pytest.raises(ConfigError, match="scaling.services.checkout.interval"):
        build_scaling({"scaling": {"services": {"checkout": {"interval": 5}}}}, UNITS,
                      Source(None))


# ------------------------------------------------------------------ silence

def test_silence_is_not_zero_load():
    p = policy(min=1)
    now = MONDAY + 3600
    had = {"beijing": flat(0.5, 6, 10, now - 120)}       # 6 instances until 2 min ago
    found = advise(p, now, {}, had)["beijing"]
    assert found.desired == 6 and found.decided_by == "hold"
    assert "silence is not zero load" in found.reason
    # Once they report again, the policies decide from their load as usual.
    assert advise(p, now, {"beijing": (6, 1.2)}, had)["beijing"].desired == 2
    # After the hold (15 min) of silence, min.
    assert advise(p, now + 900, {}, had)["beijing"].desired == 1
    # Where min is 0, scaling to zero stays possible.
    assert advise(policy(min=0), now, {}, had)["beijing"].desired == 0
