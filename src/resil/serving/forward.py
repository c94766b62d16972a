"""Sending one request on to another instance of the application and reading its answer.

Used by wrong-unit protection (:mod:`.unitguard`) in ``forward`` mode. It is a plain
``http.client`` exchange, one connection per request: forwards are rare (a client that
reached the wrong unit), so a pool would be state to manage for nothing. The caller runs
it inside :class:`resil.context.bypass`, so resil's own routing never redirects it.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "proxy-connection", "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})
"""Headers that describe one connection (RFC 9110 §7.6.1), never passed on by a proxy."""

FORWARDED_FROM = "X-Resil-Forwarded-From"
"""Added to a forwarded request: the unit it was forwarded from. An instance that
receives a wrong-unit write carrying it refuses it instead of forwarding again."""

TIMEOUT = 30.0
"""Seconds allowed for connecting and for each read from the other instance."""


@dataclass(frozen=True)
class Outgoing:
    """A request as received: method, target (path and query), headers and body."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class Reply:
    """A complete response to give the client."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status_line(self) -> str:
        """``"409 Conflict"``: the WSGI form of the status."""
        return f"{self.status} {self.reason}"


class ForwardFailed(Exception):
    """The other instance could not be reached, or did not answer in time."""


def end_to_end(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` without hop-by-hop ones (including those the Connection header
    names) and without Content-Length, which the sender sets for the body it sends."""
    pairs = list(headers)
    named = {token.strip().lower() for name, value in pairs if name.lower() == "connection"
             for token in value.split(",")}
    return [(name, value) for name, value in pairs
            if name.lower() not in HOP_BY_HOP and name.lower() not in named
            and name.lower() != "content-length"]


def forward(request: Outgoing, base_url: str, from_unit: str,
            timeout: float = TIMEOUT) -> Reply:
    """Send ``request`` to the instance at ``base_url`` (scheme, host, port and an
    optional base path) and return its complete answer.

    Raises :class:`ForwardFailed` for anything that goes wrong once a connection is
    attempted: the request may have reached the other instance by then, so the caller
    must not run it locally as well.
    """
    base = urlsplit(base_url)
    host = base.hostname or ""
    connection_class = (http.client.HTTPSConnection if base.scheme == "https"
                        else http.client.HTTPConnection)
    target = base.path.rstrip("/") + request.target
    headers = end_to_end(request.headers)
    headers = [(n, v) for n, v in headers if n.lower() != FORWARDED_FROM.lower()]
    if not any(name.lower() == "host" for name, _ in headers):
        headers.append(("Host", base.netloc))
    headers += [(FORWARDED_FROM, from_unit), ("Content-Length", str(len(request.body)))]
    connection = connection_class(host, base.port, timeout=timeout)
    try:
        # putheader rather than request(headers=dict): repeated headers stay repeated.
        connection.putrequest(request.method, target, skip_host=True,
                              skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders(request.body)
        response = connection.getresponse()
        body = response.read()
        received = end_to_end(response.getheaders())
        reason = response.reason or _phrase(response.status)
        return Reply(response.status, reason,
                     received + [("Content-Length", str(len(body)))], body)
    except Exception as exc:   # whatever it was, the other instance may have the request
        raise ForwardFailed(f"{type(exc).__name__}: {exc}" if str(exc)
                            else type(exc).__name__) from exc
    finally:
        connection.close()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
