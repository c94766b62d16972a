"""Starlette (and FastAPI) sessions in Redis: Starlette's own ``SessionMiddleware``, with
no code change, under the agent with ``[sessions] resource`` set.

The application keeps its middleware as it is::

    app.add_middleware(SessionMiddleware, secret_key=...)

and ``request.session`` keeps working as a dict. What changes is where the session
lives: in the Redis of ``[sessions] resource`` (:mod:`resil.sessions`), not in the
cookie. The cookie carries only ``<id>.<mac>``, signed with the middleware's
``secret_key``; the middleware's own settings are honoured (``session_cookie``,
``max_age`` (also the TTL in Redis; 14 days when it is None), ``path``, ``same_site``,
``https_only``, ``domain``, ``partitioned``). Values are JSON, never pickle. As with
Starlette's cookie, a session lives ``max_age`` after its last change.

``request.session.clear()`` gives the session a new id (a logout must not leave the old
id usable); :func:`regenerate` does it keeping the data: call it after a login.

Moving in: a request that arrives with a valid cookie of Starlette's own cookie sessions
has its data moved into Redis and its cookie replaced, without logging anyone out.

When Redis cannot be reached (``[sessions] on_error``): ``fail`` answers 503 before the
application runs; ``degrade`` runs it with an empty session. Either way, a request whose
session change cannot be saved gets a 503 instead of its own answer: a change that was
reported as done is never silently lost. Redis is called in a worker thread, so the
event loop never waits on it.
"""

from __future__ import annotations

import functools
import json
from base64 import b64decode
from collections.abc import Awaitable, Callable
from typing import Any

from .. import _log, counters, registry
from ..guard import fail_open
from ..sessions import Loaded, SessionStore, SessionUnavailable, new_id, sign, unsign

log = _log.get("resil")

#: The TTL in Redis of a session whose cookie has no ``max_age`` (a browser session):
#: Starlette's own default ``max_age``.
DEFAULT_TTL = 14 * 24 * 60 * 60.0

_EXPIRED = "expires=Thu, 01 Jan 1970 00:00:00 GMT; "


