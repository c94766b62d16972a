"""Wrong-unit protection for the WSGI and ASGI layer of the Flask and Django integrations.

Every request's routing key (:mod:`.routekey`) is put in :data:`resil.context.route_key`
while the request runs, so outgoing calls carry it on. When ``[routing] key`` is set and
a write (any method but GET, HEAD, OPTIONS, TRACE) carries a key whose home unit, by the
rules of the agent's applied control state, is another unit, the write is refused with
409 or forwarded to that unit's instance, as ``[routing] wrong_unit`` says. Reads always
pass: a unit can serve reads of any key from its replicas.

Each decision runs under the fail-open guard: if resil's code raises, the request goes
to the application as if resil were absent. Once a forward has been attempted, though,
its failure is a 502, never a local run: the other unit may already have the write.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .. import context, counters
from ..guard import fail_open
from .forward import FORWARDED_FROM, ForwardFailed, Outgoing, Reply, forward
from .routekey import header_value, key_from_environ, key_from_scope

if TYPE_CHECKING:
    from ..runtime import Runtime

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
"""Methods that never write, so never refused."""

HOME_UNIT = "X-Resil-Home-Unit"
"""Response header naming the unit a refused or forwarded key belongs to."""

_FORWARDED_WSGI = "HTTP_" + FORWARDED_FROM.upper().replace("-", "_")
_FORWARDED_ASGI = FORWARDED_FROM.lower().encode()
_PATH_SAFE = "/;=,:@!$&'()*+~"      # what may stay unescaped in a path (RFC 3986 pchar)

WsgiApp = Callable[[MutableMapping[str, Any], Callable[..., Any]], Any]
AsgiApp = Callable[[Any, Any, Any], Awaitable[Any]]


@dataclass(frozen=True)
class Misrouted:
    """A write whose routing key belongs to another unit, and what to do with it."""

    key: str
    home: str
    """The unit the key belongs to."""
    unit: str
    """This process's unit."""
    epoch: int
    """The epoch of the control state that decided."""
    forward: bool
    """Forward it (``wrong_unit = "forward"``, not forwarded before) or refuse it."""
    forwarded_from: str | None
    """The unit that already forwarded it, if one did."""


def judge(agent: Runtime, key: str, method: str, forwarded_from: str | None) -> Misrouted | None:
    """Whether this request is a wrong-unit write to refuse or forward; None lets it pass."""
    config = agent.config
    if config.routing_key is None or config.wrong_unit == "allow" \
            or method.upper() in SAFE_METHODS:    # Werkzeug upper-cases "post" too
        return None
    state = agent.state
    home = state.home_unit(key)
    if home is None or home == config.unit:
        return None
    # A request forwarded to us by a unit that thinks we are its home is not sent on
    # again: the two units apply different rules (epochs), and a loop must not start.
    again = bool(forwarded_from)
    return Misrouted(key, home, config.unit, state.epoch,
                     config.wrong_unit == "forward" and not again, forwarded_from or None)


def rejection(wrong: Misrouted) -> Reply:
    """The 409 answer to a wrong-unit write."""
    counters.count("wrong_unit_rejected")
    message = f"routing key {wrong.key!r} belongs to unit {wrong.home!r}; " \
              f"this is unit {wrong.unit!r}"
    extra: dict[str, Any] = {}
    if wrong.forwarded_from:
        message += f" (forwarded from unit {wrong.forwarded_from!r}, which disagrees: " \
                   "not forwarded again)"
        extra["forwarded_from"] = wrong.forwarded_from
    return _json_reply(409, "Conflict", wrong, "wrong_unit", message, extra)


def forwarded(agent: Runtime, wrong: Misrouted, request: Outgoing) -> Reply:
    """Forward a wrong-unit write to the home unit's instance; its answer, or a 502."""
    config = agent.config
    endpoint = config.resources[config.forward_to].endpoint_in(wrong.home)
    if endpoint is None or not endpoint.url:
        counters.count("wrong_unit_forward_failed")
        return _json_reply(502, "Bad Gateway", wrong, "wrong_unit_forward_failed",
                           f"cannot forward to unit {wrong.home!r}: resource "
                           f"{config.forward_to!r} has no endpoint there")
    try:
        with context.bypass():
            reply = forward(request, endpoint.url, wrong.unit)
    except ForwardFailed as exc:
        counters.count("wrong_unit_forward_failed")
        return _json_reply(502, "Bad Gateway", wrong, "wrong_unit_forward_failed",
                           f"forwarding to unit {wrong.home!r} ({endpoint.url}) failed: {exc}")
    counters.count("wrong_unit_forwarded")
    return Reply(reply.status, reply.reason, reply.headers + [(HOME_UNIT, wrong.home)],
                 reply.body)


def _json_reply(status: int, reason: str, wrong: Misrouted, error: str, message: str,
                extra: dict[str, Any] | None = None) -> Reply:
    body = json.dumps({"error": error, "message": message, "unit": wrong.home,
                       "key": wrong.key, "epoch": wrong.epoch, **(extra or {})}).encode()
    return Reply(status, reason, [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body))),
                                  (HOME_UNIT, wrong.home)], body)


# --------------------------------------------------------------------------- WSGI

