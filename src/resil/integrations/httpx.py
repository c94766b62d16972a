"""httpx: calls of ``Client`` and ``AsyncClient`` to http resources are routed.

Seam: ``HTTPTransport.handle_request`` and ``AsyncHTTPTransport.handle_async_request`` —
the transport the client chose for the URL (its default one, or a mounted
``HTTPTransport``), just before the request goes to the connection pool. The request's
URL is set to the chosen endpoint's (the ``Host`` header follows, unless the
application set its own), two headers are added (:mod:`._http`), and everything else —
headers, body, streaming, timeouts (``request.extensions``), TLS settings of the
transport — passes through. Custom transports (``MockTransport``, a user's own) are
left alone: they decide for themselves where a request goes.

A request whose body is a stream (a generator) is not retried: it cannot be sent twice.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import registry
from .base import Integration, Target, fail_open

if TYPE_CHECKING:
    from ._http import Plan


def _transport_error(exc: BaseException) -> bool:
    import httpx
    return isinstance(exc, httpx.TransportError) and not isinstance(
        exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError))


def _discard(response: Any) -> None:
    response.close()


async def _discard_async(response: Any) -> None:
    await response.aclose()


def _status(response: Any) -> int:
    return int(response.status_code)


def _preparer() -> Callable[[Any], tuple[Plan, Callable[[Any], None]] | None]:
    """How a request is prepared: its routing plan (also its exchange) and how to aim it
    at an endpoint. Built when httpx is patched, so that routing loads with httpx, not
    at start-up."""
    from . import _http
    reading: _http.Reading = (_transport_error, _status, _discard)
    plan_of, names_no_resource = _http.plan, _http.names_no_resource
    remember_unrouted = _http.remember_unrouted
    kinds: list[Any] = []
    """``httpx.ByteStream`` and ``httpx.URL``, read at the first call: httpx is patched
    while it is still being imported, before it has them."""

    def prepare(request: Any) -> tuple[Plan, Callable[[Any], None]] | None:
        """The routing plan of ``request`` and how to aim it at an endpoint."""
        if not kinds:
            import httpx
            kinds[:] = (httpx.ByteStream, httpx.URL)
        byte_stream, make_url = kinds
        url = request.url
        # A host already known to be no resource is told from the parsed URL, without
        # making its text (str(url) alone is ~7,600 instructions, a third of what an
        # unrouted call cost)
        reference: Any = getattr(url, "_uri_reference", None)
        key = None
        if getattr(reference, "_fields", None) == _LAYOUT:
            key = ("httpx", reference[0], reference[2], reference[3])
            if names_no_resource(key):
                return None
        text = str(url)
        plan = plan_of(text, request.method, request.headers,
                       isinstance(request.stream, byte_stream), reading)
        if plan is None:
            if key is not None:
                port = key[3] or (443 if key[1] == "https" else 80)
                remember_unrouted(key, text, key[2], port)
            return None
        host = _add_headers(request, url, plan.headers)

        def aim(endpoint: Any) -> None:
            target = _targets.get(endpoint) or _target(endpoint)
            fast = None if plan.stripped else _retarget(url, target, make_url)
            request.url = fast if fast is not None else make_url(plan.url(endpoint))
            if host is not None:
                host(target[3] if fast is not None else request.url.netloc.decode("ascii"))
        return plan, aim
    return prepare


_encoded: tuple[dict[str, Any], list[tuple[bytes, bytes, bytes]] | None] = ({}, [])
"""The last headers added and their (raw name, lower-case name, value) triples (None:
not all ASCII text); routed calls without a routing key all add the same dictionary."""


def _triples(added: dict[str, Any]) -> list[tuple[bytes, bytes, bytes]] | None:
    global _encoded
    last = _encoded
    if last[0] is added:
        return last[1]
    triples = [(name.encode(), name.lower().encode(), value.encode())
               for name, value in added.items()
               if type(value) is str and (name + value).isascii()]
    found = triples if len(triples) == len(added) else None
    _encoded = (added, found)
    return found


_TUPLE, _THREE, _second = {tuple}, {3}, itemgetter(1)


def _add_headers(request: Any, url: Any, added: dict[str, Any]) -> Callable[[str], None] | None:
    """Add resil's headers to ``request``; return how to set its ``Host`` for the
    endpoint an attempt goes to, or None when the application set a Host of its own
    (kept as it is)."""
    headers = request.headers
    items = getattr(headers, "_list", None)
    triples = _triples(added)
    # (every item a tuple of three, checked with builtins only: a generator's frame per
    # header cost more than the rest of this function)
    if type(items) is list and triples is not None and \
            set(map(type, items)) <= _TUPLE and set(map(len, items)) <= _THREE:
        # httpx 0.23 to 0.28 keep (raw name, lower-case name, value) triples: set them
        # directly, at a fifth of the cost of the mapping methods (each rebuilds lists).
        lowers = list(map(_second, items))
        for triple in triples:
            while triple[1] in lowers:  # the application's own: replaced, as by headers[k]
                del items[lowers.index(triple[1])]
                lowers.remove(triple[1])
        items.extend(triples)
        if b"host" not in lowers:
            return _host_setter(request)
        at = lowers.index(b"host")
        if items[at][2] != url.netloc:
            return None

        def set_host(value: str) -> None:
            items[at] = (items[at][0], b"host", value.encode("ascii"))
        return set_host
    original_host = headers.get("host")
    keep_host = original_host is not None and original_host != url.netloc.decode("ascii")
    for name, value in added.items():
        if isinstance(value, bytes):    # non-ASCII: httpx may insist on ASCII for text
            import httpx
            raw = [(k, v) for k, v in headers.raw if k.lower() != name.encode()]
            headers = request.headers = httpx.Headers([*raw, (name.encode(), value)])
        else:
            headers[name] = value
    return None if keep_host else _host_setter(request)


def _host_setter(request: Any) -> Callable[[str], None]:
    def set_host(value: str) -> None:
        request.headers["host"] = value
    return set_host


_targets: dict[Any, tuple[str, str, int | None, str, bool]] = {}
"""Endpoint → its scheme, host, port (None for the scheme's default), Host header, and
whether a URL aimed at it can be made without parsing (no base path)."""


def _target(endpoint: Any) -> tuple[str, str, int | None, str, bool]:
    import httpx
    parts = urlsplit(endpoint.url or "")
    default = 443 if parts.scheme == "https" else 80
    port = None if endpoint.port == default else endpoint.port
    netloc = httpx.URL(endpoint.url or f"http://{endpoint}").netloc.decode("ascii")
    found = _targets[endpoint] = (parts.scheme, endpoint.host, port, netloc,
                                  not parts.path.strip("/"))
    return found


_LAYOUT = ("scheme", "userinfo", "host", "port", "path", "query", "fragment")
"""The fields of httpx's parsed URL (``httpx._urlparse.ParseResult``) in 0.23 to 0.28."""


def _retarget(url: Any, target: tuple[str, str, int | None, str, bool], make_url: Any) -> Any:
    """``url`` sent to an endpoint (same path, query, userinfo) without parsing a URL
    again: httpx's parser costs ~15 µs, a fifth of a loopback call. Only for endpoints
    without a base path, and only while httpx keeps its parsed form as it does in 0.23
    to 0.28; otherwise None, and the URL is parsed. ``make_url`` is ``httpx.URL``."""
    scheme, host, port, _, plain = target
    reference: Any = getattr(url, "_uri_reference", None)
    if not plain or getattr(reference, "_fields", None) != _LAYOUT:
        return None
    _, userinfo, _, _, path, query, fragment = reference
    new = make_url.__new__(make_url)
    new._uri_reference = reference.__class__(scheme, userinfo, host, port, path, query,
                                             fragment)
    return new


def make_handle(original: Callable[..., Any]) -> Callable[..., Any]:
    """A replacement for ``HTTPTransport.handle_request(self, request)``."""
    from ..retry import execute
    prepare = _preparer()

    def handle_request(self: Any, request: Any) -> Any:
        if registry._runtime is None:
            return original(self, request)
        prepared = fail_open("httpx.route", prepare, request)
        if prepared is None:
            return original(self, request)
        plan, aim = prepared

        def attempt(endpoint: Any) -> Any:
            aim(endpoint)
            return original(self, request)
        return execute(plan.router, plan, attempt, plan.first, plan.state)
    return handle_request


def make_handle_async(original: Callable[..., Any]) -> Callable[..., Any]:
    """A replacement for ``AsyncHTTPTransport.handle_async_request(self, request)``."""
    from ..retry import execute_async
    prepare = _preparer()

    async def handle_async_request(self: Any, request: Any) -> Any:
        if registry._runtime is None:
            return await original(self, request)
        prepared = fail_open("httpx.route", prepare, request)
        if prepared is None:
            return await original(self, request)
        plan, aim = prepared

        async def attempt(endpoint: Any) -> Any:
            aim(endpoint)
            return await original(self, request)
        return await execute_async(plan.router, plan, attempt, _discard_async,
                                   plan.first, plan.state)
    return handle_async_request


class HttpxIntegration(Integration):
    """Same-unit routing, outlier ejection and retries for httpx (sync and asyncio)."""

    name = "httpx"
    distribution = "httpx"
    supported = ((0, 23), (1,))
    targets = (
        Target("httpx._transports.default", "HTTPTransport.handle_request", make_handle,
               method=True),
        Target("httpx._transports.default", "AsyncHTTPTransport.handle_async_request",
               make_handle_async, method=True),
    )
