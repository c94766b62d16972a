"""``resil chaos inject|list|clear``: faults applied inside the agents (:mod:`resil.chaos`).

Each command publishes the way every operator command does: load the current control
state, replace its faults, publish the result as the next epoch. Expired faults are
dropped at every publish. Exit codes as in :mod:`resil.cli.main`: 0 done, 1 the control
plane failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import secrets
import sys
import time
from typing import Any

from ..config import Config, load_config
from ..control import ControlPlane, open_configured
from ..errors import ControlPlaneError, SignalError
from ..faults import KINDS, MAX_TTL, Fault, check
from ..state import ControlState, issuer

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")


def duration(text: str) -> float:
    """An argparse type: ``200ms``, ``1.5s``, ``5m``, ``1h`` or plain seconds; finite and
    not negative."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration (examples: 200ms, 1.5s, 5m, 1h)")
    value = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite duration")
    return value


def fraction(text: str) -> float:
    """An argparse type: a number from 0 to 1, or a percentage (``50%``)."""
    raw = text.strip()
    scale = 1.0
    if raw.endswith("%"):
        raw, scale = raw[:-1], 0.01
    try:
        value = float(raw) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction (0.5 or 50%)") from None
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a rate must be from 0 to 1 (or 0% to 100%)")
    return value


def add_command(sub: Any) -> None:
    """Add ``resil chaos`` and its subcommands."""
    chaos = sub.add_parser("chaos", help="inject faults (latency, errors, loss) inside the "
                           "agents, list them, clear them; each expires on its own")
    chaos_sub = chaos.add_subparsers(dest="chaos_command", metavar="SUBCOMMAND", required=True)
    inject = chaos_sub.add_parser(
        "inject", help="publish a fault on a resource's calls, for a limited time",
        description="Publish a fault that every agent applies to its calls to RESOURCE "
        "until it expires (--for, mandatory). Example: resil chaos inject productservice "
        "--unit hangzhou --loss 50%% --for 5m")
    inject.add_argument("resource", help="a resource of the configuration")
    inject.add_argument("--unit", default="", metavar="UNIT",
                        help="only calls to this unit's endpoints")
    inject.add_argument("--endpoint", default="", metavar="ADDRESS",
                        help="only calls to this endpoint (host:port, or an http endpoint's "
                        "URL as the configuration gives it)")
    inject.add_argument("--caller-unit", default="", metavar="UNIT",
                        help="only calls made by instances of this unit")
    inject.add_argument("--everywhere", action="store_true",
                        help="allow a fault on every unit's endpoints seen from every unit "
                        "(without it, give --unit, --endpoint or --caller-unit)")
    inject.add_argument("--latency", type=duration, default=0.0, metavar="DURATION",
                        help="added to every call (200ms, 1s)")
    inject.add_argument("--jitter", type=duration, default=0.0, metavar="DURATION",
                        help="up to this much more, drawn per call")
    inject.add_argument("--error-rate", type=fraction, default=0.0, metavar="RATE",
                        help="fraction of calls that fail with --kind (0.5 or 50%%)")
    inject.add_argument("--kind", choices=KINDS, default="reset",
                        help="how an erroring call fails: connection refused, connection "
                        "reset, timeout (a black hole: the call waits for its own timeout), "
                        "or error (HTTP --status; a MySQL or Redis error reply); "
                        "default reset")
    inject.add_argument("--status", type=int, default=503, metavar="CODE",
                        help="the HTTP status of --kind error (default 503)")
    inject.add_argument("--loss", type=fraction, default=0.0, metavar="RATE",
                        help="fraction of calls black-holed until their own timeout")
    inject.add_argument("--for", dest="ttl", type=duration, required=True, metavar="DURATION",
                        help=f"mandatory: the fault expires after this (at most "
                        f"{MAX_TTL / 3600:g} h), even if no one clears it")
    inject.add_argument("--seed", type=int, default=None,
                        help="seed of the per-call draws, to repeat a drill exactly "
                        "(default: random)")
    inject.add_argument("--config", metavar="PATH", help="configuration file")
    inject.set_defaults(func=inject_fault)

    listing = chaos_sub.add_parser("list", help="the faults published now")
    listing.add_argument("--json", action="store_true", help="as JSON")
    listing.add_argument("--config", metavar="PATH", help="configuration file")
    listing.set_defaults(func=list_faults)

    clear = chaos_sub.add_parser("clear", help="remove a fault now (or every fault)")
    clear.add_argument("id", nargs="?", help="the fault's id (see `resil chaos list`)")
    clear.add_argument("--all", action="store_true", help="remove every fault")
    clear.add_argument("--config", metavar="PATH", help="configuration file")
    clear.set_defaults(func=clear_faults)