def serve_wsgi(agent: Runtime, app: WsgiApp, environ: MutableMapping[str, Any],
               start_response: Callable[..., Any]) -> Any:
    """Run the WSGI ``app`` with the request's routing key set, unless it is a
    wrong-unit write that is refused or forwarded instead."""
    key = fail_open("unit_guard.key", key_from_environ, agent.config.routing_key, environ)
    if key is None:
        return app(environ, start_response)
    token = context.route_key.set(key)
    try:
        reply = fail_open("unit_guard.wsgi", _wsgi_decision, agent, key, environ)
        if reply is None:
            return app(environ, start_response)
    finally:
        context.route_key.reset(token)
    start_response(reply.status_line, reply.headers)
    return [reply.body]


def _wsgi_decision(agent: Runtime, key: str, environ: MutableMapping[str, Any]) -> Reply | None:
    wrong = judge(agent, key, environ.get("REQUEST_METHOD", ""), environ.get(_FORWARDED_WSGI))
    if wrong is None:
        return None
    if not wrong.forward:
        return rejection(wrong)
    return forwarded(agent, wrong, wsgi_request(environ))


def wsgi_request(environ: MutableMapping[str, Any]) -> Outgoing:
    """The request of a WSGI ``environ``, body read. The input stream is replaced by
    one over the bytes read, so the application can still read the body."""
    target = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
    if not target.startswith("/"):      # absent, or an absolute URI: rebuild it
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        target = quote(path.encode("latin-1"), safe=_PATH_SAFE) or "/"
        if environ.get("QUERY_STRING"):
            target += "?" + environ["QUERY_STRING"]
    headers = [(name[5:].replace("_", "-").title(), value) for name, value in environ.items()
               if name.startswith("HTTP_")]
    if environ.get("CONTENT_TYPE"):
        headers.append(("Content-Type", environ["CONTENT_TYPE"]))
    body = _wsgi_body(environ)
    return Outgoing(environ.get("REQUEST_METHOD", "GET"), target, headers, body)


def _wsgi_body(environ: MutableMapping[str, Any]) -> bytes:
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > 0:
        body = bytes(stream.read(length))
    elif environ.get("wsgi.input_terminated"):   # chunked: the server marks the end
        body = bytes(stream.read())
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


# --------------------------------------------------------------------------- ASGI

async def serve_asgi(agent: Runtime, app: AsgiApp, scope: MutableMapping[str, Any],
                     receive: Callable[[], Awaitable[Any]],
                     send: Callable[[Any], Awaitable[Any]]) -> Any:
    """The ASGI counterpart of :func:`serve_wsgi`, for ``scope["type"] == "http"``."""
    key = fail_open("unit_guard.key", key_from_scope, agent.config.routing_key, scope)
    if key is None:
        return await app(scope, receive, send)
    token = context.route_key.set(key)
    try:
        headers = scope.get("headers") or ()
        wrong = fail_open("unit_guard.asgi", judge, agent, key, scope.get("method", ""),
                          _text(header_value(headers, _FORWARDED_ASGI)))
        reply = None
        if wrong is not None and not wrong.forward:
            reply = fail_open("unit_guard.asgi", rejection, wrong)
        elif wrong is not None:
            body = await _read_body(receive)
            if body is None:
                return None          # the client went away before sending its body
            receive = _replay(body, receive)
            reply = await _forward_async(agent, wrong, scope, body)
        if reply is None:
            return await app(scope, receive, send)
    finally:
        context.route_key.reset(token)
    await send({"type": "http.response.start", "status": reply.status,
                "headers": [(n.lower().encode("latin-1"), v.encode("latin-1"))
                            for n, v in reply.headers]})
    await send({"type": "http.response.body", "body": reply.body, "more_body": False})
    return None


async def _forward_async(agent: Runtime, wrong: Misrouted, scope: MutableMapping[str, Any],
                         body: bytes) -> Reply | None:
    try:
        request = asgi_request(scope, body)
        # http.client blocks: run it in a thread so the event loop keeps serving.
        return await asyncio.to_thread(forwarded, agent, wrong, request)
    except Exception as exc:  # fail-open: resil's fault must never reach the application
        counters.record_fault("unit_guard.asgi", exc)
        return None


def asgi_request(scope: MutableMapping[str, Any], body: bytes) -> Outgoing:
    """The request of an ASGI HTTP ``scope`` with its ``body``."""
    raw_path = scope.get("raw_path")
    # scope["path"] includes root_path (as Django and current servers read the spec).
    path = raw_path.decode("latin-1") if raw_path else \
        quote(scope.get("path") or "/", safe=_PATH_SAFE)
    query = scope.get("query_string") or b""
    target = path + ("?" + query.decode("latin-1") if query else "")
    headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in scope.get("headers") or ()]
    return Outgoing(scope.get("method", "GET"), target, headers, body)


async def _read_body(receive: Callable[[], Awaitable[Any]]) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
    """A ``receive`` that gives the body already read, then defers to the real one (the
    application still gets it if resil falls back to it)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Any:
        if pending:
            return pending.pop()
        return await receive()
    return replay


def _text(raw: bytes | None) -> str | None:
    return raw.decode("latin-1") if raw is not None else None
