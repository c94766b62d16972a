"""resil: a multi-site high-availability agent for Python web services.

Run a program under the agent with ``resil-run python app.py``, or start it from code::

    import resil
    resil.start()          # reads RESIL_CONFIG or ./resil.toml

Nothing happens at import time: importing resil starts no thread, patches nothing and
imports only the small error module; the agent loads when :func:`start` is called.
"""

from __future__ import annotations

from ._version import __version__
from .errors import (
    ConfigError,
    ControlPlaneError,
    LockTimeoutError,
    ResilError,
    SignalError,
    SwitchError,
    TransactionInterruptedError,
)

TYPE_CHECKING = False    # typing itself is not imported: `import resil` stays cheap
if TYPE_CHECKING:
    from typing import Any

    from .agent import Agent
    from .config import Config

__all__ = ["start", "stop", "ConfigError", "ControlPlaneError", "LockTimeoutError",
           "ResilError", "SignalError", "SwitchError", "TransactionInterruptedError",
           "__version__"]


def start(config: Config | str | Any = None) -> Agent | None:
    """Start the agent in this process; see :func:`resil.agent.start`."""
    from .agent import start as _start
    return _start(config)


def stop() -> None:
    """Stop the agent and remove its patches; see :func:`resil.agent.stop`."""
    from .agent import stop as _stop
    _stop()
