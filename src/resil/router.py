"""Routing decisions: which endpoint a connection to a resource should use.

The router knows the topology and reads the current control state through a callable,
so it always sees the newest snapshot without a lock. For mysql and redis resources
this first slice answers one question: the endpoint of the resource's current primary.
"""

from __future__ import annotations

from collections.abc import Callable

from .state import ControlState
from .topology import Endpoint, Resource, ResourceKind, Topology


class Router:
    """Maps the addresses an application uses to the endpoints it should use."""

    def __init__(self, topology: Topology, state: Callable[[], ControlState]) -> None:
        self.topology = topology
        self._state = state

    def state(self) -> ControlState:
        """The control state applied now."""
        return self._state()

    def resource(self, kind: ResourceKind, host: str, port: int | None) -> Resource | None:
        """The resource of ``kind`` that ``host:port`` names, if any."""
        return self.topology.match(kind, host, port)

    def primary_of(self, resource: Resource, state: ControlState | None = None) -> Endpoint | None:
        """The endpoint of ``resource``'s primary in ``state`` (default: the current one)."""
        unit = (state or self._state()).primaries.get(resource.name) or resource.primary
        return resource.endpoint_in(unit) if unit else None

    def primary_endpoint(self, kind: ResourceKind, host: str, port: int | None) -> Endpoint | None:
        """The current primary endpoint of the resource ``host:port`` names.

        None when the address belongs to no resource of ``kind``: the caller then leaves
        the connection exactly as the application asked for it.
        """
        resource = self.topology.match(kind, host, port)
        return None if resource is None else self.primary_of(resource)