def _refuse(message: str) -> int:
    print(f"resil: chaos: {message}", file=sys.stderr)
    return 2


def inject_fault(args: argparse.Namespace) -> int:
    """``resil chaos inject RESOURCE ...``."""
    config = load_config(args.config)
    topology = config.topology
    resource = topology.resources.get(args.resource)
    if resource is None:
        return _refuse(f"unknown resource {args.resource!r} (resources: "
                       f"{', '.join(topology.resources)})")
    for flag, unit in (("--unit", args.unit), ("--caller-unit", args.caller_unit)):
        if unit and unit not in topology.units:
            return _refuse(f"{flag} {unit!r} is not one of the units "
                           f"({', '.join(topology.units)})")
    if args.unit and args.unit not in resource.endpoints:
        return _refuse(f"{args.resource} has no endpoint in {args.unit} (its units: "
                       f"{', '.join(resource.endpoints)})")
    if args.endpoint:
        known = {str(e) for eps in resource.endpoints.values() for e in eps}
        if args.endpoint not in known:
            return _refuse(f"--endpoint {args.endpoint!r} is not an endpoint of "
                           f"{args.resource} ({', '.join(sorted(known))})")
    if not (args.unit or args.endpoint or args.caller_unit or args.everywhere):
        return _refuse(f"a fault on every endpoint of {args.resource}, seen from every "
                       "unit, is an outage of the whole service: limit it with --unit, "
                       "--endpoint or --caller-unit, or pass --everywhere")
    if args.ttl <= 0:
        return _refuse("--for must be above 0: every fault expires")
    if args.ttl > MAX_TTL:
        return _refuse(f"--for {args.ttl:g} s is longer than the limit of {MAX_TTL:g} s")
    now = time.time()
    fault = Fault(secrets.token_hex(3), resource.name, now + args.ttl, now, unit=args.unit,
                  endpoint=args.endpoint, caller=args.caller_unit, latency=args.latency,
                  jitter=args.jitter, error_rate=args.error_rate, kind=args.kind,
                  loss=args.loss, status=args.status,
                  seed=secrets.randbits(31) if args.seed is None else args.seed, by=issuer())
    problem = check(fault, topology.units)
    if problem:
        return _refuse(problem)
    try:
        plane, state = _current(config)
        faults = (*_live(state, now), fault)
        epoch = plane.publish(state.evolve(faults=faults), issuer=issuer()).epoch
    except (ControlPlaneError, SignalError) as exc:
        print(f"resil: chaos inject failed: {exc}", file=sys.stderr)
        return 1
    print(f"injected fault {fault.id} (epoch {epoch}): {fault.describe()}; expires in "
          f"{_left(fault, now)} (seed {fault.seed})")
    print(f"  clear it with: resil chaos clear {fault.id}")
    return 0


def list_faults(args: argparse.Namespace) -> int:
    """``resil chaos list``."""
    config = load_config(args.config)
    try:
        _, state = _current(config)
    except (ControlPlaneError, SignalError) as exc:
        print(f"resil: chaos list failed: {exc}", file=sys.stderr)
        return 1
    now = time.time()
    live = _live(state, now)
    if args.json:
        print(json.dumps([{**f.to_dict(), "expires_in": round(f.until - now, 1)}
                          for f in live], indent=2))
        return 0
    if not live:
        print(f"no faults (epoch {state.epoch})")
        return 0
    print(f"faults (epoch {state.epoch}):")
    for line in describe_faults(live, now):
        print(f"  {line}")
    return 0


def describe_faults(faults: Any, now: float) -> list[str]:
    """One line per fault: id, what it does, when it expires, who injected it."""
    return [f"{f.id}  {f.describe()}  (expires in {_left(f, now)}, by {f.by or '?'})"
            for f in faults]


def clear_faults(args: argparse.Namespace) -> int:
    """``resil chaos clear ID|--all``."""
    if bool(args.id) == bool(args.all):
        return _refuse("give a fault's id or --all (see `resil chaos list`)")
    config = load_config(args.config)
    try:
        plane, state = _current(config)
        now = time.time()
        live = _live(state, now)
        if args.id and args.id not in {f.id for f in live}:
            if args.id in {f.id for f in state.faults}:
                print(f"fault {args.id} has expired already: no agent applies it")
                return 0
            known = ", ".join(f.id for f in live) or "none"
            return _refuse(f"no fault {args.id!r} is published (faults: {known})")
        if not state.faults:
            print(f"no faults to clear (epoch {state.epoch})")
            return 0
        kept = () if args.all else tuple(f for f in live if f.id != args.id)
        epoch = plane.publish(state.evolve(faults=kept), issuer=issuer()).epoch
    except (ControlPlaneError, SignalError) as exc:
        print(f"resil: chaos clear failed: {exc}", file=sys.stderr)
        return 1
    gone = len(live) - len(kept)
    print(f"cleared {gone} fault{'' if gone == 1 else 's'} (epoch {epoch}); "
          f"{len(kept)} left")
    return 0


