"""Routing decisions: which endpoint a connection to a resource should use.

The router knows the topology and reads the current control state through a callable,
so it always sees the newest snapshot without a lock. For mysql and redis resources
this first slice answers one question: the endpoint of the resource's current primary.
"""

from __future__ import annotations

from collections.abc import Callable

from .state import ControlState
from .topology import Endpoint, ResourceKind, Topology


class Router:
    """Maps the addresses an application uses to the endpoints it should use."""

    def __init__(self, topology: Topology, state: Callable[[], ControlState]) -> None:
        self.topology = topology
        self._state = state

    def primary_endpoint(self, kind: ResourceKind, host: str, port: int | None) -> Endpoint | None:
        """The current primary endpoint of the resource ``host:port`` names.

        None when the address belongs to no resource of ``kind``: the caller then leaves
        the connection exactly as the application asked for it.
        """
        resource = self.topology.match(kind, host, port)
        if resource is None:
            return None
        unit = self._state().primaries.get(resource.name) or resource.primary
        return resource.endpoint_in(unit) if unit else None
