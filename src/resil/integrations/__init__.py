"""One module per patched library; each knows only its library and resil's core.

Integrations are found through the entry-point group ``resil.integrations``
(:func:`discover`), so a third party adds one by declaring an entry point.
``_tracking`` (driver connections and their resources) and ``_http`` (what the HTTP
clients share) are helpers of the integrations, not integrations.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

from .. import _log, counters

if TYPE_CHECKING:
    from .base import Integration

log = _log.get("resil.integrations")

GROUP = "resil.integrations"


def discover(disabled: frozenset[str] = frozenset()) -> list[Integration]:
    """Every integration registered under the ``resil.integrations`` entry-point group.

    resil finds its own integrations this way too, so a third party adds one by
    declaring an entry point. One that fails to load is logged and skipped.
    """
    found: list[Integration] = []
    points = entry_points(GROUP)
    for name in sorted(disabled - {name for name, _ in points}):
        log.warning("resil: disabled_integrations names %r, which is no installed "
                    "integration: nothing disabled by it", name)
    for name, value in points:
        if name in disabled:
            log.info("resil: integration %s disabled by configuration", name)
            continue
        try:
            module, _, attribute = value.partition(":")
            target: Any = importlib.import_module(module.strip())
            for part in attribute.split("[")[0].strip().split("."):
                target = getattr(target, part)
            found.append(target())
        except Exception as exc:
            counters.record_fault(f"load integration {name}", exc)
    return found


def entry_points(group: str) -> list[tuple[str, str]]:
    """``(name, "module:attribute")`` of every entry point in ``group`` on ``sys.path``.

    Reads the ``entry_points.txt`` of each installed distribution directly: it is what
    ``importlib.metadata.entry_points`` reads, without the 30+ ms its import costs at
    start-up. As there, the first distribution on ``sys.path`` wins a name.
    """
    key = (group, tuple(sys.path))
    if key not in _ENTRY_POINTS:        # the check and the start both ask: read once
        _ENTRY_POINTS[key] = _read_entry_points(group)
    return list(_ENTRY_POINTS[key])


#: Entry points already read, by group and ``sys.path``.
_ENTRY_POINTS: dict[tuple[str, tuple[str, ...]], list[tuple[str, str]]] = {}


def _read_entry_points(group: str) -> list[tuple[str, str]]:
    found: dict[str, str] = {}
    header = f"[{group}]"
    for base in sys.path:
        try:
            names = os.listdir(base or ".")
        except OSError:
            continue
        for folder in names:
            if not folder.endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(base or ".", folder, "entry_points.txt")) as fh:
                    text = fh.read()
            except OSError:
                continue
            if header in text:
                for name, value in _section(text, header):
                    found.setdefault(name, value)
    return list(found.items())


def _section(text: str, header: str) -> list[tuple[str, str]]:
    entries: list[tuple[str, str]] = []
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            inside = line == header
        elif inside and "=" in line and not line.startswith(("#", ";")):
            name, _, value = line.partition("=")
            entries.append((name.strip(), value.strip()))
    return entries