class RedisSession(dict[str, Any]):
    """``request.session``: a dict whose data lives in Redis under :attr:`sid`. Like
    Starlette's own session it knows whether it was read (``accessed``) or changed
    (``modified``)."""

    def __init__(self, data: dict[str, Any] | None = None, sid: str | None = None,
                 loaded: Loaded | None = None) -> None:
        super().__init__(data or {})
        self.sid = sid or new_id()
        self.loaded = loaded
        """What was read from Redis (None: a new session)."""
        self.accessed = False
        self.modified = False
        self.rotate = False
        """Save under a new id and delete the old one (:func:`regenerate`)."""
        self.unavailable = ""
        """Why Redis could not be read for this request ("" when it could)."""

    def mark_accessed(self) -> None:
        self.accessed = True

    def mark_modified(self) -> None:
        self.accessed = self.modified = True

    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.accessed = True
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.accessed = True
        return super().__contains__(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.mark_modified()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.mark_modified()
        super().__delitem__(key)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self.mark_modified()
        return super().setdefault(key, default)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self.mark_modified()
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        self.mark_modified()
        return super().popitem()

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.mark_modified()
        super().update(*args, **kwargs)

    def clear(self) -> None:
        """Empty the session and give it a new id."""
        self.mark_modified()
        self.rotate = True
        super().clear()


def regenerate(session: Any) -> None:
    """Give ``session`` (``request.session``) a new id; its data is kept and the old id
    stops working when the response starts. Call it after a login."""
    if isinstance(session, RedisSession):
        session.rotate = True
        session.mark_modified()


_STORE: SessionStore | None = None


def store() -> SessionStore | None:
    """The session store of the running agent (made again when its configuration is
    another); None without ``[sessions] resource``."""
    global _STORE
    agent = registry.runtime()
    if agent is None or not agent.config.sessions_resource:
        return None
    if _STORE is None or _STORE.config is not agent.config:
        _STORE = SessionStore(agent.config)
    return _STORE


async def _in_thread(call: Callable[..., Any], *args: Any) -> Any:
    import anyio.to_thread
    return await anyio.to_thread.run_sync(functools.partial(call, *args))


def _secrets(middleware: Any) -> list[bytes]:
    """The middleware's signing keys, newest first (itsdangerous keeps them oldest first)."""
    return list(reversed(middleware.signer.secret_keys))


def _cookie(middleware: Any, value: str, expiry: str) -> tuple[bytes, bytes]:
    return (b"set-cookie", f"{middleware.session_cookie}={value}; path={middleware.path}; "
            f"{expiry}{middleware.security_flags}".encode("latin-1"))


def _moved_in(middleware: Any, cookie: str) -> RedisSession | None:
    """A session of Starlette's own signed cookie, moved into Redis."""
    from itsdangerous import BadSignature
    try:
        data = json.loads(b64decode(middleware.signer.unsign(cookie.encode("utf-8"),
                                                             max_age=middleware.max_age)))
    except (BadSignature, ValueError):
        return None
    if not isinstance(data, dict) or not data:
        return None
    session = RedisSession(data)
    session.mark_modified()
    counters.count("session_moved_in")
    return session


async def _open(middleware: Any, sessions: SessionStore, cookie: str | None) -> RedisSession:
    sid = unsign(cookie, _secrets(middleware))
    if sid is not None:
        try:
            loaded = await _in_thread(sessions.load, sid)
        except SessionUnavailable as exc:
            counters.count("session_unavailable")
            session = RedisSession()
            session.unavailable = str(exc)
            return session
        if loaded is not None:
            return RedisSession(dict(loaded.data), sid, loaded)
    elif cookie:
        return _moved_in(middleware, cookie) or RedisSession()
    return RedisSession()


async def _save(middleware: Any, sessions: SessionStore, session: RedisSession,
                was_sent: bool) -> list[tuple[bytes, bytes]]:
    """The Set-Cookie headers of the response; raises :class:`SessionUnavailable` when a
    change could not be saved (or its outcome is unknown)."""
    if session.unavailable:
        if session.modified:
            raise SessionUnavailable(session.unavailable)
        return []
    if not session.modified:
        return []
    if session.rotate and session.loaded is not None:
        await _in_thread(sessions.delete, session.sid)
        session.sid, session.loaded = new_id(), None
    if not session:
        if session.loaded is not None:
            await _in_thread(sessions.delete, session.sid)
        return [_cookie(middleware, "null", _EXPIRED)] if was_sent else []
    ttl = float(middleware.max_age) if middleware.max_age else DEFAULT_TTL
    if not await _in_thread(sessions.save, session.sid, session.loaded, dict(session), ttl):
        # deleted meanwhile (a logout in a concurrent request): not brought back
        return [_cookie(middleware, "null", _EXPIRED)]
    max_age = f"Max-Age={middleware.max_age}; " if middleware.max_age is not None else ""
    return [_cookie(middleware, sign(session.sid, _secrets(middleware)[0]), max_age)]


async def _refuse(send: Callable[[dict[str, Any]], Awaitable[None]], why: str) -> None:
    body = f"session store unavailable: {why}\n".encode()
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def serve(middleware: Any, sessions: SessionStore, scope: dict[str, Any],
                receive: Any, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """``SessionMiddleware.__call__`` with the session in Redis (the module docstring)."""
    from starlette.requests import HTTPConnection
    cookie = HTTPConnection(scope).cookies.get(middleware.session_cookie)
    session = await _open(middleware, sessions, cookie)
    scope["session"] = session
    if session.unavailable:
        if sessions.config.sessions_on_error == "fail":
            if scope["type"] == "http":
                await _refuse(send, "the session could not be read")
            return
        counters.count("session_degraded")
    replaced = False

    async def send_wrapper(message: dict[str, Any]) -> None:
        nonlocal replaced
        if replaced:
            return                  # the application's answer, replaced by a 503
        if message["type"] == "http.response.start":
            try:
                cookies = await _save(middleware, sessions, session, cookie is not None)
            except SessionUnavailable as exc:
                counters.count("session_unsaved")
                counters.count("session_unavailable")
                log.warning("resil: a session change could not be saved (%s); answering 503",
                            exc)
                replaced = True
                await _refuse(send, exc.outcome)
                return
            headers = list(message.get("headers", []))
            if session.accessed:
                headers.append((b"vary", b"Cookie"))
            message = {**message, "headers": headers + cookies}
        await send(message)

    await middleware.app(scope, receive, send_wrapper)


def make_session_call(original: Callable[..., Any]) -> Callable[..., Any]:
    """``SessionMiddleware.__call__``: sessions in Redis when ``[sessions] resource`` is
    set; Starlette's own cookie sessions otherwise."""
    async def __call__(self: Any, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await original(self, scope, receive, send)   # type: ignore[no-any-return]
        sessions = fail_open("starlette.sessions", store)
        if sessions is None:
            return await original(self, scope, receive, send)   # type: ignore[no-any-return]
        await serve(self, sessions, scope, receive, send)
    return __call__


__all__ = ["RedisSession", "regenerate", "serve"]
