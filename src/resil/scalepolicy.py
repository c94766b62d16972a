"""Scaling policies (``[scaling]``), typed and validated: what ``resil scale`` applies.

``[scaling]`` holds the policies of every service; ``[scaling.services.NAME]`` overrides
any of its keys for one service. Application processes never apply a policy: they only
publish their load and serve the recommendation that ``resil scale`` (or ``resil
monitor``) computed. The keys are declared in :mod:`resil.envvars` (section ``scaling``)
like every other; ``rules`` and ``schedules`` are lists of tables, read here.

- a **rule** is a threshold held for a duration: "utilization > 0.7 for 300 s: +1,
  then not again for 300 s";
- a **schedule** is a window between two cron expressions with a minimum capacity;
- ``predictive`` scales ahead of a forecast of the service's own history;
- ``unit_loss_reserve`` keeps, in every unit, the capacity to absorb the largest other
  unit's load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import envvars
from ._configparse import Source, Table
from .errors import MISSING

if TYPE_CHECKING:   # the cron module (and datetime) is loaded only for a schedule
    from datetime import tzinfo

    from .cron import Cron

METRICS = ("utilization",)
"""What a rule can watch: the mean busy fraction of the unit's instances."""
COMPARISONS = (">", ">=", "<", "<=")
LIST_KEYS = ("rules", "schedules")
"""Keys of ``[scaling]`` that are lists of tables (file only: no environment variable)."""


@dataclass(frozen=True)
class Rule:
    """``metric comparison value`` held for ``duration`` seconds: add ``step``."""

    name: str
    metric: str
    comparison: str
    value: float
    duration: float
    step: int
    cooldown: float

    def holds(self, figure: float) -> bool:
        """Whether ``figure`` is on the rule's side of the threshold."""
        if self.comparison == ">":
            return figure > self.value
        if self.comparison == ">=":
            return figure >= self.value
        if self.comparison == "<":
            return figure < self.value
        return figure <= self.value

    def describe(self) -> str:
        """``utilization > 0.7 for 300 s``."""
        return f"{self.metric} {self.comparison} {self.value:g} for {self.duration:g} s"


@dataclass(frozen=True)
class Schedule:
    """From each firing of ``start`` to the next firing of ``end``, at least ``minimum``
    instances per unit (``per_unit`` overrides it for named units)."""

    name: str
    start: Cron
    end: Cron
    minimum: int
    per_unit: Mapping[str, int]
    zone: tzinfo
    zone_name: str

    def minimum_for(self, unit: str) -> int:
        """The window's minimum in ``unit``."""
        return self.per_unit.get(unit, self.minimum)

    def active(self, ts: float) -> bool:
        """Whether ``ts`` is inside a window: ``start`` fired last, not ``end`` (a
        start and an end in the same minute: the window has just begun)."""
        began = self.start.previous(ts, self.zone)
        if began is None:
            return False
        ended = self.end.previous(ts, self.zone)
        return ended is None or began >= ended


@dataclass(frozen=True)
class ScalingPolicy:
    """The policies of one service."""

    minimum: int
    maximum: int
    per_unit_min: Mapping[str, int]
    per_unit_max: Mapping[str, int]
    target_utilization: float
    startup_time: float
    predictive: bool
    horizon: float
    unit_loss_reserve: bool
    reserve_fraction: float
    rules: tuple[Rule, ...] = ()
    schedules: tuple[Schedule, ...] = ()

    def bounds(self, unit: str) -> tuple[int, int]:
        """(min, max) instances in ``unit``."""
        return self.per_unit_min.get(unit, self.minimum), \
            self.per_unit_max.get(unit, self.maximum)


@dataclass(frozen=True)
class Scaling:
    """Every service's policies, and how the scaler runs."""

    defaults: ScalingPolicy
    services: Mapping[str, ScalingPolicy] = field(default_factory=dict)
    interval: float = 15.0
    history_days: int = 14
    history_series: int = 64
    configured: bool = False
    """Whether the file has a ``[scaling]`` table (``resil monitor`` then hosts the
    scaler)."""

    def policy(self, service: str) -> ScalingPolicy:
        """The policies of ``service`` (the defaults for one not named)."""
        return self.services.get(service, self.defaults)


