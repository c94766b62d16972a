"""requests: calls to http resources go to the endpoint the router picks, with retries.

Seam: ``HTTPAdapter.send`` — where requests turns a prepared request into a connection
pool choice (``get_connection_with_tls_context``) and a urllib3 call. Everything the
application set (method, headers, body, cookies, auth, ``stream``, ``timeout``,
``verify``, ``cert``, proxies) has been applied to the prepared request by then and is
passed through; only its URL changes, to the chosen endpoint's base URL plus the
original path and query, and two headers are added (:mod:`._http`). Redirects are
followed by ``Session.send`` through this seam again, so each hop is routed on its own.

The application sees the endpoint's URL in ``response.url``, as it would if it had
called the endpoint itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import registry
from .base import Integration, Target, fail_open


def _transport_error(exc: BaseException) -> bool:
    from requests import exceptions
    return isinstance(exc, (exceptions.ConnectionError, exceptions.Timeout,
                            exceptions.ChunkedEncodingError))


def _discard(response: Any) -> None:
    response.close()


def _status(response: Any) -> int:
    return int(response.status_code)


def make_send(original: Callable[..., Any]) -> Callable[..., Any]:
    """A replacement for ``HTTPAdapter.send(self, request, **kwargs)``."""
    from ..retry import execute  # loaded with the library, not at start-up
    from . import _http
    reading: _http.Reading = (_transport_error, _status, _discard)

    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        if registry._runtime is None:
            return original(self, request, *args, **kwargs)
        body = request.body
        plan = fail_open("requests.route", _http.plan, request.url, request.method or "GET",
                         request.headers, body is None or isinstance(body, (bytes, str)),
                         reading)
        if plan is None:
            return original(self, request, *args, **kwargs)
        request.headers.update(plan.headers)
        stream = kwargs.get("stream", args[0] if args else False)

        def attempt(endpoint: Any) -> Any:
            request.url = plan.url(endpoint)
            response = original(self, request, *args, **kwargs)
            if plan.repeatable and not stream:
                # Read the body here, as Session.send would right after: a server that
                # dies mid-body then fails this attempt, retried like one that died
                # before answering, instead of failing the application's call.
                response.content  # noqa: B018
            return response
        return execute(plan.router, plan, attempt, plan.first, plan.state)
    return send


class RequestsIntegration(Integration):
    """Same-unit routing, outlier ejection and retries for requests."""

    name = "requests"
    distribution = "requests"
    supported = ((2, 25), (3,))
    targets = (Target("requests.adapters", "HTTPAdapter.send", make_send, method=True),)
