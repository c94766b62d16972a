"""``resil doctor``: what resil would do in this environment, and whether it can.

It reads the configuration the way ``resil-run`` does, then reports, without changing
anything: the versions; each integration (which library it patches, whether that
library is installed and in the supported range, or disabled by the configuration);
the control plane (reachable, its epoch, a durability warning); every endpoint of every
resource (does it accept a TCP connection within half a second); and, where the admin
account's password is in the environment, the servers' own settings that failover
depends on (the semi-sync timeout against a monitor's detection and failover, how fast a
replica notices a frozen source, parallel apply). Exit 0 when nothing is wrong, 1
otherwise (warnings alone do not fail it); ``--json`` prints the same as one document.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import platform
import socket
import sys
import time
from typing import Any

from .._version import __version__
from ..config import Config, load_config
from ..errors import ControlPlaneError, SignalError

CONNECT_TIMEOUT = 0.5


def add_command(sub: Any) -> None:
    """Add ``doctor`` to the ``resil`` subparsers."""
    doctor = sub.add_parser("doctor", help="versions, integrations, control plane and "
                            "endpoints: what resil would do here, and whether it can")
    doctor.add_argument("--config", metavar="PATH", help="configuration file")
    doctor.add_argument("--json", action="store_true", help="print JSON")
    doctor.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``resil doctor``."""
    config = load_config(args.config)
    report = examine(config)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        _print(report)
    return 1 if report["problems"] else 0


def examine(config: Config) -> dict[str, Any]:
    """Everything ``resil doctor`` reports, with the list of problems found."""
    problems: list[str] = []
    report: dict[str, Any] = {
        "resil": __version__, "python": platform.python_version(),
        "platform": platform.platform(terse=True), "config": str(config.path),
        "unit": config.unit, "service": config.service,
        "integrations": _integrations(config, problems),
        "control": _control(config, problems),
        "endpoints": _endpoints(config, problems),
    }
    warnings: list[str] = []
    reachable = {(e["resource"], e["endpoint"]) for e in report["endpoints"] if e["reachable"]}
    report["servers"] = _servers(config, reachable, problems, warnings)
    report["problems"] = problems
    report["warnings"] = warnings
    return report


def _integrations(config: Config, problems: list[str]) -> list[dict[str, Any]]:
    from ..integrations import GROUP, entry_points
    found = []
    for name, value in entry_points(GROUP):
        entry: dict[str, Any] = {"name": name}
        if name in config.disabled_integrations:
            found.append({**entry, "status": "disabled by the configuration"})
            continue
        try:
            module, _, attribute = value.partition(":")
            target: Any = importlib.import_module(module.strip())
            for part in attribute.strip().split("."):
                target = getattr(target, part)
        except Exception as exc:
            problems.append(f"integration {name} cannot load: {exc}")
            found.append({**entry, "status": f"cannot load: {exc}"})
            continue
        distribution = getattr(target, "distribution", "")
        entry["library"] = distribution
        if not distribution or distribution in sys.stdlib_module_names:
            found.append({**entry, "status": "patched when imported (standard library)"})
            continue
        try:
            version = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            found.append({**entry, "status": "library not installed: nothing to patch"})
            continue
        from ..integrations.base import parse_version
        low, high = target.supported
        entry["version"] = version
        supported = f">={'.'.join(map(str, low))},<{'.'.join(map(str, high))}"
        if low <= parse_version(version) < high:
            entry["status"] = "patched when imported"
        else:
            entry["status"] = f"SKIPPED: {version} is outside the supported range {supported}"
            problems.append(f"integration {name}: {distribution} {version} is not supported "
                            f"({supported}): it is left unpatched")
        found.append(entry)
    return found


def _control(config: Config, problems: list[str]) -> dict[str, Any]:
    from ..control import open_configured, safe_url
    entry: dict[str, Any] = {"url": safe_url(config.control_url)}
    try:
        plane = open_configured(config)
        began = time.monotonic()
        signal = plane.load()
        entry.update(reachable=True, epoch=signal.epoch if signal else 0,
                     read_ms=round((time.monotonic() - began) * 1000, 1),
                     warning=plane.durability())
        plane.close()
    except (ControlPlaneError, SignalError) as exc:
        entry.update(reachable=False, error=str(exc))
        problems.append(f"control plane: {exc}")
    return entry


def _endpoints(config: Config, problems: list[str]) -> list[dict[str, Any]]:
    found = []
    for name, resource in config.resources.items():
        for unit, endpoints in resource.endpoints.items():
            for endpoint in endpoints:
                error = _connect(endpoint.host, endpoint.port)
                found.append({"resource": name, "kind": resource.kind, "unit": unit,
                              "endpoint": str(endpoint), "reachable": error is None,
                              **({"error": error} if error else {})})
                if error:
                    problems.append(f"{name} {endpoint} (unit {unit}): {error}")
    return found


