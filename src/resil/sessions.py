"""Web sessions in Redis, for any framework: ids, signing, JSON, TTL, concurrent saves.

A session is one Redis hash, ``resil:session:<id>``: one field per top-level key of the
session (``d:<key>`` → the key's value as JSON) plus ``m:created``. Keeping keys apart is
what makes concurrent requests of one user safe: :meth:`SessionStore.save` writes only
the keys this request changed and deletes only the ones it removed, in one server-side
script, so two requests that change *different* keys both keep their change (two that
change the *same* key: the last save wins). A save never brings back a session that was
deleted meanwhile (a logout wins over a concurrent cart update).

Security:

- values are JSON only — never pickle, never ``eval``. A field that is not valid JSON (a
  pickle planted in Redis, say) makes the whole session invalid: it is treated as no
  session and counted (``session_rejected``), never decoded further;
- an id is 192 random bits (``secrets``); the cookie carries ``<id>.<mac>``, an
  HMAC-SHA256 of the id under a key derived from the framework's secret, so a guessed or
  forged id is rejected (:func:`unsign`) before Redis is asked;
- a session is at most ``[sessions] max_size`` bytes of JSON; a bigger one raises
  :class:`SessionTooLarge`, which names the largest key, before anything is written.

Where it lives: writes go to the resource's primary through the application's routed
redis-py connection, so they follow switches and are held during one. Reads go to the
process's own unit: when the own unit holds a replica, it is read directly (a missing
session there is looked up on the primary), and each write first waits — at most
``[sessions] replica_wait`` seconds, Redis ``WAIT`` — until the replicas have it, so the
next request, whichever unit serves it, finds the write in its own unit.

The framework layers (:mod:`resil.contrib.flask`, :mod:`resil.contrib.django`) decide
what a failure of Redis means for a request (``[sessions] on_error``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import context, counters, registry
from .errors import ResilError

if TYPE_CHECKING:
    from .config import Config

KEY_PREFIX = "resil:session:"
_DATA = "d:"
_CREATED = "m:created"
ID_BYTES = 24
"""Random bytes of a session id (192 bits)."""

# KEYS[1]: the session. ARGV: must_exist (1/0), ttl_ms, number of fields to set, then
# field/value pairs, then fields to delete. Returns 0 when must_exist and it is gone.
_SAVE = """
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = tonumber(ARGV[3])
local i = 4
if n > 0 then
  local pairs = {}
  for j = 0, 2 * n - 1 do pairs[#pairs + 1] = ARGV[i + j] end
  redis.call('HSET', KEYS[1], unpack(pairs))
end
i = 4 + 2 * n
if #ARGV >= i then
  local gone = {}
  for j = i, #ARGV do gone[#gone + 1] = ARGV[j] end
  redis.call('HDEL', KEYS[1], unpack(gone))
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""
# KEYS[1]: the session. ARGV: ttl_ms, created, then field/value pairs.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local pairs = {'m:created', ARGV[2]}
for j = 3, #ARGV do pairs[#pairs + 1] = ARGV[j] end
redis.call('HSET', KEYS[1], unpack(pairs))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""


class SessionTooLarge(ResilError, ValueError):
    """The session would exceed ``[sessions] max_size`` bytes; nothing was written."""


class SessionUnavailable(ResilError):
    """Redis could not be reached to load or save a session.

    ``unknown``: the command may have reached Redis (it timed out, or the connection was
    lost after it was sent): a save may have been made after all. Otherwise nothing was
    sent (refused, or the connect timed out)."""

    def __init__(self, message: str, unknown: bool = False) -> None:
        super().__init__(message)
        self.unknown = unknown

    @property
    def outcome(self) -> str:
        """What a request whose change failed must be told about it."""
        return ("the change may or may not have been saved (the session store did not "
                "answer)" if self.unknown else "the change was not saved")


@dataclass(frozen=True)
class Codec:
    """How one session value becomes text and back; JSON unless a framework has its own
    JSON dialect (Flask's tagged JSON keeps tuples, bytes, datetimes)."""

    dumps: Callable[[Any], str]
    loads: Callable[[str], Any]


JSON = Codec(lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False, allow_nan=False),
             json.loads)


@dataclass
class Loaded:
    """A session as read: its values, and their encoded form (to find what changed)."""

    data: dict[str, Any]
    encoded: dict[str, str]
    created: float


def new_id() -> str:
    """A fresh session id: 192 random bits, URL-safe."""
    return secrets.token_urlsafe(ID_BYTES)


