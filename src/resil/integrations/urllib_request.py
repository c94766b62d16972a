"""urllib.request: ``urlopen`` calls to http resources are routed like the others.

Seam: ``OpenerDirector._open`` — where urllib picks the handler for the request's URL
scheme (``http_open``/``https_open``), after the request processors (cookies, auth
headers) ran and before the response processors (errors, redirects). The request's
URL is set to the chosen endpoint's; its method, headers, data and timeout stay. A
5xx answer is still a response here (``HTTPError`` is raised later, by the response
processor), so a retryable status can be retried; a redirect is followed by a new
``open`` and routed on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import registry
from .base import Integration, Target, fail_open


def _transport_error(exc: BaseException) -> bool:
    import http.client
    import urllib.error
    if isinstance(exc, urllib.error.HTTPError):
        return False
    if isinstance(exc, urllib.error.URLError):
        return isinstance(exc.reason, OSError)
    return isinstance(exc, (OSError, http.client.HTTPException))


def _discard(response: Any) -> None:
    response.close()


def _status(response: Any) -> int:
    return int(getattr(response, "status", None) or response.getcode() or 0)


def make_open(original: Callable[..., Any]) -> Callable[..., Any]:
    """A replacement for ``OpenerDirector._open(self, req, data=None)``."""
    from ..retry import execute  # loaded with the library, not at start-up
    from . import _http
    reading: _http.Reading = (_transport_error, _status, _discard)

    def _open(self: Any, req: Any, *args: Any, **kwargs: Any) -> Any:
        if registry._runtime is None:
            return original(self, req, *args, **kwargs)
        data = req.data
        headers = {**req.headers, **req.unredirected_hdrs}
        plan = fail_open("urllib.route", _http.plan, req.full_url, req.get_method(), headers,
                         data is None or isinstance(data, (bytes, str)), reading)
        if plan is None:
            return original(self, req, *args, **kwargs)
        for name, value in plan.headers.items():
            req.add_unredirected_header(name.capitalize(), value)

        def attempt(endpoint: Any) -> Any:
            req.full_url = plan.url(endpoint)
            return original(self, req, *args, **kwargs)
        return execute(plan.router, plan, attempt, plan.first, plan.state)
    return _open


class UrllibRequestIntegration(Integration):
    """Same-unit routing, outlier ejection and retries for ``urllib.request``."""

    name = "urllib"
    distribution = ""
    supported = ((0,), (99,))
    targets = (Target("urllib.request", "OpenerDirector._open", make_open, method=True),)

    def _version_ok(self) -> bool:
        return True     # the standard library's: no version range to check
