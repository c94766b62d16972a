"""Routing decisions: which endpoint a connection or a call to a resource should use.

The router knows the topology and reads the current control state through a callable,
so it always sees the newest snapshot without a lock. For mysql and redis resources it
answers one question: the endpoint of the resource's current primary. For http
resources, :meth:`Router.pick` chooses the endpoint of each attempt of a call:

1. the own unit first, while its weight is above 0 and it has a healthy endpoint;
2. otherwise another unit with weight above 0, chosen in proportion to the weights;
3. a retry goes to a unit not tried yet (a failure in one unit is likely to repeat
   there), then to the remaining endpoints of the tried units.

Within a unit, calls rotate over its healthy endpoints. Health is per resource
(:mod:`resil.health`); when every unit is cut, the weights are ignored rather than
failing every call.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence

from .state import ControlState
from .topology import Endpoint, Resource, ResourceKind, Topology

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .budget import RetryBudget
    from .checks import ActiveChecks
    from .health import ResourceHealth

HTTP_MATCHES = 512
"""Distinct schemes and authorities whose match :attr:`Router.http_matches` keeps."""


class Router:
    """Maps the addresses an application uses to the endpoints it should use."""

    def __init__(self, topology: Topology, state: Callable[[], ControlState],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.topology = topology
        self._state = state
        self._clock = clock
        self._health: dict[str, ResourceHealth] = {}
        self._budgets: dict[str, RetryBudget] = {}
        self._health_lock = threading.Lock()
        self._turn = itertools.count()
        self._random: Any = None      # random.Random, made by the first weighted draw
        self.http_matches: dict[str | tuple[Any, ...], Any] = {}
        """Scheme and authority of an outgoing HTTP call → its resource match or None
        (also an integration's own key for them → None: no resource, see
        :func:`resil.integrations._http.names_no_resource`).
        Read and written by every request thread without a lock: a dict's ``get``,
        item assignment and ``clear`` are each atomic, and a full map
        (:data:`HTTP_MATCHES`) is emptied rather than evicted entry by entry (a match is
        pure: a miss only works it out again). An LRU cache that is not thread-safe
        corrupted here, and the call went out unrouted."""
        self.checks: ActiveChecks | None = None
        http = [r for r in topology.resources.values() if r.kind == "http"]
        if any(r.http.health_path for r in http):
            from .checks import ActiveChecks  # HTTP only: not at every start-up
            self.checks = ActiveChecks(http, self.health, clock)

    def state(self) -> ControlState:
        """The control state applied now."""
        return self._state()

    def resource(self, kind: ResourceKind, host: str, port: int | None) -> Resource | None:
        """The resource of ``kind`` that ``host:port`` names, if any."""
        return self.topology.match(kind, host, port)

    def primary_of(self, resource: Resource, state: ControlState | None = None) -> Endpoint | None:
        """The endpoint of ``resource``'s primary in ``state`` (default: the current one)."""
        unit = (state or self._state()).primary_unit(resource)
        return resource.endpoint_in(unit) if unit else None

    def primary_endpoint(self, kind: ResourceKind, host: str, port: int | None) -> Endpoint | None:
        """The current primary endpoint of the resource ``host:port`` names.

        None when the address belongs to no resource of ``kind``: the caller then leaves
        the connection exactly as the application asked for it.
        """
        resource = self.topology.match(kind, host, port)
        return None if resource is None else self.primary_of(resource)

    # ------------------------------------------------------------------ http resources

    def health(self, resource: Resource) -> ResourceHealth:
        """The endpoint health of an http resource (created on first use)."""
        found = self._health.get(resource.name)
        if found is None:
            from .health import ResourceHealth
            with self._health_lock:
                found = self._health.setdefault(resource.name,
                                                ResourceHealth(resource, self._clock))
        return found

    def budget(self, resource: Resource) -> RetryBudget:
        """The retry budget of an http resource (created on first use)."""
        found = self._budgets.get(resource.name)
        if found is None:
            from .budget import RetryBudget
            with self._health_lock:
                found = self._budgets.setdefault(resource.name, RetryBudget(
                    resource.http.retry_budget, resource.http.retry_budget_min, self._clock))
        return found

    def health_snapshot(self) -> dict[str, dict[str, dict[str, object]]]:
        """Endpoint health of every http resource that took a call (for /state)."""
        return {name: health.snapshot() for name, health in list(self._health.items())}

    def pick(self, resource: Resource, tried: Sequence[Endpoint] = (),
             repeatable: bool = True, state: ControlState | None = None) -> Endpoint | None:
        """The endpoint for the next attempt of a call to ``resource``.

        ``tried`` lists the endpoints earlier attempts of the same call used. Only a
        ``repeatable`` call may be a half-open endpoint's probe. None when
        no endpoint is left for a retry. The first attempt always gets an endpoint: if
        nothing is healthy and panic mode is off, the own unit's (or the first unit's)
        endpoint is used rather than failing a call resil could not route. ``state`` is
        the control state to decide in (default: the one applied now).
        """
        if self.checks is not None and not self.checks.running:
            self.checks.start()     # lazily, and again in a forked worker
        if state is None:
            state = self._state()
        health = self._health.get(resource.name) or self.health(resource)
        own = self.topology.unit
        if not tried and health.all_healthy and state.weights.get(own, 1.0) > 0:
            endpoints = resource.endpoints.get(own)
            if endpoints:       # the common case: a healthy own unit, no lock, no lists
                return endpoints[next(self._turn) % len(endpoints)]
        ignore = health.panic()
        units = [u for u in resource.endpoints if state.weights.get(u, 1.0) > 0] \
            or list(resource.endpoints)
        tried_units = {e.unit for e in tried}
        order = [own] if own in units and own not in tried_units else []
        order += self._by_weight([u for u in units if u != own and u not in tried_units],
                                 state)
        order += [u for u in units if u in tried_units]
        for unit in order:
            endpoints = resource.endpoints[unit]
            start = next(self._turn)
            for i in range(len(endpoints)):
                endpoint = endpoints[(start + i) % len(endpoints)]
                if endpoint not in tried and health.take(endpoint, ignore, repeatable):
                    return endpoint
        if tried:
            return None
        fallback = resource.endpoints.get(own) or next(iter(resource.endpoints.values()))
        return fallback[0]

    def _by_weight(self, units: list[str], state: ControlState) -> list[str]:
        """``units`` in a random order drawn in proportion to their weights."""
        if len(units) < 2:
            return units
        if self._random is None:
            import random
            self._random = random.Random()
        left = list(units)
        ordered = []
        while left:
            weights = [state.weights.get(u, 1.0) for u in left]
            chosen = self._random.choices(left, weights)[0]
            ordered.append(chosen)
            left.remove(chosen)
        return ordered
