"""The configuration file's TOML, parsed once per content: what every agent start reads.

Importing ``tomllib`` and parsing costs a few ms of every process start (``tomllib``
brings ``typing``, ``datetime`` and ``string`` with it, and compiles its patterns). The
parsed tables of a file are kept, with the file's exact bytes, in a per-user cache
(``$XDG_CACHE_HOME/resil`` or ``~/.cache/resil``, mode 0700), one entry per file path,
in ``marshal`` form (built into the interpreter, nothing to import). An entry is used
only when the bytes read now are identical to the bytes it was made from, so an edited
file is never read stale, whatever its timestamps say. A missing, unreadable, corrupt
or foreign entry (another user's, or writable by others) is ignored and the file parsed
as before; a cache that cannot be written (a read-only home) is simply not kept. Values
``marshal`` cannot hold (TOML dates) are parsed every time.
"""

from __future__ import annotations

import marshal
import os
import sys
import zlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_FORMAT = 1
"""Changes whenever an entry's layout does: entries of another format are ignored."""


def cache_dir() -> str | None:
    """Where the entries are kept (None: no home to keep them in)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "resil") if os.path.isabs(base) else None


def _entry_path(directory: str, path: str) -> str:
    key = zlib.crc32(os.path.abspath(path).encode("utf-8", "surrogateescape"))
    return os.path.join(directory, f"config-{key:08x}.marshal")


def parse(data: bytes, path: str) -> dict[str, Any]:
    """The tables of the TOML text ``data``, read from ``path``: from the cache when it
    holds exactly these bytes, else parsed (and kept). Raises what ``tomllib`` raises:
    ``UnicodeDecodeError`` for text that is not UTF-8, ``tomllib.TOMLDecodeError``."""
    directory = cache_dir()
    entry = _entry_path(directory, path) if directory else None
    if entry is not None:
        found = _read(entry)
        if found is not None and found[0] == data:
            return found[1]
    import tomllib
    raw = tomllib.loads(data.decode("utf-8"))
    if entry is not None and directory is not None:
        _write(directory, entry, data, raw)
    return raw


def _read(entry: str) -> tuple[bytes, dict[str, Any]] | None:
    try:
        with open(entry, "rb") as fh:
            status = os.fstat(fh.fileno())
            if status.st_uid != os.getuid() or status.st_mode & 0o022:
                return None     # another user's, or writable by one: not trusted
            stored = marshal.loads(fh.read())
    except Exception:       # missing, unreadable, truncated, another Python's format
        return None
    if type(stored) is not tuple or len(stored) != 4 or stored[0] != _FORMAT \
            or stored[1] != sys.version_info[:2] or type(stored[2]) is not bytes \
            or type(stored[3]) is not dict:
        return None
    return stored[2], stored[3]


def _write(directory: str, entry: str, data: bytes, raw: dict[str, Any]) -> None:
    try:
        encoded = marshal.dumps((_FORMAT, sys.version_info[:2], data, raw))
    except ValueError:      # a TOML date or time: not kept, parsed every time
        return
    temporary = f"{entry}.{os.getpid()}.tmp"
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                  "wb") as fh:
            fh.write(encoded)
        os.replace(temporary, entry)
    except (OSError, ValueError):   # a read-only or full home, an unusable path: no cache
        try:
            os.unlink(temporary)
        except OSError:
            pass