def _mac(session_id: str, secret: str | bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    derived = hmac.new(key, b"resil.sessions.id", hashlib.sha256).digest()
    digest = hmac.new(derived, session_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:20]).rstrip(b"=").decode()


def sign(session_id: str, secret: str | bytes) -> str:
    """The cookie value for ``session_id``: ``<id>.<mac>``."""
    return f"{session_id}.{_mac(session_id, secret)}"


def unsign(value: str | None, secrets_: Iterable[str | bytes]) -> str | None:
    """The session id in a cookie value, or None when it is not one ``sign`` made with
    one of ``secrets_`` (the current secret first, then fallbacks)."""
    if not value or value.count(".") != 1:
        return None
    session_id, mac = value.split(".")
    if len(session_id) != 32 or not session_id.replace("-", "").replace("_", "").isalnum():
        return None
    for secret in secrets_:
        if secret and hmac.compare_digest(mac, _mac(session_id, secret)):
            return session_id
    return None


class SessionStore:
    """Loads and saves sessions of the ``[sessions] resource`` Redis."""

    def __init__(self, config: Config, codec: Codec = JSON,
                 clock: Callable[[], float] = time.time) -> None:
        resource = config.resources[config.sessions_resource]
        self.config = config
        self.resource = resource
        self.codec = codec
        self.max_size = config.sessions_max_size
        self._clock = clock
        self._lock = threading.Lock()
        self._primary: Any = None
        self._local: Any = None

    # ------------------------------------------------------------------ connections

    def _client(self, endpoint: Any) -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
        # Bytes, decoded here: a value that is not UTF-8 JSON is an invalid session,
        # not a decoding error inside redis-py.
        return redis.Redis(host=endpoint.host, port=endpoint.port, socket_timeout=1.0,
                           socket_connect_timeout=min(1.0, self.resource.connect_timeout),
                           health_check_interval=30,
                           # one immediate retry (a connection cut by a switch), not
                           # redis-py's default backoff: a frozen Redis costs a request
                           # at most 2 s, not seconds per call
                           retry=Retry(NoBackoff(), 1))

    def primary(self) -> Any:
        """A client of the primary: connected by the primary's address, which the redis
        integration routes to the current primary (and holds writes during a switch)."""
        with self._lock:
            if self._primary is None:
                unit = self.resource.primary or next(iter(self.resource.endpoints))
                self._primary = self._client(self.resource.endpoints[unit][0])
            return self._primary

    def _local_reads(self) -> Any:
        """A client of the own unit's endpoint when reads should go there, else None."""
        if self.config.sessions_replica_wait <= 0:
            return None
        unit = self.config.unit
        runtime = registry.runtime()
        primary = runtime.state.primary_unit(self.resource) if runtime else self.resource.primary
        if unit not in self.resource.endpoints or unit == primary:
            return None
        with self._lock:
            if self._local is None:
                self._local = self._client(self.resource.endpoints[unit][0])
            return self._local

    def _replicas(self) -> int:
        return len(self.resource.endpoints) - 1 if self.config.sessions_replica_wait > 0 else 0

    # ------------------------------------------------------------------ operations

    def key(self, session_id: str) -> str:
        """The Redis key of a session."""
        return KEY_PREFIX + session_id

    def load(self, session_id: str) -> Loaded | None:
        """The session, or None when there is none (or it is invalid: counted).

        Raises :class:`SessionUnavailable` when Redis cannot be reached.
        """
        raw: dict[bytes, bytes] = {}
        local = self._local_reads()
        if local is not None:
            try:
                with context.bypass():     # the replica itself, not routed to the primary
                    raw = local.hgetall(self.key(session_id))
            except Exception:   # the local replica is down: the primary answers
                counters.count("session_local_read_failed")
                raw = {}
        if not raw:
            try:
                raw = self._call(lambda c: c.hgetall(self.key(session_id)))
            except SessionUnavailable as exc:
                if "WRONGTYPE" not in str(exc):
                    raise
                counters.count("session_rejected")  # not a hash: not one of ours
                return None
        return self._decode(raw) if raw else None

    def _decode(self, raw: Mapping[bytes, bytes]) -> Loaded | None:
        data, encoded = {}, {}
        try:
            created = 0.0
            for field_bytes, value in raw.items():
                field, text = field_bytes.decode("utf-8"), value.decode("utf-8")
                if field.startswith(_DATA):
                    data[field[len(_DATA):]] = self.codec.loads(text)
                    encoded[field[len(_DATA):]] = text
                elif field == _CREATED:
                    created = float(text)
        except Exception:
            # not JSON (a pickle planted in Redis, a corrupt value): never decoded further
            counters.count("session_rejected")
            return None
        return Loaded(data, encoded, created)

    def exists(self, session_id: str) -> bool:
        """Whether a session with this id exists (on the primary)."""
        return bool(self._call(lambda c: c.exists(self.key(session_id))))

    def create(self, session_id: str, data: Mapping[str, Any], ttl: float) -> bool:
        """Store a new session; False (nothing written) when the id is taken."""
        pairs = self._encode_all(data)
        flat = [x for pair in pairs.items() for x in pair]
        done = self._call(lambda c: c.eval(_CREATE, 1, self.key(session_id),
                                           _ms(ttl), repr(self._clock()), *flat))
        self._wait()
        return bool(done)

    def save(self, session_id: str, loaded: Loaded | None, data: Mapping[str, Any],
             ttl: float) -> bool:
        """Write the keys of ``data`` that differ from ``loaded`` and delete the ones it
        no longer has, and renew the TTL. With ``loaded`` None the session is new (it is
        created unless the id is taken). False when the session was deleted meanwhile
        (nothing is written then)."""
        if loaded is None:
            return self.create(session_id, data, ttl)
        current = self._encode_all(data)
        changed = {f: v for f, v in current.items() if loaded.encoded.get(f[len(_DATA):]) != v}
        gone = [_DATA + k for k in loaded.encoded if _DATA + k not in current]
        args = ["1", _ms(ttl), str(len(changed))]
        args += [x for pair in changed.items() for x in pair] + gone
        done = self._call(lambda c: c.eval(_SAVE, 1, self.key(session_id), *args))
        if changed or gone:
            self._wait()
        return bool(done)

    def touch(self, session_id: str, ttl: float) -> None:
        """Renew the TTL of a session without writing it."""
        self._call(lambda c: c.pexpire(self.key(session_id), int(_ms(ttl))))

    def delete(self, session_id: str) -> None:
        """Delete a session (a no-op when there is none)."""
        self._call(lambda c: c.delete(self.key(session_id)))
        self._wait()

    def ttl(self, session_id: str) -> float | None:
        """Seconds the session has left, or None when it does not exist."""
        left = self._call(lambda c: c.pttl(self.key(session_id)))
        return None if left is None or left < 0 else left / 1000

    # ------------------------------------------------------------------ internals

    def _encode_all(self, data: Mapping[str, Any]) -> dict[str, str]:
        fields = {}
        for name, value in data.items():
            if not isinstance(name, str):
                raise TypeError(f"session keys must be strings, not {type(name).__name__}")
            fields[_DATA + name] = self.codec.dumps(value)
        size = sum(len(f) + len(v.encode()) for f, v in fields.items())
        if size > self.max_size:
            biggest = max(fields, key=lambda f: len(fields[f]))
            raise SessionTooLarge(
                f"session of {size} bytes exceeds [sessions] max_size = {self.max_size} "
                f"(largest key: {biggest[len(_DATA):]!r}, {len(fields[biggest])} bytes); "
                "nothing was saved")
        return fields

    def _call(self, command: Callable[[Any], Any]) -> Any:
        try:
            return command(self.primary())
        except SessionTooLarge:
            raise
        except Exception as exc:
            import redis
            if isinstance(exc, redis.RedisError) or isinstance(exc, OSError):
                raise SessionUnavailable(f"sessions in {self.resource.name}: {exc}",
                                         unknown=_maybe_sent(exc)) from exc
            raise

    def _wait(self) -> None:
        """Wait (bounded) until the replicas have the write just made."""
        replicas = self._replicas()
        if not replicas:
            return
        try:
            acked = self.primary().execute_command(
                "WAIT", replicas, int(self.config.sessions_replica_wait * 1000))
        except Exception:   # the write is on the primary: a failed WAIT loses nothing
            acked = 0
        if int(acked or 0) < replicas:
            counters.count("session_replica_lag")


def _ms(seconds: float) -> str:
    return str(max(1, int(seconds * 1000)))


def _maybe_sent(exc: BaseException) -> bool:
    """Whether the failed command may have reached Redis: a reply that timed out or a
    connection lost after sending, not a connect that failed (redis-py names those
    "connecting to" / "Timeout connecting")."""
    import redis
    if not isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError)):
        return False
    return "connecting" not in str(exc)
