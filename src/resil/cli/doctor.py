"""``resil doctor``: what resil would do in this environment, and whether it can.

It reads the configuration the way ``resil-run`` does, then reports, without changing
anything: the versions; each integration (which library it patches, whether that
library is installed and in the supported range, or disabled by the configuration);
the control plane (reachable, its epoch, a durability warning); and every endpoint of
every resource (does it accept a TCP connection within half a second). Exit 0 when
nothing is wrong, 1 otherwise; ``--json`` prints the same as one document.
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
    report["problems"] = problems
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
    if report["problems"]:
        print(f"{len(report['problems'])} problem(s):")
        for problem in report["problems"]:
            print(f"  {problem}")
    else:
        print("no problems found")
