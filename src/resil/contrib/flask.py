"""Flask sessions in Redis: ``Resil(app)``, or nothing at all under ``resil-run``.

::

    from resil.contrib.flask import Resil, regenerate
    Resil(app)                  # or resil_ext = Resil(); resil_ext.init_app(app)

Under ``resil-run`` with ``[sessions] resource`` set, every Flask application whose
session interface is still Flask's default gets this one on its first request; an
application that chose its own (Flask-Session, say) is left alone.

The session lives in the Redis of ``[sessions] resource`` (:mod:`resil.sessions`); the
cookie carries only ``<id>.<mac>``, signed with the application's ``SECRET_KEY`` (and
accepted with any of ``SECRET_KEY_FALLBACKS``). Flask's settings are honoured:
``SESSION_COOKIE_NAME``, ``_DOMAIN``, ``_PATH``, ``_SECURE``, ``_HTTPONLY``, ``_SAMESITE``,
``_PARTITIONED``, ``PERMANENT_SESSION_LIFETIME`` (also the TTL in Redis, permanent or
not), ``session.permanent`` and ``SESSION_REFRESH_EACH_REQUEST``. Values use Flask's
tagged JSON (tuples, bytes, datetimes, UUIDs survive), never pickle.

Session fixation: :func:`regenerate` gives the session a new id (the data moves, the old
id is deleted); ``session.clear()`` does the same. Call ``regenerate()`` after a login.

Moving in: a request that arrives with a valid cookie of Flask's own cookie sessions has
its data moved into Redis, and its cookie replaced, without logging anyone out.

When Redis cannot be reached (``[sessions] on_error``): ``fail`` answers 503 before the
view runs; ``degrade`` runs the view with an empty session. Either way, a request whose
session change cannot be saved gets a 503 instead of its own answer: a change that was
reported as done is never silently lost.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SecureCookieSessionInterface, SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict
from werkzeug.exceptions import ServiceUnavailable

from .. import _log, counters, registry
from ..sessions import (
    Codec,
    Loaded,
    SessionStore,
    SessionUnavailable,
    new_id,
    sign,
    unsign,
)

log = _log.get("resil")
_EXTENSION = "resil"


class RedisSession(CallbackDict, SessionMixin):  # type: ignore[type-arg]
    """A session whose data lives in Redis under :attr:`sid`."""

    def __init__(self, data: dict[str, Any] | None = None, sid: str | None = None,
                 loaded: Loaded | None = None) -> None:
        def on_update(self: RedisSession) -> None:
            self.modified = True
            self.accessed = True
        super().__init__(data or {}, on_update)
        self.sid = sid or new_id()
        self.loaded = loaded
        """What was read from Redis (None: a new session)."""
        self.modified = False
        self.accessed = False
        self.rotate = False
        """Save under a new id and delete the old one (:func:`regenerate`)."""
        self.unavailable = ""
        """Why Redis could not be read for this request ("" when it could)."""

    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.accessed = True
        return super().get(key, default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self.accessed = True
        return super().setdefault(key, default)

    def clear(self) -> None:
        """Empty the session and give it a new id (a logout must not leave the old id
        usable)."""
        super().clear()
        self.rotate = True


def regenerate(session: RedisSession | None = None) -> None:
    """Give the session (default: the current request's) a new id; its data is kept and
    the old id stops working when the response is saved. Call it after a login."""
    from flask import session as current
    target = session if session is not None else current
    if isinstance(target, RedisSession):
        target.rotate = True
        target.modified = True


class RedisSessionInterface(SessionInterface):
    """Flask's session interface over :class:`resil.sessions.SessionStore`."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self.on_error = store.config.sessions_on_error

    def _secrets(self, app: Flask) -> list[Any]:
        return [app.secret_key, *(app.config.get("SECRET_KEY_FALLBACKS") or [])]

    def open_session(self, app: Flask, request: Any) -> RedisSession | None:
        if not app.secret_key:
            return None     # Flask's null session: writing to it says SECRET_KEY is unset
        cookie = request.cookies.get(self.get_cookie_name(app))
        sid = unsign(cookie, self._secrets(app))
        if sid is not None:
            try:
                loaded = self.store.load(sid)
            except SessionUnavailable as exc:
                counters.count("session_unavailable")
                session = RedisSession()
                session.unavailable = str(exc)
                return session
            if loaded is not None:
                return RedisSession(dict(loaded.data), sid, loaded)
        elif cookie:
            return self._moved_in(app, request) or RedisSession()
        return RedisSession()

    def _moved_in(self, app: Flask, request: Any) -> RedisSession | None:
        """A session of Flask's own signed cookie, moved into Redis."""
        old = SecureCookieSessionInterface().open_session(app, request)
        if not old:
            return None
        session = RedisSession(dict(old))
        session.permanent = bool(old.permanent)
        session.modified = True
        counters.count("session_moved_in")
        return session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, RedisSession):
            return
        name, domain, path = (self.get_cookie_name(app), self.get_cookie_domain(app),
                              self.get_cookie_path(app))
        cookie: dict[str, Any] = {
            "domain": domain, "path": path, "secure": self.get_cookie_secure(app),
            "samesite": self.get_cookie_samesite(app), "httponly": self.get_cookie_httponly(app)}
        if hasattr(self, "get_cookie_partitioned"):
            cookie["partitioned"] = self.get_cookie_partitioned(app)
        if session.accessed:
            response.vary.add("Cookie")
        if session.unavailable:
            if session.modified:
                self._unsaved(response, session.unavailable)
            return
        ttl = app.permanent_session_lifetime.total_seconds()
        try:
            if session.rotate and session.loaded is not None:
                self.store.delete(session.sid)
                session.sid, session.loaded = new_id(), None
            if not session:
                if session.loaded is not None:
                    self.store.delete(session.sid)
                if session.modified:
                    response.delete_cookie(name, **cookie)
                    response.vary.add("Cookie")
                return
            if not self.should_set_cookie(app, session):
                return
            if session.modified or session.loaded is None:
                if not self.store.save(session.sid, session.loaded, dict(session), ttl):
                    # deleted meanwhile (a logout in a concurrent request): not brought back
                    response.delete_cookie(name, **cookie)
                    return
            else:
                self.store.touch(session.sid, ttl)
        except SessionUnavailable as exc:
            counters.count("session_unavailable")
            self._unsaved(response, str(exc), exc.outcome)
            return
        response.set_cookie(name, sign(session.sid, app.secret_key or ""),
                            expires=self.get_expiration_time(app, session), **cookie)
        response.vary.add("Cookie")

    def _unsaved(self, response: Response, why: str,
                 outcome: str = "the change was not saved") -> None:
        """The request changed its session and the change could not be saved (or its
        store did not say whether it was): it must not be reported as done."""
        counters.count("session_unsaved")
        log.warning("resil: a session change could not be saved (%s); answering 503", why)
        response.status_code = 503
        response.set_data(f"session store unavailable: {outcome}\n")
        response.mimetype = "text/plain"