def default_scaling() -> Scaling:
    """The policies of a configuration without ``[scaling]``: every declared default."""
    return build_scaling({}, (), Source(None))


def build_scaling(raw: Mapping[str, Any], units: tuple[str, ...], source: Source) -> Scaling:
    """Read ``[scaling]`` (already overlaid with its environment variables)."""
    table = raw.get("scaling", {})
    if not isinstance(table, Mapping):
        raise source.error("scaling", table, "must be a table")
    services = table.get("services", {})
    if not isinstance(services, Mapping):
        raise source.error("scaling.services", services, "must be a table of services")
    base = {k: v for k, v in table.items() if k != "services"}
    defaults = _policy(base, "scaling", units, source)
    per_service: dict[str, ScalingPolicy] = {}
    for name, overrides in services.items():
        prefix = f"scaling.services.{name}"
        if not isinstance(overrides, Mapping):
            raise source.error(prefix, overrides, "must be a table")
        if any(c.isspace() for c in str(name)) or not str(name).isprintable():
            raise source.error(prefix, name, "a service name is one word (no spaces)")
        for key in ("interval", "history_days", "history_series"):
            if key in overrides:
                raise source.error(f"{prefix}.{key}", overrides[key],
                                   "set for the scaler as a whole, in [scaling]")
        per_service[str(name)] = _policy({**base, **overrides}, prefix, units, source)
    common = Table(base, "scaling", envvars.section("scaling"), source)
    return Scaling(defaults=defaults, services=per_service,
                   interval=common.number("interval"),
                   history_days=common.integer("history_days"),
                   history_series=common.integer("history_series"),
                   configured="scaling" in raw)


def _policy(values: Mapping[str, Any], prefix: str, units: tuple[str, ...],
            source: Source) -> ScalingPolicy:
    settings = envvars.section("scaling")
    for key, value in values.items():
        if key not in settings and key not in LIST_KEYS:
            import difflib
            close = difflib.get_close_matches(str(key), sorted(settings) + list(LIST_KEYS), n=1)
            raise source.error(f"{prefix}.{key}", value, "unknown key" + (
                f"; did you mean {close[0]!r}?" if close else ""))
    table = Table({k: v for k, v in values.items() if k not in LIST_KEYS}, prefix,
                  settings, source)
    minimum, per_min = _per_unit(table, "min", units)
    maximum, per_max = _per_unit(table, "max", units)
    for unit in units:
        low, high = per_min.get(unit, minimum), per_max.get(unit, maximum)
        if low > high:
            raise table.error("min", low, f"more than max ({high}) in unit {unit}")
    rules = tuple(_rule(item, f"{prefix}.rules[{i}]", source)
                  for i, item in enumerate(_list(values, "rules", prefix, source)))
    schedules = tuple(_schedule(item, f"{prefix}.schedules[{i}]", units, source)
                      for i, item in enumerate(_list(values, "schedules", prefix, source)))
    return ScalingPolicy(
        minimum=minimum, maximum=maximum, per_unit_min=per_min, per_unit_max=per_max,
        target_utilization=table.number("target_utilization"),
        startup_time=table.number("startup_time"),
        predictive=table.flag("predictive"),
        horizon=table.number("horizon"),
        unit_loss_reserve=table.flag("unit_loss_reserve"),
        reserve_fraction=table.number("reserve_fraction"),
        rules=rules, schedules=schedules)


def _per_unit(table: Table, name: str, units: tuple[str, ...]) -> tuple[int, dict[str, int]]:
    """``min = 2`` (every unit) or ``min = { beijing = 4, hangzhou = 2 }`` (the units not
    named keep the default)."""
    value = table.values.get(name, MISSING)
    if not isinstance(value, Mapping):
        return table.integer(name), {}
    default = table.settings[name].default_as(int)
    found: dict[str, int] = {}
    for unit, count in value.items():
        if unit not in units:
            raise table.error(name, dict(value), f"{unit!r} is not one of the units: "
                              f"{', '.join(units)}")
        found[str(unit)] = Table({name: count}, table.prefix, table.settings,
                                 table.source).integer(name)
    return default, found


