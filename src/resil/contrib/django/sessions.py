"""A Django session engine over :mod:`resil.sessions`: ``SESSION_ENGINE =
"resil.contrib.django.sessions"`` (or nothing at all under ``resil-run``).

The session lives in the Redis of ``[sessions] resource``, one hash per session, JSON
only; a save writes only the keys the request changed (so concurrent requests that
change different keys both keep their change) and never brings back a session deleted
meanwhile. Django's settings are honoured: ``SESSION_COOKIE_AGE``,
``SESSION_EXPIRE_AT_BROWSER_CLOSE`` and ``set_expiry()`` give the Redis TTL
(:meth:`~SessionBase.get_expiry_age`, renewed on every save), and the cookie settings
are Django's own (``SessionMiddleware`` sets the cookie). ``SESSION_SERIALIZER`` is not
used: values are always JSON.

Keys: the session key Django puts in the cookie is ``<id>.<mac>``
(:func:`resil.sessions.sign` of a 192-bit id with ``SECRET_KEY``, 60 characters). A key
whose MAC verifies with neither ``SECRET_KEY`` nor any of ``SECRET_KEY_FALLBACKS`` is
refused in :meth:`SessionStore._validate_session_key`, before Redis is asked, and the
request gets a new, empty session. A key signed with a fallback secret is accepted and
re-signed with ``SECRET_KEY`` on the response.

Redis trouble (``[sessions] on_error``). The backend decides, the Django integration
answers:

- ``fail``: :meth:`SessionStore.load` raises :class:`~resil.sessions.SessionUnavailable`
  wherever the session is first needed (a view, ``request.user``, a middleware);
- ``degrade``: :meth:`~SessionStore.load` returns an empty session and marks it
  *degraded*: it is never written back, so the user's real session is intact when Redis
  returns. A degraded session that the request changes raises :class:`SessionNotSaved`
  (a ``SessionUnavailable``) from :meth:`~SessionStore.save`, in
  ``SessionMiddleware.process_response``: the change was not saved, so the answer must
  not be a success;
- a save or create that cannot reach Redis raises ``SessionNotSaved``; a delete (a
  logout) or ``exists`` that cannot, ``SessionUnavailable``.

The integration (:mod:`resil.integrations.django`) wraps Django's one exception-to-
response boundary, ``django.core.handlers.exception.response_for_exception``, which
every middleware layer and the view pass through: there ``SessionUnavailable`` becomes
:func:`unavailable_response` — a plain-text 503, logged like any 5xx by
``django.request`` but without a traceback — in place of a 500. That seam was chosen over
wrapping ``SessionMiddleware`` because the session is loaded lazily, often by code that
runs inside other middleware (``AuthenticationMiddleware``'s ``request.user``,
``MessageMiddleware``), whose exceptions Django turns into 500 responses before they
reach the session middleware again. Events: ``session_unavailable`` (a session operation
could not reach Redis), ``session_degraded`` (a request was served an empty session),
``session_unsaved`` (a changed session could not be saved: 503).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings  # type: ignore[import-untyped]
from django.contrib.sessions.backends.base import (  # type: ignore[import-untyped]
    CreateError,
    SessionBase,
    UpdateError,
)
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
from django.http import HttpResponse  # type: ignore[import-untyped]

from ... import counters, registry
from ...errors import ConfigError, LockTimeoutError
from ...sessions import Loaded, SessionUnavailable, new_id, sign, unsign
from ...sessions import SessionStore as RedisStore

if TYPE_CHECKING:
    from ...runtime import Runtime

ENGINE = __name__
"""This module's name: the value of ``SESSION_ENGINE`` that selects it."""

_CREATE_ATTEMPTS = 3
_shared: tuple[Any, RedisStore] | None = None
_shared_lock = threading.Lock()


# --------------------------------------------------------------------------- the store

def running_agent() -> Runtime | None:
    """The running agent, started (``RESIL_CONFIG`` or ``./resil.toml``) if none runs;
    None when resil is disabled. A bad configuration is ``ImproperlyConfigured``."""
    agent = registry.runtime()
    if agent is not None:
        return agent
    import resil
    try:
        return resil.start()
    except ConfigError as exc:
        raise ImproperlyConfigured(f"resil: {exc}") from exc