def _refuse_when_unavailable() -> None:
    """before_request: with ``on_error = "fail"``, no view runs without its session."""
    from flask import current_app, session
    ext = current_app.extensions.get(_EXTENSION)
    if isinstance(session, RedisSession) and session.unavailable and ext is not None \
            and ext.interface.on_error == "fail":
        raise ServiceUnavailable("session store unavailable")
    if isinstance(session, RedisSession) and session.unavailable:
        counters.count("session_degraded")


class Resil:
    """The Flask extension: sessions in Redis for ``app`` (see the module docstring)."""

    def __init__(self, app: Flask | None = None) -> None:
        self.interface: RedisSessionInterface | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Install the Redis session interface on ``app`` (starting the agent if none
        runs). Raises :class:`RuntimeError` when ``[sessions] resource`` is not set."""
        agent = registry.runtime()
        if agent is None:
            import resil
            agent = resil.start()
        if agent is None or not agent.config.sessions_resource:
            raise RuntimeError("resil sessions need [sessions] resource in resil.toml "
                               "(the redis resource that holds them)")
        serializer = TaggedJSONSerializer()
        store = SessionStore(agent.config, Codec(serializer.dumps, serializer.loads))
        self.interface = RedisSessionInterface(store)
        app.session_interface = self.interface
        app.extensions[_EXTENSION] = self
        # Directly in the table: the decorator refuses once the app has served.
        funcs = app.before_request_funcs.setdefault(None, [])
        if _refuse_when_unavailable not in funcs:
            funcs.insert(0, _refuse_when_unavailable)


def install_default(app: Flask) -> None:
    """Under the agent: give ``app`` Redis sessions if it still has Flask's default
    interface (called by the Flask integration on an application's first request)."""
    if _EXTENSION in app.extensions:
        return
    agent = registry.runtime()
    if agent is None or not agent.config.sessions_resource:
        return
    if type(app.session_interface) is not SecureCookieSessionInterface:
        log.info("resil: %s has its own session interface (%s); left alone", app.name,
                 type(app.session_interface).__name__)
        return
    Resil(app)


__all__ = ["Resil", "RedisSession", "RedisSessionInterface", "regenerate"]
