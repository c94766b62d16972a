"""Calls to http resources: one attempt per chosen endpoint, retries across units.

:func:`execute` (and :func:`execute_async`) run one call of an HTTP client library. The
integration supplies how to send an attempt to an endpoint and how to read its outcome
(:class:`Exchange`); this module knows no client library. It decides:

- **whether a failure may be retried**: only for a call that is safe to repeat (GET,
  HEAD, OPTIONS, TRACE, PUT, DELETE, or one with an ``Idempotency-Key`` header, and
  whose body can be sent again), only when no response was received (a transport error)
  or the response status is one of the resource's ``retry_statuses``, and at most
  ``retries`` times;
- **where the retry goes**: :meth:`resil.router.Router.pick` sends it to a unit not
  tried yet;
- **whether the budget allows it** (:class:`resil.budget.RetryBudget`): retries are limited to a
  fraction of the calls of the last 10 seconds plus a small floor, so that retrying can
  never multiply the load of an outage.

Every outcome feeds the endpoint's health (passive outlier detection). Retries follow at
once, in a plain loop, with no backoff: each goes to an endpoint the call has not tried
(``pick`` never repeats one), most often in another unit, so waiting would only add
latency; the budget, not a delay, is what keeps an outage from multiplying the load.

When the retries are spent (or not allowed) the application gets exactly what the last
attempt produced: the driver's own exception, or the last response.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import counters, spans
from .budget import RetryBudget
from .topology import Endpoint, Resource

if TYPE_CHECKING:
    from .router import Router
    from .state import ControlState

__all__ = ["Exchange", "RetryBudget", "execute", "execute_async", "repeatable"]

R = TypeVar("R")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""Methods a retry may repeat: idempotent by their definition (RFC 9110, 9.2.2)."""
class Exchange(Generic[R]):
    """What an integration tells :func:`execute` about one call (a plain slotted class:
    one is made per call, and a dataclass's frozen or generated ``__init__`` costs
    more)."""

    __slots__ = ("resource", "repeatable", "transport_error", "status", "discard", "tried")

    def __init__(self, resource: Resource, repeatable: bool,
                 transport_error: Callable[[BaseException], bool],
                 status: Callable[[R], int], discard: Callable[[R], None]) -> None:
        self.resource = resource
        self.repeatable = repeatable
        """Safe to send again: a safe method or an Idempotency-Key, and a replayable
        body."""
        self.transport_error = transport_error
        """Whether an exception means no response was received (connection refused,
        reset, timed out): those count against the endpoint and may be retried."""
        self.status = status
        self.discard = discard
        """Release a response that a retry replaces (close it, return its connection)."""
        self.tried: list[Endpoint] = []


def repeatable(method: str, headers: Any, body_replayable: bool = True) -> bool:
    """Whether a call may be repeated: a safe method, or an ``Idempotency-Key`` header."""
    if not body_replayable:
        return False
    if method.upper() in SAFE_METHODS:
        return True
    try:
        return bool(headers) and any(str(k).lower() == "idempotency-key" for k in headers)
    except TypeError:
        return False


def _observe(router: Router, exchange: Exchange[R], endpoint: Endpoint,
             exc: BaseException | None, response: Any) -> None:
    """Feed one attempt's outcome to the endpoint's health (a fault here is counted and
    forgotten: it must not change what the application gets)."""
    try:
        _feed(router, exchange, endpoint, exc, response)
    except Exception as fault:
        counters.record_fault("http.health", fault)


def _feed(router: Router, exchange: Exchange[R], endpoint: Endpoint,
          exc: BaseException | None, response: Any) -> None:
    health = router.health(exchange.resource)
    if exc is not None:
        if exchange.transport_error(exc):
            if health.failure(endpoint):
                _ejected(exchange.resource, endpoint)
        else:
            health.release(endpoint)
    elif exchange.status(response) >= 500:
        if health.failure(endpoint):
            _ejected(exchange.resource, endpoint)
    else:
        health.success(endpoint)


def _ejected(resource: Resource, endpoint: Endpoint) -> None:
    now = spans.now_ns()
    spans.span("resil.http.eject", now, now, {"resil.resource": resource.name,
                                             "resil.endpoint": str(endpoint),
                                             "resil.endpoint.unit": endpoint.unit})


def _wants_retry(router: Router, exchange: Exchange[R], exc: BaseException | None,
                 response: Any) -> Endpoint | None:
    """The endpoint of the next attempt, or None when this outcome is final (also when
    resil's own code fails: the application then gets the outcome it has)."""
    try:
        return _next_attempt(router, exchange, exc, response)
    except Exception as fault:
        counters.record_fault("http.retry", fault)
        return None


