"""urllib3: calls made through a ``PoolManager`` to http resources are routed.

Seam: ``PoolManager.urlopen`` — where urllib3 chooses the connection pool from the URL
(``connection_from_host``). The URL is rewritten to the chosen endpoint before the pool
is chosen; ``headers``, ``body``, ``timeout``, ``retries``, ``preload_content`` and the
other arguments pass through. urllib3's own ``Retry`` still applies to each attempt (it
retries the same endpoint); resil's retries then try another unit. A redirect that
urllib3 follows inside the call stays with the endpoint it came from (urllib3 calls
``urlopen`` recursively; the nested call is not routed again).

requests does not use this seam (it talks to urllib3's pools directly and is routed by
its own integration), so a call is never routed twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import registry
from .base import Integration, Target, fail_open


def _transport_error(exc: BaseException) -> bool:
    from urllib3 import exceptions as e
    if isinstance(exc, e.MaxRetryError):
        exc = exc.reason or exc
    return isinstance(exc, (e.NewConnectionError, e.TimeoutError, e.ProtocolError,
                            e.SSLError, e.ProxyError))


def _discard(response: Any) -> None:
    try:
        response.drain_conn()
    finally:
        response.release_conn()


def _status(response: Any) -> int:
    return int(response.status)


def make_urlopen(original: Callable[..., Any]) -> Callable[..., Any]:
    """A replacement for ``PoolManager.urlopen(self, method, url, redirect=True, **kw)``."""
    from ..retry import execute  # loaded with the library, not at start-up
    from . import _http
    reading: _http.Reading = (_transport_error, _status, _discard)

    def urlopen(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if registry._runtime is None:
            return original(self, method, url, *args, **kwargs)
        body = kwargs.get("body")
        headers = dict(kwargs.get("headers") or self.headers)
        plan = fail_open("urllib3.route", _http.plan, url, method, headers,
                         body is None or isinstance(body, (bytes, str)), reading)
        if plan is None:
            return original(self, method, url, *args, **kwargs)
        headers.update(plan.headers)
        kwargs["headers"] = headers

        def attempt(endpoint: Any) -> Any:
            with _http.inside():
                return original(self, method, plan.url(endpoint), *args, **kwargs)
        return execute(plan.router, plan, attempt, plan.first, plan.state)
    return urlopen


class Urllib3Integration(Integration):
    """Same-unit routing, outlier ejection and retries for urllib3's PoolManager."""

    name = "urllib3"
    distribution = "urllib3"
    supported = ((1, 26), (3,))
    targets = (Target("urllib3.poolmanager", "PoolManager.urlopen", make_urlopen,
                      method=True),)
