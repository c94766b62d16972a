"""Whether the agent starts and which file configures it: read before anything else, by
``resil-run``'s front process and the bootstrap too, so it imports nothing but ``os``."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

#: The variable that names the configuration file.
CONFIG_ENV = "RESIL_CONFIG"
#: The file read when none is named.
DEFAULT_FILE = "resil.toml"
#: How a flag's "on" may be written.
TRUE = frozenset({"1", "true", "yes", "on"})


def disabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether ``RESIL_DISABLED`` turns the agent off (checked before any file is read)."""
    env = os.environ if env is None else env
    return env.get("RESIL_DISABLED", "").strip().lower() in TRUE


def config_file(explicit: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """The configuration file to read, and whether it was asked for explicitly: ``explicit``
    (a ``--config``), else ``RESIL_CONFIG``, else ``./resil.toml``."""
    env = os.environ if env is None else env
    if explicit:
        return os.fspath(explicit), True
    if env.get(CONFIG_ENV):
        return env[CONFIG_ENV], True
    return DEFAULT_FILE, False
