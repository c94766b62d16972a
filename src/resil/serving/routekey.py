"""Where an incoming request carries its routing key: a header, a cookie or the query.

WSGI and ASGI present the same request in two shapes (an environ of latin-1 strings; a
scope of bytes). Both are reduced to bytes here and decoded once, the same way, so that
one key hashes to one bucket whichever server received it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from ..context import ROUTE_KEY_HEADER, ROUTE_KEY_WSGI

# The header that carries a routing key from service to service: sent on outgoing calls
# to http resources, read on incoming requests when the configured place has no key.
PROPAGATED = ROUTE_KEY_HEADER
PROPAGATED_WSGI = ROUTE_KEY_WSGI

def wsgi_name(header: str) -> str:
    """The WSGI environ key of an HTTP header: ``X-User-Id`` → ``HTTP_X_USER_ID``."""
    return "HTTP_" + header.upper().replace("-", "_")


def key_from_environ(where: tuple[str, str] | None, environ: Mapping[str, Any]) -> str | None:
    """The routing key of a WSGI request, or None.

    ``where`` is ``Config.routing_key``; when it finds nothing (or is None), the
    propagated ``x-resil-route-key`` header is used.
    """
    if where is not None:
        kind, name = where
        if kind == "header":
            key = _text(_latin1(environ.get(wsgi_name(name))))
        elif kind == "cookie":
            key = cookie_value(_text(_latin1(environ.get("HTTP_COOKIE"))), name)
        else:
            key = query_value(_latin1(environ.get("QUERY_STRING")) or b"", name)
        if _clean(key):
            return _clean(key)
    return _clean(_text(_latin1(environ.get(PROPAGATED_WSGI))))


def key_from_scope(where: tuple[str, str] | None, scope: Mapping[str, Any]) -> str | None:
    """The routing key of an ASGI HTTP request, or None (same rules as WSGI)."""
    headers: Iterable[tuple[bytes, bytes]] = scope.get("headers") or ()
    if where is not None:
        kind, name = where
        if kind == "header":
            key = _text(header_value(headers, name.lower().encode("latin-1")))
        elif kind == "cookie":
            key = cookie_value(_text(header_value(headers, b"cookie", join=b"; ")), name)
        else:
            key = query_value(scope.get("query_string") or b"", name)
        if _clean(key):
            return _clean(key)
    return _clean(_text(header_value(headers, PROPAGATED.encode())))


def header_value(headers: Iterable[tuple[bytes, bytes]], name: bytes,
                 join: bytes | None = None) -> bytes | None:
    """The value of header ``name`` (lower case) in ASGI ``headers``: the first one, or
    all of them joined with ``join`` (HTTP/2 sends each cookie as its own header)."""
    found = [value for key, value in headers if key.lower() == name]
    if not found:
        return None
    return join.join(found) if join is not None else found[0]


def cookie_value(header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header, or None.

    ``SimpleCookie`` gives up on the rest of a header at the first cookie it cannot
    parse (or raises), and browsers do send such cookies. So when the whole header does
    not yield the cookie, each ``;``-separated part is tried on its own.
    """
    if not header:
        return None
    found = _morsel(header, name)
    if found is not None:
        return found
    for part in header.split(";"):
        if part.partition("=")[0].strip() == name:
            found = _morsel(part, name)
            if found is not None:
                return found
    return None


def _morsel(text: str, name: str) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(text)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def query_value(query: bytes, name: str) -> str | None:
    """The first value of parameter ``name`` in a raw query string, or None."""
    if not query:
        return None
    # Decode percent-escapes as UTF-8, like every framework does; a raw non-UTF-8 byte
    # is replaced rather than failing the request.
    values = parse_qs(query.decode("latin-1"), encoding="utf-8", errors="replace").get(name)
    return values[0] if values else None


def _latin1(value: str | None) -> bytes | None:
    # WSGI strings are the request's bytes decoded as latin-1 (PEP 3333): undo that.
    if value is None:
        return None
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:      # not a PEP 3333 string: use it as given
        return value.encode("utf-8", "surrogateescape")


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _clean(value: str | None) -> str | None:
    # Surrounding blanks are not part of a key; an empty value is no key.
    if value is None:
        return None
    return value.strip() or None
