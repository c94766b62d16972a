"""``resil traffic set`` (unit weights) and ``resil traffic rules`` (routing-key rules).

Both publish the way every operator command does: load the current control state,
replace one part of it, publish the result as the next epoch. Exit codes as in
:mod:`resil.cli.main`: 0 done, 1 the control plane failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..config import Config, load_config
from ..control import ControlPlane, open_configured
from ..errors import ControlPlaneError, SignalError
from ..state import ControlState, RouteRule, decode_routes, issuer

SHOWN_KEYS = 10
"""A ``keys`` rule prints this many keys, then how many more it has."""


def add_commands(traffic_sub: Any) -> None:
    """Add ``set`` and ``rules`` to the ``resil traffic`` subparsers."""
    weights = traffic_sub.add_parser(
        "set", help="publish unit weights, e.g. beijing=50 hangzhou=50 (0 cuts a unit)")
    weights.add_argument("weights", nargs="+", metavar="UNIT=WEIGHT")
    weights.add_argument("--config", metavar="PATH", help="configuration file")
    weights.add_argument("--yes", action="store_true",
                         help="publish even when every unit ends at weight 0 (a total "
                         "outage: every instance turns not-ready)")
    weights.set_defaults(func=set_weights)
    rules = traffic_sub.add_parser(
        "rules", help="show, publish or clear the rules that give each routing key its "
        "home unit")
    rules.add_argument("file", nargs="?", metavar="FILE",
                       help="rules to publish: a JSON list (or '-' for standard input), or "
                       "a .toml file of [[rule]] tables; without FILE, show the rules")
    rules.add_argument("--clear", action="store_true", help="remove every rule")
    rules.add_argument("--json", action="store_true", help="show the rules as JSON")
    rules.add_argument("--config", metavar="PATH", help="configuration file")
    rules.set_defaults(func=routing_rules)


def set_weights(args: argparse.Namespace) -> int:
    """``resil traffic set UNIT=WEIGHT ...``."""
    config = load_config(args.config)
    try:
        wanted = parse_weights(args.weights, config.topology.units)
    except ValueError as exc:
        print(f"resil: {exc}", file=sys.stderr)
        return 2
    try:
        plane, state = _current(config)
        weights = {**state.weights, **wanted}
        if weights == dict(state.weights):
            print(f"weights unchanged: {_weights(weights)} (epoch {state.epoch})")
            return 0
        if not any(weights.values()) and not args.yes:
            print(f"resil: {_weights(weights)} leaves no unit with traffic: a total outage "
                  "(every instance answers /readyz with 503). Pass --yes to publish it "
                  "anyway", file=sys.stderr)
            return 2
        epoch = plane.publish(state.evolve(weights=weights), issuer=issuer()).epoch
    except (ControlPlaneError, SignalError) as exc:
        print(f"resil: traffic change failed: {exc}", file=sys.stderr)
        return 1
    print(f"weights: {_weights(weights)} (epoch {epoch})")
    if not any(weights.values()):
        print("resil: warning: every unit has weight 0: no instance is ready",
              file=sys.stderr)
    return 0


def parse_weights(items: list[str], units: tuple[str, ...]) -> dict[str, float]:
    """``["beijing=50", ...]`` → ``{"beijing": 50.0}``; ValueError naming a bad item."""
    out: dict[str, float] = {}
    for item in items:
        unit, sep, text = item.partition("=")
        unit, text = unit.strip(), text.strip()
        if not sep or not unit or not text:
            raise ValueError(f"expected UNIT=WEIGHT, got {item!r}")
        if unit not in units:
            raise ValueError(f"unknown unit {unit!r} in {item!r} (units: {', '.join(units)})")
        if unit in out:
            raise ValueError(f"unit {unit!r} given twice")
        try:
            weight = float(text)
        except ValueError:
            raise ValueError(f"weight of unit {unit!r} = {text!r} is not a number") from None
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight of unit {unit!r} = {text!r} must be a number >= 0")
        out[unit] = weight
    return out


def routing_rules(args: argparse.Namespace) -> int:
    """``resil traffic rules [FILE] [--clear] [--json]``."""
    config = load_config(args.config)
    if args.clear and args.file:
        print("resil: give either FILE or --clear, not both", file=sys.stderr)
        return 2
    rules: tuple[RouteRule, ...] | None = () if args.clear else None
    if args.file:
        try:
            rules = read_rules(args.file, config)
        except (OSError, ValueError, SignalError) as exc:
            print(f"resil: bad rules file {args.file}: {exc}", file=sys.stderr)
            return 2
    try:
        plane, state = _current(config)
        if rules is None:
            _show(state, args.json)
            return 0
        if rules == state.routes:
            print(f"rules unchanged (epoch {state.epoch})")
            return 0
        epoch = plane.publish(state.evolve(routes=rules), issuer=issuer()).epoch
    except (ControlPlaneError, SignalError) as exc:
        print(f"resil: rules change failed: {exc}", file=sys.stderr)
        return 1
    print(f"published {len(rules)} rule{'' if len(rules) == 1 else 's'} (epoch {epoch})")
    for line in describe_rules(rules):
        print(f"  {line}")
    return 0


def read_rules(name: str, config: Config) -> tuple[RouteRule, ...]:
    """Rules from a file: a JSON list (or ``{"routes": [...]}``), or TOML ``[[rule]]``
    tables. Raises OSError, ValueError or SignalError saying what is wrong."""
    if name == "-":
        text = sys.stdin.read()
    else:
        text = Path(name).read_text(encoding="utf-8")
    raw: Any
    if name.endswith(".toml"):
        try:
            table = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"not valid TOML: {exc}") from None
        unknown = set(table) - {"rule"}
        if unknown:
            raise ValueError(f"unknown key {sorted(unknown)[0]!r}: expected [[rule]] tables")
        raw = table.get("rule", [])
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        if isinstance(raw, dict) and set(raw) == {"routes"}:
            raw = raw["routes"]
    return decode_routes(raw, config.topology)


def describe_rules(rules: Iterable[RouteRule | Mapping[str, Any]]) -> list[str]:
    """One line per rule (a :class:`RouteRule` or its JSON form), numbered in matching
    order."""
    return [f"{i}. {describe(rule)}" for i, rule in enumerate(rules, 1)]


def describe(rule: RouteRule | Mapping[str, Any]) -> str:
    """``range 0..4999 -> beijing``: a rule in one line."""
    raw = rule.to_dict() if isinstance(rule, RouteRule) else rule
    if "keys" in raw:
        keys = [str(k) for k in raw["keys"]]
        shown = ", ".join(keys[:SHOWN_KEYS])
        more = f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
        what = f"keys {shown}{more}"
    elif "hash" in raw:
        what = f"hash buckets {raw['hash'][0]}..{raw['hash'][1]}"
    else:
        what = f"range {raw['range'][0]}..{raw['range'][1]}"
    return f"{what} -> {raw['unit']}"


def _show(state: ControlState, as_json: bool) -> None:
    if as_json:
        # Just the list: it is also what FILE takes, so the output can be edited and
        # published again.
        print(json.dumps([rule.to_dict() for rule in state.routes], indent=2))
        return
    if not state.routes:
        print(f"no routing rules (epoch {state.epoch}): no key has a home unit")
        return
    print(f"routing rules (epoch {state.epoch}; the first match wins):")
    for line in describe_rules(state.routes):
        print(f"  {line}")


def _current(config: Config) -> tuple[ControlPlane, ControlState]:
    """The control plane and the state to build on: never a lost or rolled-back one
    (:func:`resil.ops.truth.trusted_state` rebuilds it from the servers first)."""
    from ..ops.truth import trusted_state
    plane = open_configured(config)
    return plane, trusted_state(config, plane, issuer(), print)


def _weights(weights: dict[str, float]) -> str:
    return "  ".join(f"{unit}={weight:g}" for unit, weight in weights.items())
