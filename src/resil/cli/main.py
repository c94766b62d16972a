"""``resil``: the operator's command.

Implemented here: ``resil config check [PATH]``, ``resil status [--json]``,
``resil db switch RESOURCE --to UNIT``, ``resil db unlock``, ``resil monitor``,
``resil traffic cut|restore UNIT``, ``resil drill switch|kill`` (:mod:`resil.ops.drill`)
and (in :mod:`.traffic`) ``resil traffic set UNIT=WEIGHT ...`` and ``resil traffic
rules``.
Exit codes: 0 success, 1 the command ran and found a problem (or a switch failed and
was rolled back), 2 bad input (configuration, arguments).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from .._version import __version__
from ..config import DEFAULT_SERVICE, Config, load_config
from ..control import open_configured, safe_url
from ..control.base import ControlPlane, live
from ..errors import (
    ConfigError,
    ControlPlaneError,
    SignalError,
    SwitchError,
    SwitchInputError,
    SwitchInterrupted,
)
from ..ops.locks import lease_name, resolve_orphans
from ..ops.monitor import Monitor, MonitorOptions
from ..ops.servers import require_drivers
from ..ops.switch import PAUSABLE_STEPS, Switch, SwitchOptions
from ..ops.truth import read as read_stored
from ..ops.truth import reconcile, trusted_state
from ..state import ControlState, Signal, issuer
from . import chaos as chaos_commands
from . import doctor as doctor_command
from . import scale as scale_commands
from . import traffic as traffic_commands


def _seconds(text: str, most: float = math.inf) -> float:
    """An argparse type: a finite number of seconds above 0 (and at most ``most``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number above 0")
    if value > most:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at most {most:g} s")
    return value


def _lease_seconds(text: str) -> float:
    return _seconds(text, most=30.0)     # see resil.control.base.lease_cap


def _pause_after(text: str) -> tuple[str, float]:
    """An argparse type: ``STEP:SECONDS``, a step of the locked part of a switch."""
    step, _, seconds = text.rpartition(":")
    if step not in PAUSABLE_STEPS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected STEP:SECONDS with STEP one of {', '.join(PAUSABLE_STEPS)}")
    return step, _seconds(seconds, most=60.0)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``resil``."""
    p = argparse.ArgumentParser(prog="resil", description="Operate resil: inspect and "
                                "change control state, check configuration.")
    p.add_argument("--version", action="version", version=f"resil {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    status = sub.add_parser("status", help="unit, control-plane epoch, primaries, weights, locks")
    status.add_argument("--config", metavar="PATH", help="configuration file")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--agents", action="store_true",
                        help=f"list every agent (by default only up to {LIST_UP_TO}; beyond, "
                             "a summary per service and unit)")
    status.set_defaults(func=_status)

    db = sub.add_parser("db", help="database primaries")
    db_sub = db.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    switch = db_sub.add_parser(
        "switch", help="planned primary switch: precheck, converge, spares, lock, drain, fence, "
        "catch-up, promote, reverse, publish, verify")
    switch.add_argument("resource", help="a mysql or redis resource")
    switch.add_argument("--to", required=True, metavar="UNIT", help="the unit of the new primary")
    switch.add_argument("--config", metavar="PATH", help="configuration file")
    defaults = SwitchOptions()
    switch.add_argument("--max-lag", type=_seconds, default=defaults.max_lag, metavar="S",
                        help="refuse when the target lags more (default %(default)s s)")
    switch.add_argument("--drain-timeout", type=_seconds, default=defaults.drain_timeout,
                        metavar="S", help="longest wait for open transactions "
                        "(default %(default)s s)")
    switch.add_argument("--catchup-timeout", type=_seconds, default=defaults.catchup_timeout,
                        metavar="S", help="longest wait for the target to catch up "
                        "(default %(default)s s)")
    switch.add_argument("--converge-timeout", type=_seconds,
                        default=defaults.converge_timeout, metavar="S",
                        help="longest wait, before locking, for the target to come level "
                        "with the primary (default %(default)s s); past it: refuse")
    switch.add_argument("--spares-timeout", type=_seconds,
                        default=defaults.spares_timeout, metavar="S",
                        help="longest wait, before locking, for agents to open spare "
                        "connections to the target (default %(default)s s); past it: lock")
    switch.add_argument("--no-reverse", action="store_true",
                        help="leave the old primary fenced instead of making it a replica")
    switch.add_argument("--dry-run", action="store_true", help="run the prechecks only")
    switch.add_argument("--pause-after", type=_pause_after, metavar="STEP:S",
                        help="rehearsal: stop S seconds after STEP (one of "
                        f"{', '.join(PAUSABLE_STEPS)}), writes held, to kill or stop the "
                        "switch exactly there")
    switch.set_defaults(func=_db_switch)
    unlock = db_sub.add_parser(
        "unlock", help="resolve a lock left by a switch or failover that died: finish or "
        "roll it back from the servers' real roles")
    unlock.add_argument("resource")
    unlock.add_argument("--config", metavar="PATH", help="configuration file")
    unlock.add_argument("--force", action="store_true",
                        help="remove the lock as it is, without resolving it from the "
                        "servers (after checking them yourself)")
    unlock.set_defaults(func=_db_unlock)
    rejoin = db_sub.add_parser(
        "rejoin", help="make a fenced old primary a replica of the current primary "
        "(refuses, naming them, when it has writes the primary never got)")
    rejoin.add_argument("resource", help="a mysql or redis resource")
    rejoin.add_argument("unit", help="the unit of the server to rejoin")
    rejoin.add_argument("--config", metavar="PATH", help="configuration file")
    rejoin.add_argument("--timeout", type=_seconds, default=10.0, metavar="S",
                        help="longest wait for it to replicate (default %(default)s s)")
    rejoin.add_argument("--discard-errant", action="store_true",
                        help="Redis only: rejoin even when it has writes the primary "
                        "never got (a full resync replaces its data)")
    rejoin.set_defaults(func=_db_rejoin)

    monitor = sub.add_parser(
        "monitor", help="detect dead primaries and fail over (one acts: lease in the "
        "control plane)")
    monitor.add_argument("--config", metavar="PATH", help="configuration file")
    mdefaults = MonitorOptions()
    monitor.add_argument("--interval", type=_seconds, default=mdefaults.interval, metavar="S",
                         help="seconds between probes (default %(default)s)")
    monitor.add_argument("--failures", type=_count, default=mdefaults.failures, metavar="N",
                         help="failed probes in a row before a primary is suspected "
                         "(default %(default)s)")
    monitor.add_argument("--timeout", type=_seconds, default=mdefaults.timeout, metavar="S",
                         help="bound of one probe (default %(default)s s)")
    monitor.add_argument("--anti-flap", type=_seconds, default=mdefaults.anti_flap, metavar="S",
                         help="no second automatic failover of a resource within this "
                         "(default %(default)s s)")
    monitor.add_argument("--lease-ttl", type=_lease_seconds, default=mdefaults.lease_ttl,
                         metavar="S", help="lease of the acting monitor, at most 30 s; every "
                         "monitor must use the same (default %(default)s s)")
    monitor.add_argument("--no-scale", action="store_true",
                         help="do not host the scaler (by default a monitor runs `resil scale "
                         "--watch` beside its probes when [scaling] is configured)")
    monitor.set_defaults(func=_monitor)

    drill = sub.add_parser("drill", help="inject a fault and report RTO, RPO and client "
                           "errors (a probe writes through the agent meanwhile)")
    drill_sub = drill.add_subparsers(dest="drill_command", metavar="FAULT", required=True)
    drill_switch = drill_sub.add_parser(
        "switch", help="a planned switch (as `resil db switch`) under the probe's writes")
    drill_switch.add_argument("resource", help="a mysql or redis resource")
    drill_switch.add_argument("--to", required=True, metavar="UNIT",
                              help="the unit of the new primary")
    drill_switch.add_argument("--duration", type=_seconds, default=3.0, metavar="S",
                              help="seconds of probing, half before the switch and half "
                              "after it (default %(default)s)")
    drill_kill = drill_sub.add_parser(
        "kill", help="kill -9 the primary's server (on this host only) and wait for a "
        "monitor to fail over; the killed server stays down")
    drill_kill.add_argument("resource", help="a mysql or redis resource")
    drill_kill.add_argument("--timeout", type=_seconds, default=60.0, metavar="S",
                            help="longest wait for a new primary and a write there "
                            "(default %(default)s s)")
    drill_kill.add_argument("--yes", action="store_true",
                            help="kill it: without --yes the drill says what it would kill "
                            "and stops (exit 2)")
    for command in (drill_switch, drill_kill):
        command.add_argument("--config", metavar="PATH", help="configuration file")
        command.add_argument("--json", action="store_true",
                             help="print the report as JSON (the steps go to stderr)")
        command.add_argument("--keep", action="store_true",
                             help="leave the probe's rows / key in place")
        command.set_defaults(func=_drill)
    chaos_commands.add_drills(drill_sub)

    traffic = sub.add_parser("traffic", help="take a unit out of service and bring it back, "
                             "set unit weights, set the routing-key rules")
    traffic_sub = traffic.add_subparsers(dest="traffic_command", metavar="SUBCOMMAND",
                                         required=True)
    for name, help_text in (("cut", "set the unit's weight to 0: its instances turn "
                                    "not-ready (/readyz 503)"),
                            ("restore", "set the unit's weight back to 1")):
        command = traffic_sub.add_parser(name, help=help_text)
        command.add_argument("unit")
        command.add_argument("--config", metavar="PATH", help="configuration file")
        if name == "cut":
            command.add_argument("--yes", action="store_true",
                                 help="cut it even when no other unit has traffic (a total "
                                 "outage: every instance turns not-ready)")
        command.set_defaults(func=_traffic, weight=0.0 if name == "cut" else 1.0)
    traffic_commands.add_commands(traffic_sub)
    chaos_commands.add_command(sub)
    scale_commands.add_command(sub)
    doctor_command.add_command(sub)

    state_cmd = sub.add_parser("state", help="the control state itself")
    state_sub = state_cmd.add_subparsers(dest="state_command", metavar="SUBCOMMAND",
                                         required=True)
    reconcile = state_sub.add_parser(
        "reconcile", help="rebuild the control state from the servers' real roles and "
        "republish it above every epoch the agents applied")
    reconcile.add_argument("--config", metavar="PATH", help="configuration file")
    reconcile.set_defaults(func=_state_reconcile)

    config = sub.add_parser("config", help="configuration commands")
    config_sub = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    check = config_sub.add_parser("check", help="validate a configuration and print the topology")
    check.add_argument("path", nargs="?", help="configuration file (default: RESIL_CONFIG or "
                       "./resil.toml)")
    check.set_defaults(func=_config_check)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``resil``."""
    args = parser().parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()      # here, where a reader that left is caught: not at exit
        return code
    except ConfigError as exc:
        print(f"resil: configuration error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:     # `resil status | head -1`: the reader left, as it may
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())   # no second error when Python flushes
        return 141


def _db_switch(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    require_drivers(config, args.resource)
    options = SwitchOptions(max_lag=args.max_lag, drain_timeout=args.drain_timeout,
                            catchup_timeout=args.catchup_timeout,
                            converge_timeout=args.converge_timeout,
                            spares_timeout=args.spares_timeout,
                            reverse=not args.no_reverse, dry_run=args.dry_run,
                            pause_after=args.pause_after)
    try:
        plane = open_configured(config)
        switch = Switch(config, plane, args.resource, args.to, options,
                        out=lambda line: print(line, flush=True))
        with _stop_signals(switch.interrupt):
            switch.run()
    except SwitchInputError as exc:
        print(f"resil: switch: {exc}", file=sys.stderr)
        return 2
    except (SwitchError, ControlPlaneError, SignalError) as exc:
        rolled = ("; rolled back" if switch.took_lock else "; nothing was locked") \
            if isinstance(exc, SwitchInterrupted) else ""
        print(f"resil: switch failed: {exc}{rolled}", file=sys.stderr)
        return 1
    if switch.deferred:
        print(f"resil: {args.resource} switched; {switch.deferred} arrived after promote "
              "and waited for the switch to finish", file=sys.stderr)
    if switch.behind:
        print(f"resil: {args.resource} switched on the servers, but {len(switch.behind)} "
              f"live agent(s) did not apply it: {', '.join(switch.behind)}; see `resil "
              "status`", file=sys.stderr)
        return 3
    return 0


@contextlib.contextmanager
def _stop_signals(interrupt: Callable[[str], None]) -> Iterator[None]:
    """SIGTERM, SIGINT and SIGHUP call ``interrupt(name)`` while the block runs (what
    `timeout`, CI runners, systemd and Kubernetes send; Ctrl-C), instead of killing the
    process or raising KeyboardInterrupt anywhere: the switch decides whether it rolls
    back or finishes first."""
    import signal
    wanted = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {s: signal.getsignal(s) for s in wanted}

    def handler(signum: int, frame: object) -> None:
        interrupt(signal.Signals(signum).name)
    for s in wanted:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def _monitor(args: argparse.Namespace) -> int:
    import signal
    import threading
    config = load_config(args.config)
    require_drivers(config)
    options = MonitorOptions(interval=args.interval, failures=args.failures,
                             timeout=args.timeout, anti_flap=args.anti_flap,
                             lease_ttl=args.lease_ttl)
    try:
        plane = open_configured(config)
    except ControlPlaneError as exc:
        print(f"resil: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    scaler = None
    if config.scaling.configured and not args.no_scale:
        from ..ops.scaler import Scaler
        # Its own connection: the scaler's reads never delay a probe round.
        scaler = threading.Thread(target=Scaler(config, open_configured(config), out=_say).run,
                                  args=(stop,), name="resil-scale", daemon=True)
        scaler.start()
    Monitor(config, plane, options, out=_say).run(stop)
    if scaler is not None:
        scaler.join(timeout=5)
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


def _drill(args: argparse.Namespace) -> int:
    from ..ops.drill import Drill, DrillOptions
    from ..ops.probe import DrillError, DrillInputError
    config = load_config(args.config)
    require_drivers(config, args.resource)
    stream = sys.stderr if args.json else sys.stdout
    options = DrillOptions(duration=getattr(args, "duration", 3.0),
                           timeout=getattr(args, "timeout", 60.0), keep=args.keep)
    drill = Drill(config, args.resource, options,
                  out=lambda line: print(line, file=stream, flush=True))
    try:
        if args.drill_command == "kill" and not args.yes:
            print(f"resil: drill kill would kill -9 {drill.kill_target()}, and it stays "
                  "down; run it again with --yes to do it", file=sys.stderr)
            return 2
        report = drill.switch(args.to) if args.drill_command == "switch" else drill.kill()
    except DrillInputError as exc:
        print(f"resil: drill: {exc}", file=sys.stderr)
        return 2
    except (DrillError, ControlPlaneError, SignalError) as exc:
        print(f"resil: drill failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    return report.exit_code


def _traffic(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.unit not in config.topology.units:
        print(f"resil: unknown unit {args.unit!r} (units: {', '.join(config.topology.units)})",
              file=sys.stderr)
        return 2
    try:
        plane = open_configured(config)
        state = trusted_state(config, plane, issuer(), print)
        if state.weights.get(args.unit) == args.weight:
            print(f"unit {args.unit} already has weight {args.weight:g} (epoch {state.epoch})")
            return 0
        serving = [u for u in config.topology.units
                   if u != args.unit and state.weights.get(u, 1.0) > 0]
        if args.weight == 0 and not serving and not args.yes:
            print(f"resil: unit {args.unit} is the last unit with traffic: cutting it is a "
                  "total outage (every instance answers /readyz with 503). Restore another "
                  "unit first, or pass --yes to cut it anyway", file=sys.stderr)
            return 2
        epoch = plane.publish(state.evolve(weights={**state.weights, args.unit: args.weight}),
                              issuer=issuer()).epoch
    except (ControlPlaneError, SignalError, SwitchError) as exc:
        print(f"resil: traffic change failed: {exc}", file=sys.stderr)
        return 1
    what = "cut: its instances answer /readyz with 503" if args.weight == 0 else \
        "restored: its instances are ready again"
    print(f"unit {args.unit} {what} (epoch {epoch})")
    return 0


def _db_rejoin(args: argparse.Namespace) -> int:
    from ..ops.rejoin import Rejoin
    config = load_config(args.config)
    require_drivers(config, args.resource)
    try:
        plane = open_configured(config)
        print(Rejoin(config, plane, args.resource, args.unit, args.discard_errant,
                     args.timeout).run())
    except SwitchInputError as exc:
        print(f"resil: rejoin: {exc}", file=sys.stderr)
        return 2
    except (ControlPlaneError, SignalError, SwitchError) as exc:
        print(f"resil: rejoin refused: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:    # a server's own error: one line, not a traceback
        print(f"resil: rejoin failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def _db_unlock(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    require_drivers(config, args.resource)
    try:
        plane = open_configured(config)
        state = trusted_state(config, plane, issuer(), print)
        lock = state.locks.get(args.resource)
        if lock is None:
            print(f"{args.resource} is not locked (epoch {state.epoch})")
            return 0
        if not args.force:
            # A dead holder's lock is resolved from the servers (finished or rolled back);
            # a live holder's is left alone.
            only = ControlState(locks={args.resource: lock})
            if resolve_orphans(config, plane, issuer(), only, print):
                return 0
            print(f"resil: {args.resource} stays locked by {lock.holder} ({lock.reason}): "
                  "its holder's lease is alive, or the servers do not say which is the "
                  "primary (see above). --force removes the lock as it is",
                  file=sys.stderr)
            return 1
        locks = {k: v for k, v in state.locks.items() if k != args.resource}
        epoch = plane.publish(state.evolve(locks=locks), issuer=issuer()).epoch
    except (ControlPlaneError, SignalError, SwitchError) as exc:
        print(f"resil: unlock failed: {exc}", file=sys.stderr)
        return 1
    print(f"unlocked {args.resource} (held by {lock.holder} for {lock.reason!r}) at epoch "
          f"{epoch}; held writes now go to the primary {state.primaries.get(args.resource)}."
          "\nCheck that server accepts writes: a switch that died after its fence step "
          "left it read-only.")
    return 0


def _state_reconcile(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    require_drivers(config)
    try:
        plane = open_configured(config)
        stored = read_stored(config, plane)
        print(f"stored state: {stored.problem or 'readable and not behind the agents'} "
              f"(agents applied up to epoch {stored.agents_epoch})")
        reconcile(config, plane, issuer(), stored, print)
    except (ControlPlaneError, SignalError, SwitchError) as exc:
        print(f"resil: reconcile failed: {exc}", file=sys.stderr)
        return 1
    return 0


def _config_check(args: argparse.Namespace) -> int:
    from ..bootstrap import check_control_url, check_integrations
    config = load_config(args.path)
    check_control_url(config)
    check_integrations(config, os.environ)
    outlasting = _outlasting_holds(config)
    if outlasting:
        for line in outlasting:
            print(f"resil: configuration error: {config.path}: {line}", file=sys.stderr)
        return 2
    warning = _durability(config)
    print(f"configuration OK: {config.path}")
    print(f"unit: {config.unit}")
    print(f"units: {', '.join(config.topology.units)}")
    print(f"control: {safe_url(config.control_url)}"
          f"{' (signed with $' + config.signing_key_env + ')' if config.signing_key_env else ''}")
    admin = config.admin_listen
    print(f"admin: {f'{admin[0]}:{admin[1]}' if admin else 'off'}")
    print("resources:")
    for resource in config.resources.values():
        primary = f"  primary {resource.primary}" if resource.primary else ""
        print(f"  {resource.name} ({resource.kind}){primary}")
        for unit, endpoints in resource.endpoints.items():
            mark = " *" if unit == config.unit else ""
            print(f"    {unit}: {', '.join(map(str, endpoints))}{mark}")
        if resource.aliases:
            print(f"    aliases: {', '.join(map(str, resource.aliases))}")
        if resource.reads == "local":
            print(f"    reads: local (max lag {resource.max_lag:g} s, read wait "
                  f"{resource.read_wait:g} s)")
    if config.sessions_resource:
        print(f"sessions: {config.sessions_resource}")
    if config.scaling_table is not None:
        print("scaling:  " + scale_commands.describe(config))
    if warning:
        print(f"warning: {warning}")
    return 0


def _outlasting_holds(config: Config) -> list[str]:
    """Resources whose agents would give up a held write (a client error) before a
    switch with the default bounds is done: such a configuration is rejected."""
    from ..ops.switch import MARGIN
    options = SwitchOptions()
    budget = options.drain_timeout + options.catchup_timeout + MARGIN
    return [f"resources.{name}.lock_timeout = {r.lock_timeout:g} s is not above the "
            f"longest a switch holds writes ({budget:g} s: drain {options.drain_timeout:g} "
            f"+ catch-up {options.catchup_timeout:g} + {MARGIN:g} for promote..publish); "
            "held writes would fail. Raise it above "
            f"{budget:g} s (the default is 5 s)"
            for name, r in config.resources.items()
            if r.kind != "http" and r.lock_timeout <= budget]


def _durability(config: Config) -> str:
    """The control plane's durability warning, when it can be reached quickly (a check
    of the configuration must not hang on an unreachable store)."""
    if urlsplit(config.control_url).scheme == "file":
        return ""
    try:
        return open_configured(config).durability() or ""
    except ControlPlaneError:
        return ""


def _status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    state, signal, problem, agents, warning, progress = _read_state(config)
    report = status_report(config, state, signal, problem, agents, warning, progress,
                           reachable=not problem.startswith(UNREACHABLE))
    report["scaling"] = scale_commands.status_section(config) \
        if report["control"]["reachable"] else None
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        _print_status(report, every_agent=args.agents)
    return 1 if problem else 0


def _lock_progress(plane: ControlPlane, name: str, holder: str) -> dict[str, Any]:
    """Whether the holder of ``name``'s lock is alive, and the step it last reached."""
    note = plane.lease_note(lease_name(name))
    step = note.note if note is not None and note.holder == holder else None
    return {"lease_alive": plane.lease_holder(lease_name(name)) is not None, "step": step,
            "step_age_s": round(time.time() - note.at, 1) if step and note else None}


UNREACHABLE = "control plane unreachable: "
"""How ``resil status`` begins a problem that left it with no state to show."""


def _read_state(config: Config) -> tuple[ControlState, Signal | None, str,
                                         list[dict[str, Any]], str, dict[str, Any]]:
    """The stored state, its problem (empty: none), the agents, a durability warning and
    each lock's progress (:func:`_lock_progress`)."""
    initial = ControlState.initial(config.topology)
    try:
        plane = open_configured(config)
    except ControlPlaneError as exc:
        return initial, None, f"{UNREACHABLE}{exc}", [], "", {}
    try:
        now = time.time()
        agents = [{**a, "live": live(a, config.heartbeat_interval, now)}
                  for a in plane.agents()]
        stored = read_stored(config, plane)
        alive = {name: _lock_progress(plane, name, lock.holder)
                 for name, lock in stored.state.locks.items()}
    except ControlPlaneError as exc:
        return initial, None, f"{UNREACHABLE}{exc}", [], "", {}
    problem = f"{stored.problem}; `resil state reconcile` rebuilds it from the servers" \
        if stored.problem else ""
    return stored.state, stored.signal, problem, agents, plane.durability() or "", alive


def _fault_line(raw: dict[str, Any]) -> str:
    from ..faults import Fault
    fields = {k: v for k, v in raw.items() if k != "expires_in"}
    fault = Fault(**fields)
    return chaos_commands.describe_faults([fault], time.time())[0]


def status_report(config: Config, state: ControlState, signal: Signal | None,
                  problem: str, agents: list[dict[str, Any]] | None = None,
                  warning: str = "",
                  progress: dict[str, Any] | None = None,
                  reachable: bool = True) -> dict[str, Any]:
    """The data ``resil status`` prints (``--json`` prints exactly this). When the control
    plane cannot be reached (``reachable`` False), nothing of the live state is known:
    primaries are None, with the configuration's as ``configured``."""
    resources = {}
    for name, resource in config.resources.items():
        entry: dict[str, Any] = {
            "kind": resource.kind,
            "endpoints": {u: [str(e) for e in eps] for u, eps in resource.endpoints.items()},
        }
        if resource.kind != "http":
            unit = state.primary_unit(resource)
            endpoint = resource.endpoint_in(unit) if unit else None
            entry["primary"] = {"unit": unit, "endpoint": str(endpoint) if endpoint else None} \
                if reachable else {"unit": None, "endpoint": None, "configured": unit}
        resources[name] = entry
    return {
        "unit": config.unit,
        "control": {
            "url": safe_url(config.control_url),
            "reachable": reachable,
            "epoch": state.epoch if reachable else None,
            "issued_at": signal.issued_at if signal else None,
            "issuer": signal.issuer if signal else None,
            "signed": bool(signal and signal.signature),
            "problem": problem or None,
            "warning": warning or None,
        },
        "resources": resources,
        "weights": dict(state.weights) if reachable else None,
        "routes": [rule.to_dict() for rule in state.routes] if reachable else None,
        "faults": [{**f.to_dict(), "expires_in": round(f.until - time.time(), 1)}
                   for f in state.faults if f.active(time.time())] if reachable else None,
        "locks": {name: {**lock.to_dict(), "age_s": round(time.time() - lock.since, 1),
                         **(progress or {}).get(name, {"lease_alive": False, "step": None,
                                                       "step_age_s": None})}
                  for name, lock in state.locks.items()},
        "intents": {name: {**intent.to_dict(), "expires_in": round(intent.until - time.time(), 1)}
                    for name, intent in state.intents.items() if intent.live(time.time())},
        "fleet": _fleet_summary(agents or [], state.epoch),
        "agents": [
            {"id": a.get("id"), "unit": a.get("unit"),
             "service": a.get("service") or DEFAULT_SERVICE,
             "epoch": a.get("epoch"),
             "in_flight": a.get("in_flight", {}), "live": a.get("live", False),
             "age_s": round(time.time() - float(a.get("reported_at", 0)), 1),
             "program": a.get("program", ""), "admin": a.get("admin"),
             "avoids": {f"{resource} {endpoint}": h.get("state") for resource, report
                        in dict(a.get("http_health") or {}).items()
                        for endpoint, h in dict(report).items()}}
            for a in agents or []
        ],
    }


LIST_UP_TO = 10
"""``resil status`` lists agents one by one up to this many (``--agents``: all)."""


def _fleet_summary(agents: list[dict[str, Any]], epoch: int) -> list[dict[str, Any]]:
    """Per service and unit: live and stale agents, those behind ``epoch``, and their
    open transactions per resource."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for a in agents:
        key = (str(a.get("service") or DEFAULT_SERVICE), str(a.get("unit")))
        group = groups.setdefault(key, {"service": key[0], "unit": key[1], "live": 0,
                                        "stale": 0, "behind": 0, "in_flight": {}})
        if not a.get("live"):
            group["stale"] += 1
            continue
        group["live"] += 1
        try:
            group["behind"] += int(a.get("epoch", 0)) < epoch
            for resource, busy in dict(a.get("in_flight") or {}).items():
                group["in_flight"][resource] = group["in_flight"].get(resource, 0) + int(busy)
        except (TypeError, ValueError):
            continue
    return [groups[k] for k in sorted(groups)]


def _print_status(report: dict[str, Any], every_agent: bool = False) -> None:
    control = report["control"]
    print(f"unit:     {report['unit']}")
    if not control.get("reachable", True):
        print(f"control:  {control['url']}  UNREACHABLE: the live state is unknown (agents "
              "keep the last state they applied)")
    elif control["issuer"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(control["issued_at"]))
        signed = ", signed" if control["signed"] else ""
        print(f"control:  {control['url']}  epoch {control['epoch']} "
              f"(published {when} by {control['issuer']}{signed})")
    else:
        print(f"control:  {control['url']}  epoch {control['epoch']} "
              "(nothing published: the configuration's primaries apply)")
    if control["problem"]:
        print(f"problem:  {control['problem']}")
    if control.get("warning"):
        print(f"warning:  {control['warning']}")
    print("resources:")
    for name, entry in report["resources"].items():
        if "primary" in entry and "configured" in entry["primary"]:
            print(f"  {name:<20} {entry['kind']:<6} primary unknown (the configuration "
                  f"says {entry['primary']['configured']})")
        elif "primary" in entry:
            primary = entry["primary"]
            print(f"  {name:<20} {entry['kind']:<6} primary {primary['unit']} "
                  f"({primary['endpoint']})")
        else:
            units = ", ".join(f"{u}: {' '.join(e)}" for u, e in entry["endpoints"].items())
            print(f"  {name:<20} {entry['kind']:<6} {units}")
    if report["weights"] is None:
        print("weights:  unknown\nroutes:   unknown")
    else:
        weights = "  ".join(f"{u}={w:g}" for u, w in report["weights"].items())
        print(f"weights:  {weights}")
        print("routes:   " + ("none (no routing key has a home unit)" if not report["routes"]
                              else "first match wins"))
        for line in traffic_commands.describe_rules(report["routes"]):
            print(f"  {line}")
    if report["faults"]:
        print("faults:   injected by resil chaos; each expires on its own")
        for fault in report["faults"]:
            print(f"  {_fault_line(fault)}")
    for line in scale_commands.status_lines(report.get("scaling")):
        print(line)
    locks = report["locks"]
    print("locks:    " + ("" if locks else "none"))
    for n, lk in locks.items():
        step = f", step {lk['step']} (begun {lk['step_age_s']:g} s ago)" if lk["step"] else ""
        holder = "alive" if lk["lease_alive"] else \
            "DEAD: resil monitor or resil db unlock resolves it"
        print(f"  {n:<20} by {lk['holder']}: {lk['reason']}, {lk['age_s']:g} s old{step}; "
              f"holder {holder}")
    if report.get("intents"):
        print("intents:  planned switches about to lock (agents open spare connections)")
    for n, intent in report.get("intents", {}).items():
        print(f"  {n:<20} switch to {intent['target']} by {intent['holder']}; lapses in "
              f"{intent['expires_in']:g} s")
    agents = report["agents"]
    print(f"agents:   {sum(a['live'] for a in agents)} live" + ("" if agents else
          " (none has reported: agents report once they have routed a connection)"))
    for group in report["fleet"]:
        busy = ", ".join(f"{r}={n}" for r, n in group["in_flight"].items() if n) or "idle"
        behind = f", {group['behind']} BEHIND" if group["behind"] else ""
        stale = f", {group['stale']} stale" if group["stale"] else ""
        print(f"  service {group['service']:<16} unit {group['unit']:<10} "
              f"{group['live']} live{behind}{stale}; {busy}")
    if len(agents) > LIST_UP_TO and not every_agent:
        print(f"  (resil status --agents lists all {len(agents)})")
        return
    for a in agents:
        busy = ", ".join(f"{r}={n}" for r, n in a["in_flight"].items() if n) or "idle"
        behind = "" if a["epoch"] == control["epoch"] else f"  BEHIND (epoch {a['epoch']})"
        state = "" if a["live"] else f"  STALE ({a['age_s']:g} s ago)"
        admin = f"  admin http://{a['admin']}/" if a.get("admin") else ""
        print(f"  {a['id']:<24} unit {a['unit']:<10} epoch {a['epoch']:<4} {busy}"
              f"{behind}{state}{admin}  {a['program'][:40]}")
        for endpoint, health in a.get("avoids", {}).items():
            print(f"      avoids {endpoint} ({health})")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
