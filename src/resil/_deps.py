"""The client libraries resil itself talks to servers with, and the extras that install them.

resil's core depends on no database driver: an application installs the ones it uses
(``resil[mysql]``, ``resil[redis]``, ...), and the agent only patches what is there. Some
parts of resil do speak to servers themselves, and need a driver wherever they run:

- a Redis control plane (``redis://``, ``rediss://``, ``redis+sentinel://``): redis-py,
  in every agent and operator command;
- sessions kept in Redis (``[sessions] resource``): redis-py, in the application;
- the operator commands that act on servers (``resil db switch``, ``resil monitor``,
  ``resil db unlock``, drills, ...): PyMySQL for MySQL resources, redis-py for Redis ones.

Each check here only looks for the module (``importlib.util.find_spec``: no import, so
no start-up cost), and says which extra installs it when it is missing.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False    # not `typing`: this module is imported as a program starts
if TYPE_CHECKING:
    from .config import Config

__all__ = ["DRIVERS", "installed", "missing", "require_for_agent"]

DRIVERS: dict[str, tuple[str, str, str]] = {
    "mysql": ("pymysql", "PyMySQL", "mysql"),
    "redis": ("redis", "redis-py", "redis"),
}
"""Resource kind -> (module, distribution's name, the resil extra that installs it): the
library resil's own connections to servers of that kind are made with."""


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here (found on the path, not imported)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    import importlib.util
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing(kind: str, purpose: str) -> str | None:
    """None when the library resil uses for ``kind`` servers is installed; else a sentence
    that says ``purpose`` needs it, and how to install it."""
    module, name, extra = DRIVERS[kind]
    if installed(module):
        return None
    return (f"{purpose} needs {name}, which is not installed in this Python "
            f"({sys.executable}): pip install 'resil[{extra}]'")


def require_for_agent(config: Config) -> None:
    """Raise :class:`~resil.errors.ConfigError` when ``config`` asks the agent for
    something it would need a missing library for (sessions kept in Redis). A Redis
    control plane is checked where it is made (:mod:`resil.control.redis`)."""
    if not config.sessions_resource:
        return
    problem = missing("redis", "keeping sessions in Redis")
    if problem:
        from .errors import ConfigError
        raise ConfigError(str(config.path or "the configuration"), "sessions.resource",
                          config.sessions_resource, problem)