def _servers(config: Config, reachable: set[tuple[str, str]], problems: list[str],
             warnings: list[str]) -> list[dict[str, Any]]:
    """Each reachable database server's role and failover settings, read over the admin
    account (skipped, and said, where its password is not in the environment)."""
    from ..errors import ResilError
    from ..ops.monitor import SEMI_SYNC_MARGIN, MonitorOptions, semi_sync_warning
    from ..ops.servers import Credentials, check_driver, open_server
    needed = MonitorOptions().detection_time + SEMI_SYNC_MARGIN
    found: list[dict[str, Any]] = []
    for name, resource in config.resources.items():
        if resource.kind not in ("mysql", "redis"):
            continue
        try:
            check_driver(resource, str(config.path))
        except ResilError as exc:   # the operator commands would refuse here, saying so
            found.append({"resource": name, "checked": False, "why": str(exc)})
            warnings.append(str(exc))
            continue
        try:
            credentials = Credentials.of(resource)
        except ResilError as exc:
            found.append({"resource": name, "checked": False, "why": str(exc)})
            continue
        for endpoint in (e for eps in resource.endpoints.values() for e in eps):
            if (name, str(endpoint)) not in reachable:
                continue
            entry: dict[str, Any] = {"resource": name, "endpoint": str(endpoint),
                                     "unit": endpoint.unit, "checked": True}
            found.append(entry)
            try:
                server = open_server(resource, endpoint, credentials, timeout=1.0,
                                     read_timeout=2.0)
                try:
                    entry["role"] = server.replication()["role"]
                    entry["settings"] = server.failover_settings()
                    timeout_ms = server.semi_sync_timeout_ms()
                finally:
                    server.close()
            except Exception as exc:
                entry["error"] = str(exc)
                problems.append(f"{name} {endpoint}: cannot read its settings: {exc}")
                continue
            said = semi_sync_warning(timeout_ms, endpoint, needed)
            if said:
                problems.append(f"{name}: {said}")
            warnings.extend(f"{name} {endpoint}: {w}" for w in _advice(entry))
    return found


def _advice(entry: dict[str, Any]) -> list[str]:
    """What a replica's settings cost a failover or a switch (docs/operations/)."""
    settings: dict[str, float] = entry["settings"]
    advice: list[str] = []
    if entry["role"] != "replica":
        return advice
    net, beat = settings.get("slave_net_timeout"), settings.get("heartbeat_period")
    if net is not None and beat is not None and min(net, beat + 0.25) > 2:
        advice.append(f"a frozen source is noticed only after {min(net, beat + 0.25):g} s "
                      "(slave_net_timeout, MASTER_HEARTBEAT_PERIOD): set them as "
                      "docs/operations/failover.md says for about 1 s")
    if settings.get("slave_parallel_threads") == 0:
        advice.append("applies with one thread (slave_parallel_threads = 0): under load "
                      "it may fall behind, and a switch never converge "
                      "(docs/operations/switch.md)")
    ping = settings.get("repl_ping_replica_period")
    if ping is not None and ping > 2:
        advice.append(f"repl-ping-replica-period is {ping:g} s: a frozen primary is noticed "
                      f"after about {ping + 1:g} s (docs/operations/failover.md)")
    return advice


def _connect(host: str, port: int) -> str | None:
    """None when ``host:port`` accepts a TCP connection in time, else why not."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            return None
    except TimeoutError:
        return f"no answer within {CONNECT_TIMEOUT} s"
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def _print(report: dict[str, Any]) -> None:
    print(f"resil {report['resil']}, Python {report['python']}, {report['platform']}")
    print(f"config:   {report['config']} (unit {report['unit']}, service "
          f"{report['service']})")
    control = report["control"]
    state = f"reachable, epoch {control['epoch']}, read in {control['read_ms']:g} ms" \
        if control.get("reachable") else f"UNREACHABLE: {control.get('error')}"
    print(f"control:  {control['url']}: {state}")
    if control.get("warning"):
        print(f"          warning: {control['warning']}")
    print("integrations:")
    for entry in report["integrations"]:
        version = f" {entry['version']}" if entry.get("version") else ""
        library = f" ({entry['library']}{version})" if entry.get("library") else ""
        print(f"  {entry['name']:<10}{library}: {entry['status']}")
    print("endpoints:")
    for entry in report["endpoints"]:
        state = "reachable" if entry["reachable"] else f"UNREACHABLE: {entry['error']}"
        print(f"  {entry['resource']:<16} {entry['unit']:<10} {entry['endpoint']}: {state}")
    if report["servers"]:
        print("servers:")
    for entry in report["servers"]:
        if not entry["checked"]:
            print(f"  {entry['resource']:<16} not checked: {entry['why']}")
        elif "error" in entry:
            print(f"  {entry['resource']:<16} {entry['endpoint']}: {entry['error']}")
        else:
            settings = ", ".join(f"{k} {v:g}" for k, v in sorted(entry["settings"].items()))
            print(f"  {entry['resource']:<16} {entry['unit']:<10} {entry['endpoint']}: "
                  f"{entry['role']}; {settings}")
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    if report["problems"]:
        print(f"{len(report['problems'])} problem(s):")
        for problem in report["problems"]:
            print(f"  {problem}")
    else:
        print("no problems found")
