"""``resil scale``: the scaling recommendation per service and unit, the scaler that
publishes it (``--watch``), and ``resil scale simulate``.

Exit codes as in :mod:`resil.cli.main`: 0 done, 1 the control plane failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

from ..config import load_config
from ..control import open_configured
from ..errors import ControlPlaneError


def add_command(sub: Any) -> None:
    """Add ``resil scale`` and ``resil scale simulate``."""
    scale = sub.add_parser(
        "scale", help="scaling recommendations per service and unit (rules, schedules, "
        "forecasts, unit-loss reserve); `resil scale simulate` replays a demand curve",
        description="Compute the desired instances of every service in every unit from "
        "the policies of [scaling] and the fleet's load. Without --watch it prints the "
        "recommendation and publishes nothing; with --watch it is the scaler: it records "
        "the load history and publishes the recommendation that every agent serves on "
        "/scale (KEDA's metrics-api) and /metrics. `resil monitor` hosts the same scaler "
        "when [scaling] is configured.")
    scale.add_argument("--config", metavar="PATH", help="configuration file")
    scale.add_argument("--service", metavar="NAME", help="only this service")
    scale.add_argument("--json", action="store_true", help="print JSON")
    scale.add_argument("--watch", action="store_true",
                       help="run as the scaler until stopped: record, compute and publish "
                       "every [scaling] interval")
    scale.set_defaults(func=_scale)
    scale_sub = scale.add_subparsers(dest="scale_command", metavar="SUBCOMMAND")
    simulate = scale_sub.add_parser(
        "simulate", help="replay a demand curve through the policies and compare them",
        description="Replay a demand curve (a CSV file: time,UNIT,...; or a built-in "
        "curve: daily, flash-sale, unit-loss) through the policies of [scaling], as "
        "reactive only, + schedule, + predictive and + predictive + reserve, on a model of "
        "instance start-up time and per-instance capacity. Prints instance-minutes, "
        "minutes over target, peak saturation and requests beyond capacity; --png draws "
        "demand against supply.")
    simulate.add_argument("curve", help="a CSV file, or daily, flash-sale, unit-loss")
    simulate.add_argument("--config", metavar="PATH",
                          help="configuration whose [scaling] policies to replay (default: "
                          "the declared defaults)")
    simulate.add_argument("--service", metavar="NAME",
                          help="whose policies ([scaling.services.NAME]; default: [scaling])")
    simulate.add_argument("--capacity", type=_positive, default=50.0, metavar="RPS",
                          help="requests per second one instance serves at 100%% "
                          "utilization (default %(default)s)")
    simulate.add_argument("--startup-time", type=_seconds, metavar="S",
                          help="seconds an instance takes to serve (default: [scaling] "
                          "startup_time)")
    simulate.add_argument("--scale-down-delay", type=_seconds, default=300.0, metavar="S",
                          help="the autoscaler removes instances only after the "
                          "recommendation stayed lower this long (HPA: %(default)s)")
    simulate.add_argument("--png", metavar="PATH", help="draw demand against supply")
    simulate.add_argument("--plot-days", type=_positive, default=1.0, metavar="DAYS",
                          help="the PNG shows the last DAYS days (default %(default)s)")
    simulate.add_argument("--export-csv", metavar="PATH",
                          help="also write the curve as CSV (to edit a built-in one)")
    simulate.add_argument("--json", action="store_true", help="print JSON")
    simulate.set_defaults(func=_simulate)


def describe(config: Any) -> str:
    """One line of ``resil config check`` on ``[scaling]``."""
    scaling = config.scaling
    policies = [("[scaling]", scaling.defaults)] + [
        (f"service {name}", p) for name, p in scaling.services.items()]
    parts = []
    for name, p in policies:
        used = ["target"] + (["rules"] if p.rules else []) + \
            (["schedules"] if p.schedules else []) + \
            (["predictive"] if p.predictive else []) + \
            (["reserve"] if p.unit_loss_reserve else [])
        parts.append(f"{name}: {'+'.join(used)}")
    line = (f"{'; '.join(parts)} (every {scaling.interval:g} s; history "
            f"{scaling.history_days} days × {scaling.history_series} series at most)")
    import importlib.util
    if any(p.predictive for _, p in policies) and importlib.util.find_spec("numpy") is None:
        line += "; predictive needs numpy where the scaler runs (pip install 'resil[scale]')"
    return line


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def _seconds(text: str) -> float:
    from .chaos import duration
    return duration(text)


def _scale(args: argparse.Namespace) -> int:
    from ..ops.scaler import Scaler
    config = load_config(args.config)
    try:
        plane = open_configured(config)
    except ControlPlaneError as exc:
        print(f"resil: {exc}", file=sys.stderr)
        return 1
    scaler = Scaler(config, plane, out=_say)
    if args.watch:
        import signal
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        _say(f"scaler: every {config.scaling.interval:g} s on {plane.url}; history "
             f"{config.scaling.history_days} days")
        scaler.run(stop)
        return 0
    try:
        found = scaler.evaluate(record=False)
        stored = _stored_age(plane, config)
    except ControlPlaneError as exc:
        print(f"resil: scale: {exc}", file=sys.stderr)
        return 1
    advice = {s: u for s, u in found.advice.items() if not args.service or s == args.service}
    if args.service and not advice:
        print(f"resil: scale: no service {args.service!r} (known: "
              f"{', '.join(found.advice) or 'none'})", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"generated_at": found.generated_at, "published": stored,
                          "services": {s: {u: a.as_dict() for u, a in units.items()}
                                       for s, units in advice.items()}},
                         indent=2, sort_keys=True))
        return 0
    print(f"published: {stored}")
    for service, units in advice.items():
        print(f"service {service}")
        for unit, a in units.items():
            print(f"  {unit:<12} {a.instances:>4} now -> {a.desired:>4}  decided by "
                  f"{a.decided_by}: {a.reason}")
            for figure in a.figures:
                shown = "-" if figure.instances is None else str(figure.instances)
                print(f"      {figure.policy:<22} {shown:>5}  {figure.reason}")
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


def _stored_age(plane: Any, config: Any) -> str:
    """How old the published recommendation is, in words."""
    from .. import scale
    raw = plane.get_document(scale.DOCUMENT)
    if raw is None:
        return "never (run `resil scale --watch`, or `resil monitor` with [scaling])"
    keys = [k for k in (config.signing_key, *config.previous_signing_keys) if k]
    try:
        document = scale.decode_recommendation(raw, keys)
    except scale.RecommendationError as exc:
        return f"REFUSED by the agents: {exc}"
    age = time.time() - float(document["generated_at"])
    stale = "  STALE: agents serve their fallback" if age > scale.stale_after(document) else ""
    return f"{age:.0f} s ago by {document.get('by', '?')}{stale}"


def _simulate(args: argparse.Namespace) -> int:
    import dataclasses

    from ..ops import curves, simulate
    from ..scalepolicy import default_scaling
    scaling = load_config(args.config).scaling if args.config else default_scaling()
    if args.service and args.service not in scaling.services:
        print(f"resil: scale simulate: no [scaling.services.{args.service}] (services: "
              f"{', '.join(scaling.services) or 'none'})", file=sys.stderr)
        return 2
    policy = scaling.policy(args.service or "")
    try:
        curve = curves.load(args.curve)
    except curves.CurveError as exc:
        print(f"resil: scale simulate: {exc}", file=sys.stderr)
        return 2
    if args.export_csv:
        from pathlib import Path
        curve.write_csv(Path(args.export_csv))
    startup = policy.startup_time if args.startup_time is None else args.startup_time
    policy = dataclasses.replace(policy, startup_time=startup)
    options = simulate.Options(capacity=args.capacity, startup_time=startup,
                               scale_down_delay=args.scale_down_delay,
                               warmup=min(simulate.WARMUP_MINUTES, curve.minutes // 2))
    try:
        results = simulate.compare(curve, policy, options)
    except ImportError as exc:
        print(f"resil: scale simulate: {exc.name} is needed for forecasts "
              "(pip install 'resil[scale]')", file=sys.stderr)
        return 2
    if args.png:
        try:
            simulate.plot(curve, results, args.png, args.plot_days)
        except ImportError:
            print("resil: scale simulate: --png needs matplotlib (pip install "
                  "'resil[scale]')", file=sys.stderr)
            return 2
    measured = (f"{curve.name}: {curve.minutes / 1440:g} days, units "
                f"{', '.join(curve.units)}; measured after {options.warmup} min of warm-up; "
                f"capacity {args.capacity:g} req/s per instance, start-up {startup:g} s, "
                f"target {policy.target_utilization:g}")
    if args.json:
        print(json.dumps({"curve": curve.name, "summary": measured,
                          "results": [r.as_dict() for r in results]}, indent=2))
        return 0
    print(measured)
    for line in simulate.table(results):
        print(line)
    if args.png:
        print(f"plot: {args.png}")
    return 0


def status_section(config: Any) -> dict[str, Any] | None:
    """What ``resil status`` shows of scaling: the published recommendation's age and,
    per service and unit, the desired instances and the policy that decided (None: no
    recommendation was ever published)."""
    from .. import scale
    try:
        raw = open_configured(config).get_document(scale.DOCUMENT)
    except ControlPlaneError:
        return None
    if raw is None:
        return None
    keys = [k for k in (config.signing_key, *config.previous_signing_keys) if k]
    try:
        document = scale.decode_recommendation(raw, keys)
    except scale.RecommendationError as exc:
        return {"problem": f"the stored recommendation is refused: {exc}"}
    age = time.time() - float(document["generated_at"])
    return {"age_s": round(age, 1), "by": document.get("by"),
            "stale": age > scale.stale_after(document),
            "services": {str(s): {str(u): {"desired": e.get("desired"),
                                           "decided_by": e.get("decided_by"),
                                           "instances": e.get("instances")}
                                  for u, e in dict(v.get("units") or {}).items()}
                         for s, v in document["services"].items() if isinstance(v, dict)}}


def status_lines(section: dict[str, Any] | None) -> list[str]:
    """``resil status``'s lines for :func:`status_section`."""
    if section is None:
        return []
    if "problem" in section:
        return [f"scaling:  {section['problem']}"]
    stale = "  STALE: agents serve their fallback (is the scaler running?)" \
        if section["stale"] else ""
    lines = [f"scaling:  recommended {section['age_s']:g} s ago by {section['by']}{stale}"]
    for service, units in section["services"].items():
        shown = "  ".join(f"{u} {e['instances']}->{e['desired']} ({e['decided_by']})"
                          for u, e in units.items())
        lines.append(f"  service {service:<16} {shown}")
    return lines
