"""resil: a multi-site high-availability agent for Python web services.

Run a program under the agent with ``resil-run python app.py``, or start it from code::

    import resil
    resil.start()          # reads RESIL_CONFIG or ./resil.toml

Nothing happens at import time: importing resil starts no thread and patches nothing.
"""

from __future__ import annotations

from .agent import start, stop
from .errors import ConfigError, ControlPlaneError, ResilError, SignalError

__version__ = "0.1.0"
__all__ = ["start", "stop", "ConfigError", "ControlPlaneError", "ResilError", "SignalError",
           "__version__"]
