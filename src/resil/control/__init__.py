"""Control planes: where control state is stored and watched.

Every backend offers the same operations (:class:`~resil.control.base.ControlPlane`):
``load()`` the current signal, ``watch()`` for new ones, ``publish()`` a new state,
heartbeats and leases. Pick one by URL with :func:`open_control_plane`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit, urlunsplit

from ..clock import Clock
from ..envvars import default_poll_interval
from ..errors import ControlPlaneError
from ..topology import Topology
from .base import ControlPlane, Watch, live_agents

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..config import Config

__all__ = ["ControlPlane", "Watch", "live_agents", "open_configured", "open_control_plane",
           "safe_url"]


def safe_url(url: str) -> str:
    """``url`` with its credentials replaced by ``***`` (for printing)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def open_control_plane(url: str, topology: Topology, key: bytes | None, *,
                       poll_interval: float | None = None, clock: Clock = time.time,
                       agent_ttl: float = 10.0,
                       previous_keys: Sequence[bytes] = ()) -> ControlPlane:
    """The control-plane backend for ``url``.

    ``poll_interval`` defaults to the declared one for the URL's scheme
    (``control.poll_interval`` in :mod:`resil.envvars`). ``agent_ttl`` is how long a
    heartbeat outlives its last report (Redis backends).
    """
    parts = urlsplit(url)
    if poll_interval is None:
        poll_interval = default_poll_interval(parts.scheme)
    if parts.scheme == "file":
        from .file import FileControlPlane
        return FileControlPlane(unquote(parts.path), topology, key,
                                poll_interval=poll_interval, clock=clock,
                                agent_ttl=agent_ttl, previous_keys=previous_keys)
    if parts.scheme in ("redis", "rediss", "redis+sentinel"):
        from .redis import RedisControlPlane
        return RedisControlPlane(url, topology, key, poll_interval=poll_interval, clock=clock,
                                 agent_ttl=agent_ttl, previous_keys=previous_keys)
    raise ControlPlaneError(f"control plane {url!r}: the {parts.scheme!r} backend is not "
                            "available in this version; use a file:// URL")


def agent_ttl(heartbeat_interval: float) -> float:
    """How long a heartbeat outlives its last report: three intervals, at least 10 s."""
    return max(10.0, 3 * heartbeat_interval)


def open_configured(config: Config, **options: Any) -> ControlPlane:
    """The control plane ``config`` names, with its signing keys (current and previous)
    and the heartbeats' time to live its heartbeat interval implies (agents and
    operator commands must agree on it: it is also the width of the load windows)."""
    options.setdefault("agent_ttl", agent_ttl(config.heartbeat_interval))
    return open_control_plane(config.control_url, config.topology, config.signing_key,
                              previous_keys=config.previous_signing_keys, **options)