def _live(state: ControlState, now: float) -> tuple[Fault, ...]:
    return tuple(f for f in state.faults if f.active(now))


def _left(fault: Fault, now: float) -> str:
    seconds = max(0.0, fault.until - now)
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


def _current(config: Config) -> tuple[ControlPlane, ControlState]:
    """The control plane and the state to build on (see :mod:`resil.cli.traffic`)."""
    from ..ops.truth import trusted_state
    plane = open_configured(config)
    return plane, trusted_state(config, plane, issuer(), print)


# --------------------------------------------------------------------------- drills

def add_drills(drill_sub: Any) -> None:
    """Add ``resil drill degrade`` and ``resil drill site`` (:mod:`resil.ops.chaosdrill`)."""
    degrade = drill_sub.add_parser(
        "degrade", help="fault one unit's endpoints of an http resource (default: 50%% of "
        "calls lost), then clear it; report what callers in each unit saw")
    degrade.add_argument("resource", help="an http resource")
    degrade.add_argument("--unit", required=True, metavar="UNIT",
                         help="the unit whose endpoints are faulted")
    degrade.add_argument("--latency", type=duration, default=0.0, metavar="DURATION")
    degrade.add_argument("--jitter", type=duration, default=0.0, metavar="DURATION")
    degrade.add_argument("--error-rate", type=fraction, default=0.0, metavar="RATE")
    degrade.add_argument("--kind", choices=KINDS, default="reset")
    degrade.add_argument("--status", type=int, default=503, metavar="CODE")
    degrade.add_argument("--loss", type=fraction, default=None, metavar="RATE",
                         help="fraction of calls lost (default 50%% when no other effect "
                         "is given)")
    degrade.add_argument("--duration", type=duration, default=9.0, metavar="DURATION",
                         help="baseline, fault and after, a third each (default 9 s)")
    degrade.set_defaults(func=run_drill)
    site = drill_sub.add_parser(
        "site", help="lose a unit: fault its http endpoints, cut its traffic, switch its "
        "databases away; report RTO, RPO and client errors per step")
    site.add_argument("unit", help="the unit to lose")
    site.add_argument("--kind", choices=KINDS, default="refused",
                      help="how calls to the lost unit's endpoints fail (default refused)")
    site.add_argument("--step", type=duration, default=3.0, metavar="DURATION",
                      help="how long each step is watched (default 3 s)")
    site.add_argument("--yes", action="store_true",
                      help="do it: without --yes the drill says what it would do and stops "
                      "(exit 2)")
    site.set_defaults(func=run_drill)
    for command in (degrade, site):
        command.add_argument("--path", default="/", help="the path the callers call "
                             "(default /)")
        command.add_argument("--call-timeout", type=duration, default=1.0, metavar="DURATION",
                             help="each caller call's own timeout (default 1 s)")
        command.add_argument("--config", metavar="PATH", help="configuration file")
        command.add_argument("--json", action="store_true",
                             help="print the report as JSON (the steps go to stderr)")


def run_drill(args: argparse.Namespace) -> int:
    """``resil drill degrade|site``."""
    from ..ops.chaosdrill import ChaosDrill, FaultSpec
    from ..ops.probe import DrillError, DrillInputError
    from ..ops.servers import require_drivers
    config = load_config(args.config)
    require_drivers(config)
    stream = sys.stderr if args.json else sys.stdout
    drill = ChaosDrill(config, out=lambda line: print(line, file=stream, flush=True),
                       path=args.path, call_timeout=args.call_timeout)
    try:
        if args.drill_command == "degrade":
            loss = args.loss
            if loss is None:
                loss = 0.0 if (args.latency or args.jitter or args.error_rate) else 0.5
            spec = FaultSpec(args.latency, args.jitter, args.error_rate, args.kind, loss,
                             args.status)
            report = drill.degrade(args.resource, args.unit, spec, args.duration)
        else:
            https, moves = drill.site_plan(args.unit)
            if not args.yes:
                print(f"resil: drill site would fault {', '.join(https) or 'no http resource'}"
                      f" in {args.unit}, cut its traffic and switch "
                      f"{', '.join(f'{n} to {t}' for n, t in moves.items()) or 'no database'}"
                      "; run it again with --yes to do it", file=sys.stderr)
                return 2
            report = drill.site(args.unit, FaultSpec(error_rate=1.0, kind=args.kind),
                                args.step)
    except DrillInputError as exc:
        print(f"resil: drill: {exc}", file=sys.stderr)
        return 2
    except DrillError as exc:
        print(f"resil: drill failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    return 0 if report.get("ok", True) else 1
