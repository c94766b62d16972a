"""What is installed: entry points and versions of the distributions on ``sys.path``,
read from their ``.dist-info`` folders without ``importlib.metadata`` (30+ ms to import,
and a scan of every distribution on each call)."""

from __future__ import annotations

import os
import sys


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


def installed_version(distribution: str) -> str | None:
    """The version of the installed ``distribution``, from the name of its
    ``.dist-info`` (or versioned ``.egg-info``) folder, first on ``sys.path`` as
    ``importlib.metadata.version`` finds it; None when no folder names one (the caller
    may then ask ``importlib.metadata``). Costs a dictionary lookup per ``sys.path``
    entry where ``importlib.metadata`` (30 ms to import) scans every distribution on
    each call."""
    wanted = _normalized(distribution)
    for base in sys.path:
        versions = _VERSIONS.get(base)
        if versions is None:
            versions = _VERSIONS[base] = _versions_in(base)
        if wanted in versions:
            return versions[wanted]
    return None


def _versions_in(base: str) -> dict[str, str]:
    """Normalized name → version of the distributions installed in one folder."""
    versions: dict[str, str] = {}
    for folder in _metadata_folders(base):
        stem = folder.rsplit(".", 1)[0]
        name, _, rest = stem.partition("-")
        version = rest.split("-", 1)[0]
        if version:
            versions.setdefault(_normalized(name), version)
    return versions


def _normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them: ``PyMySQL``, ``pymysql`` alike."""
    out: list[str] = []
    gap = False
    for char in name.lower():
        if char in "-_.":
            gap = True
            continue
        if gap and out:
            out.append("-")
        gap = False
        out.append(char)
    return "".join(out)


#: Versions by normalized distribution name, by ``sys.path`` entry (read once each: an
#: application that changes ``sys.path`` costs one listing per new entry).
_VERSIONS: dict[str, dict[str, str]] = {}


def _metadata_folders(base: str) -> list[str]:
    """The ``.dist-info`` and ``.egg-info`` folders in one ``sys.path`` entry."""
    try:
        names = os.listdir(base or ".")
    except OSError:
        return []
    return [n for n in names if n.endswith((".dist-info", ".egg-info"))]


def _read_entry_points(group: str) -> list[tuple[str, str]]:
    found: dict[str, str] = {}
    header = f"[{group}]"
    for base in sys.path:
        for folder in _metadata_folders(base):
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
