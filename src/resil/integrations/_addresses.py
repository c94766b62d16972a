"""Shared by the driver integrations: remember the address a connection asked for.

A connection object is re-pointed by rewriting its ``host``/``port`` before it
connects. The address the application originally asked for is kept beside it (weakly,
so resil never keeps a connection alive), because every later (re)connect must be
routed from that address, not from the endpoint chosen last time.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from .. import registry
from ..topology import ResourceKind

log = logging.getLogger("resil.integrations")
_origins: weakref.WeakKeyDictionary[Any, tuple[str, int]] = weakref.WeakKeyDictionary()


def route_connection(kind: ResourceKind, conn: Any) -> None:
    """Point ``conn`` (with ``host``/``port`` attributes) at its resource's primary."""
    router = registry.router()
    if router is None:
        return
    origin = _origins.get(conn)
    if origin is None:
        origin = _origins[conn] = (str(conn.host), int(conn.port))
    endpoint = router.primary_endpoint(kind, origin[0], origin[1])
    if endpoint is None or (conn.host, conn.port) == (endpoint.host, endpoint.port):
        return
    log.debug("resil: %s %s:%s -> %s (unit %s)", kind, origin[0], origin[1], endpoint,
              endpoint.unit)
    conn.host, conn.port = endpoint.host, endpoint.port


def origin_of(conn: Any) -> tuple[str, int] | None:
    """The address ``conn`` was created for, once it has been routed."""
    return _origins.get(conn)
