"""Control planes: where control state is stored and watched.

Every backend offers the same operations (:class:`~resil.control.base.ControlPlane`):
``load()`` the current signal, ``watch()`` for new ones, ``publish()`` a new state,
heartbeats and leases. Pick one by URL with :func:`open_control_plane`.
"""

from __future__ import annotations

import time
from urllib.parse import unquote, urlsplit

from ..clock import Clock
from ..envvars import default_poll_interval
from ..errors import ControlPlaneError
from ..topology import Topology
from .base import ControlPlane, Watch, live_agents

__all__ = ["ControlPlane", "Watch", "live_agents", "open_control_plane"]


def open_control_plane(url: str, topology: Topology, key: bytes | None, *,
                       poll_interval: float | None = None, clock: Clock = time.time,
                       agent_ttl: float = 10.0) -> ControlPlane:
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
                                poll_interval=poll_interval, clock=clock)
    if parts.scheme in ("redis", "rediss", "redis+sentinel"):
        from .redis import RedisControlPlane
        return RedisControlPlane(url, topology, key, poll_interval=poll_interval, clock=clock,
                                 agent_ttl=agent_ttl)
    raise ControlPlaneError(f"control plane {url!r}: the {parts.scheme!r} backend is not "
                            "available in this version; use a file:// URL")
