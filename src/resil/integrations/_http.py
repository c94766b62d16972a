"""What the HTTP client integrations (requests, urllib3, httpx) share.

:func:`plan` answers, for the URL of an outgoing call: does it name an http resource —
by the resource's name (``http://productservice/...``), an alias, or any of its
endpoints — and if so, which endpoint the first attempt goes to and which part of the
URL (path, query) is carried over. A URL that names no resource gets None and the call
is left exactly as the application made it. The answer for a scheme and authority is
cached per router (a bounded dictionary, emptied when full), so an unrouted call costs
one string search and one dictionary lookup.

Routed calls carry ``x-resil-unit`` (the caller's unit) and, while a request with a
routing key is being served, ``x-resil-route-key``. Calls to other hosts carry nothing
of resil's: a unit name is no business of a third party.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import context, counters, registry, spans
from ..context import ROUTE_KEY_HEADER, UNIT_HEADER
from ..retry import SAFE_METHODS, Exchange, repeatable
from ..router import HTTP_MATCHES
from ..topology import Endpoint, Resource

if TYPE_CHECKING:
    from ..budget import RetryBudget
    from ..router import Router
    from ..state import ControlState

_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNKNOWN = object()
"""Not in the match cache yet (None there means: no resource)."""


class _Match:
    """What the scheme and authority of a URL name: kept per router, read per call."""

    __slots__ = ("resource", "userinfo", "base_path", "budget")

    def __init__(self, resource: Resource, userinfo: str, base_path: str,
                 budget: RetryBudget) -> None:
        self.resource = resource
        self.userinfo = userinfo
        """``user:password@`` of the original URL, kept on the rewritten one."""
        self.base_path = base_path
        """The base path of the endpoint the URL named directly ("" otherwise), which the
        chosen endpoint's own base path replaces."""
        self.budget = budget
        """The resource's retry budget (the router's own)."""


Reading = tuple[Callable[[BaseException], bool], Callable[[Any], int], Callable[[Any], None]]
"""How an integration reads an attempt's outcome: whether an exception means no
response was received, a response's status, and how to release a response that a
retry replaces (see :class:`resil.retry.Exchange`)."""


class Plan(Exchange[Any]):
    """A routed call: its resource, where its first attempt goes, the rest of its URL,
    the headers it carries; also the call's :class:`~resil.retry.Exchange` (one object
    per call: this is the per-call path of every routed request)."""

    __slots__ = ("first", "userinfo", "rest", "router", "stripped", "headers", "state")

    def __init__(self, match: _Match, first: Endpoint, rest: str, stripped: bool,
                 repeatable: bool, router: Router, state: ControlState, reading: Reading,
                 headers: dict[str, Any]) -> None:
        # The exchange's fields are set here rather than by Exchange.__init__: one call
        # less on every routed request.
        self.resource = match.resource
        self.repeatable = repeatable
        self.transport_error, self.status, self.discard = reading
        self.tried = []
        self.first = first
        self.userinfo = match.userinfo
        self.rest = rest
        """Path, query and fragment of the original URL (``/items?page=2``)."""
        self.stripped = stripped
        """Whether a base path of the endpoint the URL named was taken off :attr:`rest`."""
        self.router = router
        """The router that planned the call: it also picks the retries' endpoints."""
        self.state = state
        """The control state the call was planned in."""
        self.headers = headers
        """resil's headers for the call (:func:`propagation`): the caller adds them."""

    def url(self, endpoint: Endpoint) -> str:
        """The URL of an attempt sent to ``endpoint``."""
        base = endpoint.url or f"http://{endpoint}"
        if self.userinfo:
            scheme, _, tail = base.partition("://")
            base = f"{scheme}://{self.userinfo}{tail}"
        return base + (self.rest or "/")


class _Nesting(threading.local):
    depth = 0


_nesting = _Nesting()


class inside:
    """Context manager around a routed call: a library that calls itself again inside
    it (urllib3 follows redirects by recursion) is not routed a second time."""

    def __enter__(self) -> None:
        _nesting.depth += 1

    def __exit__(self, *exc: object) -> None:
        _nesting.depth -= 1


_AUTHORITY_END = re.compile(r"[/?#]")