def shared_store() -> RedisStore:
    """The process's one :class:`resil.sessions.SessionStore`, built from the running
    agent's configuration (a new agent, a new store).

    Raises ``ImproperlyConfigured`` when resil is disabled or ``[sessions] resource``
    is not set.
    """
    agent = running_agent()
    if agent is None:
        raise ImproperlyConfigured(
            f"SESSION_ENGINE = {ENGINE!r} needs the resil agent, which is disabled "
            "(RESIL_DISABLED)")
    config = agent.config
    current = _shared
    if current is not None and current[0] is config:
        return current[1]
    if not config.sessions_resource:
        raise ImproperlyConfigured(
            f"SESSION_ENGINE = {ENGINE!r} needs [sessions] resource in resil.toml "
            "(or RESIL_SESSIONS_RESOURCE): the name of the redis resource that holds "
            "the sessions")
    return _build(config)


def _build(config: Any) -> RedisStore:
    global _shared
    with _shared_lock:
        if _shared is None or _shared[0] is not config:
            _shared = (config, RedisStore(config))
        return _shared[1]


def _secrets() -> list[str | bytes]:
    return [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ())]


class SessionNotSaved(SessionUnavailable):
    """A changed session could not be saved (its store was unavailable): the request
    must not be answered as a success."""


def _unavailable(exc: BaseException) -> SessionUnavailable:
    counters.count("session_unavailable")
    if isinstance(exc, SessionUnavailable):
        return exc
    # A write held by a switch past the lock timeout: the store is unavailable for now.
    return SessionUnavailable(f"sessions: {exc}")


# --------------------------------------------------------------------------- the engine

