"""What the HTTP client integrations (requests, urllib3, httpx) share.

:func:`plan` answers, for the URL of an outgoing call: does it name an http resource —
by the resource's name (``http://productservice/...``), an alias, or any of its
endpoints — and if so, which endpoint the first attempt goes to and which part of the
URL (path, query) is carried over. A URL that names no resource gets None and the call
is left exactly as the application made it. The answer for a scheme and authority is
cached per router (a bounded LRU), so an unrouted call costs one string search and one
dictionary lookup.

Routed calls carry ``x-resil-unit`` (the caller's unit) and, while a request with a
routing key is being served, ``x-resil-route-key``. Calls to other hosts carry nothing
of resil's: a unit name is no business of a third party.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import context, registry, spans
from ..context import ROUTE_KEY_HEADER, UNIT_HEADER
from ..retry import repeatable
from ..router import HTTP_MATCHES
from ..topology import Endpoint, Resource

if TYPE_CHECKING:
    from ..router import Router

_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNKNOWN = object()
"""Not in the match cache yet (None there means: no resource)."""


@dataclass(frozen=True)
class _Match:
    resource: Resource
    userinfo: str
    """``user:password@`` of the original URL, kept on the rewritten one."""
    base_path: str
    """The base path of the endpoint the URL named directly ("" otherwise), which the
    chosen endpoint's own base path replaces."""


@dataclass(frozen=True)
class Plan:
    """A routed call: its resource, where its first attempt goes, the rest of its URL."""

    resource: Resource
    first: Endpoint
    userinfo: str
    rest: str
    """Path, query and fragment of the original URL (``/items?page=2``)."""
    repeatable: bool
    """Whether the call is safe to send again (see :func:`resil.retry.repeatable`)."""
    router: Router
    """The router that planned the call: it also picks the retries' endpoints."""
    stripped: bool = False
    """Whether a base path of the endpoint the URL named was taken off :attr:`rest`."""

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


def plan(url: Any, method: str, headers: Any, body_replayable: bool) -> Plan | None:
    """The routing plan of a call to ``url``, or None to leave the call untouched."""
    router = registry.router()
    if router is None or _nesting.depth or context.bypassed():
        return None
    text = url if isinstance(url, str) else str(url)
    start = text.find("://")
    if start < 0:
        return None
    end = start + 3
    length = len(text)
    while end < length and text[end] not in "/?#":
        end += 1
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
    again = repeatable(method, headers, body_replayable)
    router.budget(match.resource).record_call()
    first = router.pick(match.resource, (), again)
    if first is None:   # pick always answers a first attempt; this keeps the types honest
        return None
    return Plan(match.resource, first, match.userinfo, rest, again, router, stripped)


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
    return _Match(resource, userinfo + "@" if userinfo else "", base_path)


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


def propagation() -> dict[str, Any]:
    """Headers every routed call carries; with an OpenTelemetry SDK loaded, also the
    trace context (``traceparent``), as the OTel instrumentations of these libraries
    would add it (setting it twice writes the same value)."""
    agent = registry.runtime()
    headers: dict[str, Any] = {UNIT_HEADER: agent.config.unit} if agent is not None else {}
    key = context.route_key.get()
    value = header_value(key) if key else None
    if value is not None:
        headers[ROUTE_KEY_HEADER] = value
    if spans.tracing():
        from opentelemetry.propagate import inject
        inject(headers)
    return headers