def plan(url: Any, method: str, headers: Any, body_replayable: bool,
         reading: Reading) -> Plan | None:
    """The routing plan of a call to ``url``, or None to leave the call untouched.

    ``reading`` is the integration's (see :data:`Reading`). The plan carries the
    headers the call adds (:func:`propagation`)."""
    agent = registry._runtime
    if agent is None or _nesting.depth or context._bypass.depth:
        return None
    router = agent.router
    text = url if isinstance(url, str) else str(url)
    start = text.find("://")
    if start < 0:
        return None
    found = _AUTHORITY_END.search(text, start + 3)
    end = found.start() if found is not None else len(text)
    prefix = text[:end]
    cache = router.http_matches
    match = cache.get(prefix, _UNKNOWN)
    if match is _UNKNOWN:
        if len(cache) >= HTTP_MATCHES:
            cache.clear()
        match = cache[prefix] = _match(router, prefix)
    if match is None:
        return None
    rest = text[end:]
    stripped = False
    if match.base_path and (rest == match.base_path or
                            rest.startswith((match.base_path + "/", match.base_path + "?"))):
        rest, stripped = rest[len(match.base_path):], True
    again = (body_replayable and method in SAFE_METHODS) or \
        repeatable(method, headers, body_replayable)
    match.budget.record_call()
    state = router.state()
    first = router.pick(match.resource, (), again, state)
    if first is None:   # pick always answers a first attempt; this keeps the types honest
        return None
    added = _UNIT_HEADERS.get(agent.config.unit)
    if added is None or context.route_key.get() or (spans._tracer is not None
                                                     and _otel_context()):
        try:
            added = propagation()
        except Exception as fault:      # the call is still routed, without resil's headers
            counters.record_fault("http.headers", fault)
            added = {}
    return Plan(match, first, rest, stripped, again, router, state, reading, added)


def names_no_resource(key: tuple[Any, ...]) -> bool:
    """Whether ``key`` (an integration's own key for a URL's scheme and authority, read
    from its parsed form) was found by :func:`remember_unrouted` to name no resource of
    the current router: the call is left alone without making the URL's text."""
    agent = registry._runtime
    return agent is not None and agent.router.http_matches.get(key, _UNKNOWN) is None


def remember_unrouted(key: tuple[Any, ...], text: str, host: str, port: int) -> None:
    """After :func:`plan` left the call to ``text`` alone: remember ``key`` for
    :func:`names_no_resource`, when the reason is that the URL names no resource — in
    plan's own cache (not a bypass or a nested call), and by ``host`` and ``port``
    as the integration read them (so a key read differently never hides a resource)."""
    agent = registry._runtime
    if agent is None:
        return
    router = agent.router
    start = text.find("://")
    if start < 0:
        return
    found = _AUTHORITY_END.search(text, start + 3)
    prefix = text[:found.start() if found is not None else len(text)]
    cache = router.http_matches
    if cache.get(prefix, _UNKNOWN) is None and router.topology.match("http", host, port) is None:
        if len(cache) >= HTTP_MATCHES:
            cache.clear()
        cache[key] = None


def _match(router: Any, prefix: str) -> _Match | None:
    parts = urlsplit(prefix)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    resource = router.topology.match("http", parts.hostname, port)
    if resource is None:
        return None
    userinfo = parts.netloc.rpartition("@")[0]
    base_path = ""
    for endpoints in resource.endpoints.values():
        for endpoint in endpoints:
            if endpoint.host == parts.hostname.lower() and endpoint.port == port:
                base_path = urlsplit(endpoint.url or "").path.rstrip("/")
    return _Match(resource, userinfo + "@" if userinfo else "", base_path,
                  router.budget(resource))


def header_value(key: str) -> str | bytes | None:
    """``key`` as a header value: text when it is printable ASCII, its UTF-8 bytes when
    it has other characters (every client sends bytes as they are, and the receiving
    side decodes UTF-8), None when it holds control characters — a key taken from a
    query string could carry CR LF, and must never become a header injection."""
    if key.isascii():
        return key if key.isprintable() else None
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        return None
    return key.encode("utf-8", "surrogatepass")


_UNIT_HEADERS: dict[str, dict[str, Any]] = {}
"""Unit → the headers of a routed call that has no routing key and no trace context
(the common case: one shared dictionary, never changed)."""


def propagation() -> dict[str, Any]:
    """Headers every routed call carries; with an OpenTelemetry SDK loaded, also the
    trace context (``traceparent``), as the OTel instrumentations of these libraries
    would add it (setting it twice writes the same value). The caller must not change
    the dictionary: the common one is shared."""
    agent = registry._runtime
    if agent is None:
        return {}
    unit = agent.config.unit
    key = context.route_key.get()
    value = header_value(key) if key else None
    traced = spans.tracing() and _otel_context()
    if value is None and not traced:
        common = _UNIT_HEADERS.get(unit)
        if common is None:
            common = _UNIT_HEADERS[unit] = {UNIT_HEADER: unit}
        return common
    headers: dict[str, Any] = {UNIT_HEADER: unit}
    if value is not None:
        headers[ROUTE_KEY_HEADER] = value
    if traced:
        from opentelemetry.propagate import inject
        inject(headers)
    return headers


def _otel_context() -> bool:
    """Whether OpenTelemetry's current context holds anything to propagate (a span,
    baggage). An empty one (no request being traced) makes ``inject`` add nothing, at
    the cost of its propagators' calls on every routed request: skipped."""
    from opentelemetry.context import get_current
    return bool(get_current())
