"""Request metrics and wrong-unit protection around a WSGI or ASGI callable, shared by
the Flask and Django integrations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import counters, reads, registry
from ..context import ROUTE_KEY_ASGI, ROUTE_KEY_WSGI
from ..guard import fail_open
from ..requeststats import status_of

# .unitguard (with asyncio and http.client) is imported only by a process that has
# routing keys to look at, not at start-up: the header names come from the core.
PROPAGATED_WSGI = ROUTE_KEY_WSGI
_PROPAGATED_ASGI = ROUTE_KEY_ASGI


def _watching() -> None:
    agent = registry.runtime()
    if agent is not None:
        agent.current_state()   # heartbeats (which carry these metrics) start on first use


def make_wsgi(original: Callable[..., Any]) -> Callable[..., Any]:
    """A replacement for ``original(self, environ, start_response)`` that counts the
    request (in flight while it runs, then its status class and duration) and applies
    wrong-unit protection (:mod:`.unitguard`)."""
    def wsgi(self: Any, environ: Any, start_response: Callable[..., Any]) -> Any:
        agent = registry.runtime()
        if agent is None:
            return original(self, environ, start_response)
        fail_open("wsgi.metrics", _watching)
        stats = counters.requests()
        token = stats.begin()
        status = [0]
        scope = _scope_writes(agent)

        def start(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            status[0] = status_of(status_line)
            if exc_info is None:
                return start_response(status_line, headers)
            return start_response(status_line, headers, exc_info)
        try:
            # Without [routing] key and without a propagated key, nothing to look at.
            if agent.config.routing_key is None and PROPAGATED_WSGI not in environ:
                return original(self, environ, start)
            from . import unitguard
            return unitguard.serve_wsgi(
                agent, lambda env, respond: original(self, env, respond), environ, start)
        finally:
            stats.end(token, status[0] or 500)
            if scope is not None:
                reads.request_writes.reset(scope)
    return wsgi


def make_asgi(original: Callable[..., Any]) -> Callable[..., Any]:
    """A replacement for an ASGI ``original(self, scope, receive, send)`` that counts
    HTTP requests (the status comes from the ``http.response.start`` message) and
    applies wrong-unit protection."""
    async def asgi(self: Any, scope: Any, receive: Any, send: Any) -> Any:
        agent = registry.runtime()
        if agent is None or scope.get("type") != "http":
            return await original(self, scope, receive, send)
        fail_open("asgi.metrics", _watching)
        stats = counters.requests()
        token = stats.begin()
        status = [0]
        writes = _scope_writes(agent)

        async def sending(message: Any) -> Any:
            if message.get("type") == "http.response.start":
                status[0] = int(message.get("status", 0))
            return await send(message)
        try:
            if agent.config.routing_key is None and not any(
                    name == _PROPAGATED_ASGI for name, _ in scope.get("headers") or ()):
                return await original(self, scope, receive, sending)
            from . import unitguard
            return await unitguard.serve_asgi(
                agent, lambda sc, rc, sd: original(self, sc, rc, sd), scope, receive, sending)
        finally:
            stats.end(token, status[0] or 500)
            if writes is not None:
                reads.request_writes.reset(writes)
    return asgi


def _scope_writes(agent: Any) -> Any:
    """For a ``read_your_writes = "request"`` resource: a record of the request's
    writes, for the request's reads on any connection (:mod:`resil.reads`); the token
    that ends it, or None."""
    if not reads.request_scoped(agent.config.resources.values()):
        return None
    return reads.request_writes.set(reads.Writes())