def _next_attempt(router: Router, exchange: Exchange[R], exc: BaseException | None,
                  response: Any) -> Endpoint | None:
    resource = exchange.resource
    if not exchange.repeatable or len(exchange.tried) > resource.http.retries:
        return None
    if exc is not None:
        if not isinstance(exc, Exception) or not exchange.transport_error(exc):
            return None
    elif exchange.status(response) not in resource.http.retry_statuses:
        return None
    endpoint: Endpoint | None = router.pick(resource, exchange.tried, True)
    if endpoint is None:
        return None
    if not router.budget(resource).withdraw():
        router.health(resource).release(endpoint)
        counters.count(f"http_retry_refused:{resource.name}")
        return None
    counters.count(f"http_retries:{resource.name}")
    now = spans.now_ns()
    spans.span("resil.http.retry", now, now, {
        "resil.resource": resource.name, "resil.attempt": len(exchange.tried) + 1,
        "resil.endpoint.unit": endpoint.unit,
        "resil.previous.unit": exchange.tried[-1].unit if exchange.tried else ""})
    return endpoint


_CALLS_KEYS: dict[tuple[str, str], str] = {}


def calls_key(resource: Resource, endpoint: Endpoint) -> str:
    """The event counted for an attempt: ``http_calls:<resource>:<endpoint unit>``."""
    key = (resource.name, endpoint.unit)
    found = _CALLS_KEYS.get(key)
    if found is None:
        found = _CALLS_KEYS[key] = f"http_calls:{resource.name}:{endpoint.unit}"
    return found


def execute(router: Router, exchange: Exchange[R], send: Callable[[Endpoint], R],
            first: Endpoint, state: ControlState | None = None) -> R:
    """Run a call whose first attempt goes to ``first`` (chosen by the integration, under
    its fail-open guard, with :meth:`~resil.router.Router.pick` in ``state``, the
    control state then applied: read again when not given), then the retries, if any
    are due."""
    resource = exchange.resource
    if (state if state is not None else router.state()).faults:
        from .chaos import http_send  # only while a chaos fault is published
        send = http_send(router, resource, send)
    endpoint = first
    exchange.tried.append(endpoint)
    counters.count(calls_key(resource, endpoint))
    try:
        response = send(endpoint)
    except BaseException as exc:
        _observe(router, exchange, endpoint, exc, None)
        following = _wants_retry(router, exchange, exc, None)
        if following is None:
            raise
        return _retry(router, exchange, send, following)
    try:
        status = exchange.status(response)
        if status < 500 and status not in resource.http.retry_statuses:
            router.health(resource).success(endpoint)   # the common case, short
            return response
    except Exception as fault:
        counters.record_fault("http.health", fault)
        return response
    _observe(router, exchange, endpoint, None, response)
    following = _wants_retry(router, exchange, None, response)
    if following is None:
        return response
    exchange.discard(response)
    return _retry(router, exchange, send, following)


def _retry(router: Router, exchange: Exchange[R], send: Callable[[Endpoint], R],
           endpoint: Endpoint) -> R:
    """The retries, one endpoint after another, until one answers or no retry is due."""
    while True:
        exchange.tried.append(endpoint)
        counters.count(calls_key(exchange.resource, endpoint))
        try:
            response = send(endpoint)
        except BaseException as exc:
            _observe(router, exchange, endpoint, exc, None)
            following = _wants_retry(router, exchange, exc, None)
            if following is None:
                raise
            endpoint = following
            continue
        _observe(router, exchange, endpoint, None, response)
        following = _wants_retry(router, exchange, None, response)
        if following is None:
            return response
        exchange.discard(response)
        endpoint = following


async def execute_async(router: Router, exchange: Exchange[R],
                        send: Callable[[Endpoint], Awaitable[R]],
                        discard: Callable[[R], Awaitable[None]], first: Endpoint,
                        state: ControlState | None = None) -> R:
    """:func:`execute` for asyncio clients (``send`` and ``discard`` are coroutines)."""
    if (state if state is not None else router.state()).faults:
        from .chaos import http_send_async
        send = http_send_async(router, exchange.resource, send)
    endpoint = first
    while True:
        exchange.tried.append(endpoint)
        counters.count(calls_key(exchange.resource, endpoint))
        try:
            response = await send(endpoint)
        except BaseException as exc:
            _observe(router, exchange, endpoint, exc, None)
            following = _wants_retry(router, exchange, exc, None)
            if following is None:
                raise
            endpoint = following
            continue
        _observe(router, exchange, endpoint, None, response)
        following = _wants_retry(router, exchange, None, response)
        if following is None:
            return response
        await discard(response)
        endpoint = following
