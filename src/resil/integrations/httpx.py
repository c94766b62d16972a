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
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import registry
from .base import Integration, Target, fail_open

if TYPE_CHECKING:
    from ..retry import Exchange


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


def _preparer() -> Callable[[Any], tuple[Any, Exchange[Any], Callable[[Any], None]] | None]:
    """How a request is prepared: its routing plan, its exchange, and how to aim it at an
    endpoint. Built when httpx is patched, so that routing loads with httpx, not at
    start-up."""
    from ..retry import Exchange
    from . import _http

    def prepare(request: Any) -> tuple[Any, Exchange[Any], Callable[[Any], None]] | None:
        """The routing plan of ``request``, its exchange, and how to aim it at an endpoint."""
        import httpx
        plan = _http.plan(str(request.url), request.method, request.headers,
                          isinstance(request.stream, httpx.ByteStream))
        if plan is None:
            return None
        original_host = request.headers.get("host")
        default_host = request.url.netloc.decode("ascii")
        keep_host = original_host is not None and original_host != default_host
        for name, value in _http.propagation().items():
            if isinstance(value, bytes):    # non-ASCII: httpx may insist on ASCII for text
                raw = [(k, v) for k, v in request.headers.raw if k.lower() != name.encode()]
                request.headers = httpx.Headers([*raw, (name.encode(), value)])
            else:
                request.headers[name] = value
        exchange: Exchange[Any] = Exchange(plan.resource, plan.repeatable, _transport_error,
                                           _status, _discard)

        original = request.url

        def aim(endpoint: Any) -> None:
            fast = None if plan.stripped else _retarget(original, endpoint)
            request.url = fast if fast is not None else httpx.URL(plan.url(endpoint))
            if not keep_host:
                request.headers["host"] = request.url.netloc.decode("ascii")
        return plan, exchange, aim
    return prepare


_targets: dict[Any, tuple[str, str, int | None] | None] = {}


def _retarget(url: Any, endpoint: Any) -> Any:
    """``url`` sent to ``endpoint`` (same path, query, userinfo) without parsing a URL
    again: httpx's parser costs ~15 µs, a fifth of a loopback call. Only for endpoints
    without a base path, and only while httpx keeps its parsed form as it does in 0.23
    to 0.28; otherwise None, and the URL is parsed."""
    import httpx
    if endpoint in _targets:
        target = _targets[endpoint]
    else:
        parts = urlsplit(endpoint.url or "")
        default = 443 if parts.scheme == "https" else 80
        target = None if parts.path.strip("/") else \
            (parts.scheme, endpoint.host, None if endpoint.port == default else endpoint.port)
        _targets[endpoint] = target
    reference = getattr(url, "_uri_reference", None)
    if target is None or reference is None or not hasattr(reference, "_replace"):
        return None
    scheme, host, port = target
    try:
        parsed = reference._replace(scheme=scheme, host=host, port=port)
    except (TypeError, ValueError):   # another httpx layout: the caller parses instead
        return None
    new = httpx.URL.__new__(httpx.URL)
    new._uri_reference = parsed
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
        plan, exchange, aim = prepared

        def attempt(endpoint: Any) -> Any:
            aim(endpoint)
            return original(self, request)
        return execute(plan.router, exchange, attempt, plan.first)
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
        plan, exchange, aim = prepared

        async def attempt(endpoint: Any) -> Any:
            aim(endpoint)
            return await original(self, request)
        return await execute_async(plan.router, exchange, attempt, _discard_async,
                                   plan.first)
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