def _list(values: Mapping[str, Any], key: str, prefix: str, source: Source) -> list[Any]:
    items = values.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise source.error(f"{prefix}.{key}", items,
                           "expected a list of tables ([[scaling.%s]] or [{...}])" % key)
    return items


def _fields(item: Mapping[str, Any], where: str, source: Source, allowed: tuple[str, ...],
            required: tuple[str, ...]) -> None:
    for key in item:
        if key not in allowed:
            raise source.error(f"{where}.{key}", item[key],
                               f"unknown key (expected {', '.join(allowed)})")
    for key in required:
        if key not in item:
            raise source.error(f"{where}.{key}", MISSING, "required")


def _number(item: Mapping[str, Any], key: str, where: str, source: Source,
            low: float, high: float, default: float | None = None,
            whole: bool = False) -> float:
    value = item.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not low <= value <= high or (whole and not float(value).is_integer()):
        kind = "a whole number" if whole else "a number"
        raise source.error(f"{where}.{key}", value, f"expected {kind} between {low:g} and "
                           f"{high:g}")
    return float(value)


def _rule(item: Mapping[str, Any], where: str, source: Source) -> Rule:
    _fields(item, where, source,
            ("name", "metric", "comparison", "value", "duration", "step", "cooldown"),
            ("comparison", "value", "duration", "step"))
    metric = str(item.get("metric", "utilization"))
    if metric not in METRICS:
        raise source.error(f"{where}.metric", metric, "expected " + ", ".join(METRICS))
    comparison = str(item["comparison"]).strip()
    if comparison not in COMPARISONS:
        raise source.error(f"{where}.comparison", comparison,
                           "expected one of " + ", ".join(COMPARISONS))
    duration = _number(item, "duration", where, source, 60, 86400)
    step = int(_number(item, "step", where, source, -1000, 1000, whole=True))
    if step == 0:
        raise source.error(f"{where}.step", step, "must not be 0 (+n adds, -n removes)")
    return Rule(name=str(item.get("name") or where.rpartition(".")[2]), metric=metric,
                comparison=comparison, value=_number(item, "value", where, source, 0, 100),
                duration=duration, step=step,
                cooldown=_number(item, "cooldown", where, source, 0, 86400, default=300))


def _schedule(item: Mapping[str, Any], where: str, units: tuple[str, ...],
              source: Source) -> Schedule:
    _fields(item, where, source, ("name", "start", "end", "min", "timezone"),
            ("start", "end", "min"))
    from .cron import Cron, CronError
    crons = []
    for key in ("start", "end"):
        text = item[key]
        if not isinstance(text, str):
            raise source.error(f"{where}.{key}", text, "expected a cron expression string")
        try:
            crons.append(Cron.parse(text))
        except CronError as exc:
            raise source.error(f"{where}.{key}", text, f"not a cron expression: {exc}"
                               ) from None
    zone_name = str(item.get("timezone", "UTC"))
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
        zone: tzinfo = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise source.error(f"{where}.timezone", zone_name,
                           "not a known time zone (e.g. UTC, Asia/Shanghai)") from None
    raw_min = item["min"]
    per_unit: dict[str, int] = {}
    minimum = 0
    if isinstance(raw_min, Mapping):
        for unit in raw_min:
            if unit not in units:
                raise source.error(f"{where}.min", dict(raw_min),
                                   f"{unit!r} is not one of the units: {', '.join(units)}")
            per_unit[str(unit)] = int(_number(raw_min, unit, f"{where}.min", source, 0,
                                              100000, whole=True))
    else:
        minimum = int(_number(item, "min", where, source, 0, 100000, whole=True))
    return Schedule(name=str(item.get("name") or where.rpartition(".")[2]),
                    start=crons[0], end=crons[1], minimum=minimum, per_unit=per_unit,
                    zone=zone, zone_name=zone_name)