class SessionStore(SessionBase):  # type: ignore[misc]
    """Django's ``SessionStore`` over Redis; see the module docstring."""

    def __init__(self, session_key: str | None = None) -> None:
        self._checked: tuple[str, str | None] = ("", None)   # key → id, the last verified
        self._loaded: Loaded | None = None
        """The session as last read or written (what a save diffs against)."""
        self._degraded = False
        """Served empty because Redis was unreachable: never written back."""
        super().__init__(session_key)

    # ------------------------------------------------------------------ keys

    def _id_of(self, key: str | None) -> str | None:
        """The id in a signed key, or None when the key was not signed by one of the
        project's secrets (no Redis call)."""
        if not isinstance(key, str) or not key:
            return None
        if self._checked[0] != key:
            self._checked = (key, unsign(key, _secrets()))
        return self._checked[1]

    def _validate_session_key(self, key: str | None) -> bool:
        valid = self._id_of(key) is not None
        if key and not valid:
            counters.count("session_key_rejected")
        return valid

    def _get_new_session_key(self) -> str:
        # 192 random bits never collide in practice: no EXISTS round trip first (a
        # collision would still be caught, by create()'s must_create).
        return sign(new_id(), settings.SECRET_KEY)

    async def _aget_new_session_key(self) -> str:
        return self._get_new_session_key()

    def _session_id(self) -> str:
        sid = self._id_of(self.session_key)
        if sid is None:     # session_key is only ever set to a verified key
            raise RuntimeError("resil: no valid session key")
        return sid

    # ------------------------------------------------------------------ Django's API

    def exists(self, session_key: str | None) -> bool:
        """Whether a session with this (signed) key exists; a forged key never does."""
        sid = self._id_of(session_key)
        if sid is None:
            return False
        try:
            return shared_store().exists(sid)
        except (SessionUnavailable, LockTimeoutError) as exc:
            raise _unavailable(exc) from exc

    def load(self) -> dict[str, Any]:
        """The session's data; an unknown, expired or invalid session is empty and loses
        its key (a new one is made when it is saved); nothing is written."""
        if self._id_of(self.session_key) is None:   # no key, or one we did not sign
            self._session_key = None
            self._loaded = None
            return {}
        sid = self._session_id()
        store = shared_store()
        try:
            loaded = store.load(sid)
        except SessionUnavailable:
            counters.count("session_unavailable")
            if store.config.sessions_on_error != "degrade":
                raise
            counters.count("session_degraded")
            self._degraded = True
            return {}
        if loaded is None:
            self._session_key = None
            self._loaded = None
            return {}
        self._loaded = loaded
        if unsign(self.session_key, _secrets()[:1]) is None:
            # Signed with a fallback secret: re-sign with SECRET_KEY (same session).
            self._session_key = sign(sid, settings.SECRET_KEY)
            self.modified = True
        return dict(loaded.data)

    def create(self) -> None:
        """Save the session (its current data) under a new key."""
        for _ in range(_CREATE_ATTEMPTS):
            self._session_key = self._get_new_session_key()
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return
        raise RuntimeError(f"resil: no free session id after {_CREATE_ATTEMPTS} attempts")

    def save(self, must_create: bool = False) -> None:
        """Write the keys that changed since the session was read, and renew its TTL.

        ``must_create``: store it as a new session, or raise ``CreateError`` when the
        key exists. Otherwise update the existing session, or raise ``UpdateError`` when
        it is gone (deleted meanwhile, by a logout in a concurrent request, or expired).
        """
        if self.session_key is None:
            return self.create()
        data = self._get_session(no_load=must_create)      # may load it now
        if self._degraded:
            if must_create or self.modified:
                counters.count("session_unsaved")
                raise SessionNotSaved("the session was served empty because the session "
                                      "store was unavailable")
            return      # unchanged (SESSION_SAVE_EVERY_REQUEST): nothing to lose
        if self.session_key is None:
            raise UpdateError       # the load just now found no session
        sid = self._session_id()
        ttl = self.get_expiry_age()
        store = shared_store()
        if ttl <= 0:    # expired already (set_expiry in the past): stored, it is gone
            try:
                store.delete(sid)
            except (SessionUnavailable, LockTimeoutError) as exc:
                raise _unavailable(exc) from exc
            self._loaded = None
            return
        try:
            if must_create:
                if not store.create(sid, data, ttl):
                    raise CreateError
            else:
                # A session emptied by clear() was never read: read it now, to know
                # which of its keys to delete.
                loaded = self._loaded if self._loaded is not None else store.load(sid)
                if loaded is None or not store.save(sid, loaded, data, ttl):
                    raise UpdateError
        except (SessionUnavailable, LockTimeoutError) as exc:
            counters.count("session_unavailable")
            counters.count("session_unsaved")
            raise SessionNotSaved(f"sessions: {exc}", unknown=isinstance(
                exc, SessionUnavailable) and exc.unknown) from exc
        self._loaded = Loaded(dict(data), {k: store.codec.dumps(v) for k, v in data.items()},
                              self._loaded.created if self._loaded else time.time())

    def delete(self, session_key: str | None = None) -> None:
        """Delete the session with this key (default: this one)."""
        if session_key is None:
            session_key = self.session_key
        sid = self._id_of(session_key)
        if sid is None:
            return
        try:
            shared_store().delete(sid)
        except (SessionUnavailable, LockTimeoutError) as exc:
            raise _unavailable(exc) from exc
        if session_key == self.session_key:
            self._loaded = None
            self._degraded = False

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: Redis expires sessions by their TTL."""

    # ------------------------------------------------------------------ async
    # Django's SessionBase runs exists, load, create, save and delete in a thread
    # (sync_to_async) for aexists, aload, acreate, asave and adelete, and builds the
    # other async methods (acycle_key, aflush, aget, ...) on those: only the two that
    # need no Redis call are our own.

    @classmethod
    async def aclear_expired(cls) -> None:
        """Nothing to do: Redis expires sessions by their TTL."""


# --------------------------------------------------------------------------- the answer

def unavailable_response(request: Any, exc: SessionUnavailable) -> HttpResponse:
    """The 503 a request gets when its session could not be loaded or saved."""
    from django.utils.log import log_response  # type: ignore[import-untyped]
    text = "session store unavailable"
    if isinstance(exc, SessionNotSaved):
        text += f": {exc.outcome}"
    response = HttpResponse(text + "\n", status=503, content_type="text/plain; charset=utf-8")
    log_response("Service Unavailable (%s): %s", str(exc), request.path,
                 response=response, request=request)
    return response


__all__ = ["ENGINE", "SessionNotSaved", "SessionStore", "shared_store", "unavailable_response"]
