"""The Redis control plane: one signal in one Redis key, shared by many machines.

Keys, all under a prefix (``resil`` unless the URL says ``?prefix=...``):

``{prefix}:state``
    The current signal: exactly the bytes :func:`~resil.state.encode_signal` returns.
``{prefix}:signals``
    A pub/sub channel; every publish sends the same bytes on it.
``{prefix}:agents:{id}``
    One agent's heartbeat (JSON), expiring ``agent_ttl`` seconds after its last report.
``{prefix}:lease:{name}``
    A lease: the holder's name, expiring with the lease.

A publish is a ``WATCH``/``MULTI``/``EXEC`` transaction: it reads and verifies the
stored signal, refuses a state whose epoch is not higher, and sets the key and
publishes on the channel in one ``EXEC``, so two operators racing cannot both win an
epoch. Watchers subscribe to the channel *and* re-read the key every poll interval, so
a missed message (a reconnect, a publisher that only ``SET`` the key) delays a change
by one poll interval at most. While Redis is unreachable, the watch reports it once,
reconnects with a bounded backoff and catches up by reading the key; agents keep their
last applied state meanwhile.

Every connection is opened and used inside :class:`resil.context.bypass`, so resil's
own redis integration never routes or holds the control plane's traffic. redis-py is
imported lazily: the core imports without any driver installed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode

from .. import context
from ..errors import ControlPlaneError, SignalError
from ..runtime import Clock
from ..state import ControlState, Signal, decode_signal, encode_signal, make_signal
from ..topology import Topology

if TYPE_CHECKING:
    import redis
    from redis.commands.core import Script

log = logging.getLogger("resil.control")
T = TypeVar("T")

SCHEMES = ("redis", "rediss", "redis+sentinel")
DEFAULT_PREFIX = "resil"
CONNECT_TIMEOUT = 1.0
"""Seconds to open a TCP connection to Redis (or to a Sentinel)."""
SOCKET_TIMEOUT = 2.0
"""Seconds to wait for a reply on an open connection."""
WATCH_SOCKET_TIMEOUT = 1.0
"""Reply timeout of the watch's own connections: bounds how long ``stop()`` can wait."""
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 2.0
"""The watch reconnects after 0.1 s, then doubles the wait up to this many seconds."""
PUBLISH_ATTEMPTS = 100
"""``WATCH`` conflicts tolerated by one publish before it gives up."""
_LISTEN_SLICE = 0.2
"""Longest single wait for a pub/sub message: the watch checks ``stop()`` this often."""

_LEASE_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
"""Take the lease if it is free, renew it if ``ARGV[1]`` holds it; 1 if it holds it now."""

_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
"""Delete the lease only if ``ARGV[1]`` holds it."""


# --------------------------------------------------------------------------- URLs

@dataclass(frozen=True)
class RedisURL:
    """A parsed control-plane URL (see :func:`parse_url`)."""

    scheme: str
    hosts: tuple[tuple[str, int], ...]
    """One ``(host, port)`` for redis/rediss; the Sentinels for redis+sentinel."""
    db: int
    prefix: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    service: str = ""
    """The Sentinel master name (redis+sentinel only)."""
    sentinel_password: str | None = field(default=None, repr=False)
    ssl_ca_certs: str | None = None
    ssl_cert_reqs: str | None = None

    @property
    def safe(self) -> str:
        """The URL with every password replaced by ``***``: safe to log and show."""
        user = quote(self.username or "", safe="")
        if self.password is not None:
            userinfo = f"{user}:***@" if user or self.scheme != "redis+sentinel" else "***@"
        else:
            userinfo = f"{user}@" if user else ""
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.hosts)
        path = f"/{quote(self.service, safe='')}/{self.db}" if self.service else f"/{self.db}"
        query: dict[str, str] = {}
        if self.prefix != DEFAULT_PREFIX:
            query["prefix"] = self.prefix
        if self.sentinel_password is not None:
            query["sentinel_password"] = "***"
        if self.ssl_cert_reqs is not None:
            query["ssl_cert_reqs"] = self.ssl_cert_reqs
        if self.ssl_ca_certs is not None:
            query["ssl_ca_certs"] = self.ssl_ca_certs
        shown_query = f"?{urlencode(query, safe='*/')}" if query else ""
        return f"{self.scheme}://{userinfo}{hosts}{path}{shown_query}"


def parse_url(url: str) -> RedisURL:
    """Parse a ``redis://``, ``rediss://`` or ``redis+sentinel://`` control-plane URL.

    Forms::

        redis://[[user]:password@]host[:port][/db][?prefix=resil]
        rediss://[[user]:password@]host[:port][/db][?prefix=...&ssl_ca_certs=...&ssl_cert_reqs=...]
        redis+sentinel://[[user:]password@]host1[:port1],host2[:port2]/master-name[/db]
                         [?prefix=...&sentinel_password=...]

    Ports default to 6379 (26379 for Sentinels), the database to 0. Raises
    :class:`ControlPlaneError` naming the URL without its password.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise ControlPlaneError(f"control plane {_redact(url)}: not a redis URL "
                                f"(expected {', '.join(s + '://' for s in SCHEMES)})")
    if "#" in rest:
        rest = rest.split("#", 1)[0]
    rest, _, query_text = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    shown = _redact(url)

    def bad(problem: str) -> ControlPlaneError:
        return ControlPlaneError(f"control plane {shown}: {problem}")

    username: str | None = None
    password: str | None = None
    if at:
        if ":" in userinfo:
            user, _, secret = userinfo.partition(":")
            username, password = unquote(user) or None, unquote(secret)
        elif scheme == "redis+sentinel":
            password = unquote(userinfo)        # redis+sentinel://password@host,...
        else:
            username = unquote(userinfo) or None
    default_port = 26379 if scheme == "redis+sentinel" else 6379
    hosts = tuple(_host_port(item, default_port, bad) for item in hostlist.split(","))
    if scheme != "redis+sentinel" and len(hosts) != 1:
        raise bad("only redis+sentinel:// takes several hosts")
    segments = [unquote(s) for s in path.split("/")] if path else []
    service = ""
    if scheme == "redis+sentinel":
        if not segments or not segments[0]:
            raise bad("no master name: expected redis+sentinel://host:port,.../master-name/db")
        service, segments = segments[0], segments[1:]
    if segments and segments[-1] == "":
        segments = segments[:-1]                # a trailing slash
    if len(segments) > 1:
        raise bad(f"unexpected path {path!r}")
    db_text = segments[0] if segments else "0"
    if not db_text.isdigit():
        raise bad(f"database {db_text!r} is not a number")
    options = dict(parse_qsl(query_text, keep_blank_values=True))
    allowed = {"prefix"}
    if scheme == "rediss":
        allowed |= {"ssl_ca_certs", "ssl_cert_reqs"}
    if scheme == "redis+sentinel":
        allowed.add("sentinel_password")
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise bad(f"unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")
    prefix = options.get("prefix", DEFAULT_PREFIX)
    if not prefix or any(c.isspace() for c in prefix):
        raise bad(f"prefix {prefix!r} must be non-empty, without spaces")
    cert_reqs = options.get("ssl_cert_reqs")
    if cert_reqs is not None and cert_reqs not in ("none", "optional", "required"):
        raise bad(f"ssl_cert_reqs {cert_reqs!r}: expected none, optional or required")
    return RedisURL(scheme=scheme, hosts=hosts, db=int(db_text), prefix=prefix,
                    username=username, password=password, service=service,
                    sentinel_password=options.get("sentinel_password"),
                    ssl_ca_certs=options.get("ssl_ca_certs"), ssl_cert_reqs=cert_reqs)


def _host_port(text: str, default_port: int,
               bad: Callable[[str], ControlPlaneError]) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    if text.startswith("["):
        host, _, after = text[1:].partition("]")
        port_text = after[1:] if after.startswith(":") else after
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise bad("no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise bad(f"port {port_text!r} of {host} is not a TCP port")
    return host, int(port_text)


def _redact(url: str) -> str:
    """``url`` with the password of its userinfo and any ``sentinel_password`` masked."""
    scheme, sep, rest = url.partition("://")
    if sep:
        netloc, slash, tail = rest.partition("/")
        userinfo, at, hosts = netloc.rpartition("@")
        if at:
            if ":" in userinfo:
                userinfo = userinfo.partition(":")[0] + ":***"
            elif scheme.lower() == "redis+sentinel":
                userinfo = "***"
            netloc = f"{userinfo}@{hosts}"
        url = f"{scheme}://{netloc}{slash}{tail}"
    if "sentinel_password=" in url:
        head, _, query = url.partition("?")
        parts = [("sentinel_password=***" if p.startswith("sentinel_password=") else p)
                 for p in query.split("&")]
        url = f"{head}?{'&'.join(parts)}"
    return url


def _glob_escape(text: str) -> str:
    """``text`` with Redis glob metacharacters escaped, for ``SCAN MATCH``."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


# --------------------------------------------------------------------------- plane

class RedisControlPlane:
    """Control state in Redis, shared by every machine that can reach it.

    Nothing connects until the first operation; each operation fails fast (1 s to
    connect, 2 s for a reply, no retries) with :class:`ControlPlaneError` when Redis is
    unreachable, naming the URL without its password.
    """

    def __init__(self, url: str, topology: Topology, key: bytes | None, *,
                 poll_interval: float = 1.0, clock: Clock = time.time,
                 agent_ttl: float = 10.0) -> None:
        """Describe the plane; no connection is opened yet.

        Args:
            url: ``redis://``, ``rediss://`` or ``redis+sentinel://`` (see :func:`parse_url`).
            topology: what signals are verified against.
            key: the HMAC signing key, or None for unsigned signals.
            poll_interval: seconds between the watch's reconciling reads of the key.
            clock: the time recorded in published signals.
            agent_ttl: seconds a heartbeat lives after its last report.
        """
        if poll_interval <= 0:
            raise ControlPlaneError(f"poll_interval {poll_interval!r} must be > 0")
        if agent_ttl <= 0:
            raise ControlPlaneError(f"agent_ttl {agent_ttl!r} must be > 0")
        self.target = parse_url(url)
        self.url = self.target.safe
        """The URL without its password (the ``ControlPlane.url``)."""
        self.prefix = self.target.prefix
        self.state_key = f"{self.prefix}:state"
        self.channel = f"{self.prefix}:signals"
        self._topology = topology
        self._key = key
        self._poll_interval = poll_interval
        self._clock = clock
        self._agent_ttl_ms = max(1, round(agent_ttl * 1000))
        self._watches: list[_RedisWatch] = []
        self._watches_lock = threading.Lock()
        self._client = self.new_client()
        self._lease_script: Script = self._client.register_script(_LEASE_SCRIPT)
        self._release_script: Script = self._client.register_script(_RELEASE_SCRIPT)

    # ------------------------------------------------------------ connections

    def new_client(self, socket_timeout: float = SOCKET_TIMEOUT) -> redis.Redis:
        """A new client for this plane's Redis (connections open lazily, in bypass)."""
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
            from redis.sentinel import Sentinel
        except ImportError as exc:
            raise ControlPlaneError(f"control plane {self.url}: needs redis-py "
                                    f"(pip install redis): {exc}") from None
        target = self.target
        options: dict[str, Any] = {
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "socket_timeout": socket_timeout,
            "retry": Retry(NoBackoff(), 0),     # fail fast: the watch has its own backoff
            "decode_responses": False,
            "client_name": "resil-control",
        }
        if target.scheme == "redis+sentinel":
            sentinel_options = {k: v for k, v in options.items() if k != "decode_responses"}
            if target.sentinel_password is not None:
                sentinel_options["password"] = target.sentinel_password
            with context.bypass():
                sentinel = Sentinel(  # type: ignore[no-untyped-call]
                    list(target.hosts), sentinel_kwargs=sentinel_options, **options)
                master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
                    target.service, db=target.db, username=target.username,
                    password=target.password)
                return master
        if target.scheme == "rediss":
            options["ssl"] = True
            if target.ssl_ca_certs is not None:
                options["ssl_ca_certs"] = target.ssl_ca_certs
            if target.ssl_cert_reqs is not None:
                options["ssl_cert_reqs"] = target.ssl_cert_reqs
                options["ssl_check_hostname"] = target.ssl_cert_reqs == "required"
        host, port = target.hosts[0]
        with context.bypass():
            return redis.Redis(host=host, port=port, db=target.db, username=target.username,
                               password=target.password, **options)

    @contextmanager
    def _talking(self, doing: str) -> Iterator[None]:
        """Run a block of Redis calls in bypass; turn Redis errors into ControlPlaneError."""
        import redis
        try:
            with context.bypass():
                yield
        except redis.RedisError as exc:
            raise self.unreachable(doing, exc) from exc

    def unreachable(self, doing: str, exc: BaseException) -> ControlPlaneError:
        """The error for a failed Redis call (names the URL without its password)."""
        reason = str(exc) or type(exc).__name__
        return ControlPlaneError(f"control plane {self.url}: cannot {doing}: {reason}")

    # ------------------------------------------------------------ signals

    def load(self) -> Signal | None:
        """The stored signal, verified; None when none was ever published."""
        with self._talking(f"read {self.state_key}"):
            data = self._client.get(self.state_key)
        if data is None:
            return None
        return self.decode(data)

    def decode(self, data: bytes | str) -> Signal:
        """Verify stored or published bytes; SignalError names the plane."""
        raw = data.encode() if isinstance(data, str) else data
        try:
            return decode_signal(raw, self._topology, self._key)
        except SignalError as exc:
            raise SignalError(f"{self.url} {self.state_key}: {exc}") from None

    def watch(self, on_signal: Callable[[Signal], object],
              on_error: Callable[[Exception], None]) -> _RedisWatch:
        """Subscribe to the channel and re-read the key every poll interval, in a thread."""
        watch = _RedisWatch(self, on_signal, on_error)
        with self._watches_lock:
            self._watches = [w for w in self._watches if w.running] + [watch]
        watch.start()
        return watch

    def publish(self, state: ControlState, *, issuer: str) -> Signal:
        """Store ``state`` as a new signal and announce it (its epoch must grow).

        A stored signal that fails verification (corrupt, forged, unsigned) may be
        replaced, as with the file backend.
        """
        import redis
        signal = make_signal(state, issuer=issuer, issued_at=self._clock(), key=self._key)
        data = encode_signal(signal)
        with self._talking(f"publish to {self.state_key}"), \
                self._client.pipeline(transaction=True) as pipe:
            for _ in range(PUBLISH_ATTEMPTS):
                try:
                    pipe.watch(self.state_key)  # type: ignore[no-untyped-call]
                    stored = pipe.get(self.state_key)
                    current = None
                    if stored is not None:
                        try:
                            current = self.decode(stored)
                        except SignalError:
                            current = None      # a bad stored value may be replaced
                    if current is not None and state.epoch <= current.epoch:
                        raise SignalError(f"stale publish refused: epoch {state.epoch} is "
                                          f"not higher than the stored epoch {current.epoch}")
                    pipe.multi()
                    pipe.set(self.state_key, data)
                    pipe.publish(self.channel, data)
                    pipe.execute()
                    return signal
                except redis.WatchError:
                    continue                    # another publisher won: read again
        raise ControlPlaneError(f"control plane {self.url}: publish gave up after "
                                f"{PUBLISH_ATTEMPTS} concurrent updates of {self.state_key}")

    # ------------------------------------------------------------ agents

    def agent_key(self, agent_id: str) -> str:
        """Where the heartbeat of ``agent_id`` lives."""
        return f"{self.prefix}:agents:{agent_id}"

    def report(self, heartbeat: Mapping[str, Any]) -> None:
        """Store this agent's heartbeat; it expires ``agent_ttl`` after this report."""
        data = json.dumps(dict(heartbeat), sort_keys=True).encode()
        key = self.agent_key(str(heartbeat["id"]))
        with self._talking(f"report to {key}"):
            self._client.set(key, data, px=self._agent_ttl_ms)

    def retire(self, agent_id: str) -> None:
        """Delete this agent's heartbeat; when Redis is down, leave it to expire."""
        try:
            with self._talking(f"retire {self.agent_key(agent_id)}"):
                self._client.delete(self.agent_key(agent_id))
        except ControlPlaneError as exc:
            log.warning("resil: %s; the heartbeat expires by itself", exc)

    def agents(self) -> list[dict[str, Any]]:
        """Every live heartbeat (expired ones are gone), oldest agent first."""
        pattern = f"{_glob_escape(self.prefix)}:agents:*"
        found: list[dict[str, Any]] = []
        with self._talking("list agents"):
            keys = list(self._client.scan_iter(match=pattern, count=500))
            values = self._client.mget(keys) if keys else []
        for raw in values:
            if raw is None:
                continue                        # expired between SCAN and MGET
            try:
                beat = json.loads(raw)
            except ValueError:
                continue
            if isinstance(beat, dict):
                found.append(beat)
        return sorted(found, key=_started_at)

    # ------------------------------------------------------------ leases

    def lease_key(self, name: str) -> str:
        """Where the lease ``name`` lives."""
        return f"{self.prefix}:lease:{name}"

    def lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take the lease ``name`` if it is free (or expired), renew it if ``holder`` has it.

        Returns whether ``holder`` holds it now, for ``ttl`` seconds (Redis's clock).
        """
        if not ttl > 0:
            raise ValueError(f"lease ttl {ttl!r} must be > 0")
        key = self.lease_key(name)
        with self._talking(f"take lease {key}"):
            held = self._lease_script(keys=[key], args=[holder, max(1, round(ttl * 1000))])
        return bool(held)

    def release(self, name: str, holder: str) -> None:
        """Give the lease ``name`` up, if ``holder`` holds it (else do nothing).

        Best effort, like the file backend's: when Redis is unreachable the lease is
        left to expire by itself (a warning is logged).
        """
        key = self.lease_key(name)
        try:
            with self._talking(f"release lease {key}"):
                self._release_script(keys=[key], args=[holder])
        except ControlPlaneError as exc:
            log.warning("resil: %s; the lease expires by itself", exc)

    # ------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stop this plane's watches and close its connections."""
        with self._watches_lock:
            watches, self._watches = self._watches, []
        for watch in watches:
            watch.stop()
        with context.bypass():
            self._client.close()


def _started_at(beat: Mapping[str, Any]) -> float:
    try:
        return float(beat.get("started_at", 0))
    except (TypeError, ValueError):
        return 0.0


# --------------------------------------------------------------------------- watch

class _RedisWatch:
    """The thread behind :meth:`RedisControlPlane.watch`.

    It owns its connections (a subscriber and a reader) so that the plane's ``close()``
    and the watch's ``stop()`` never pull a socket out from under each other.
    """

    def __init__(self, plane: RedisControlPlane, on_signal: Callable[[Signal], object],
                 on_error: Callable[[Exception], None]) -> None:
        self._plane = plane
        self._on_signal = on_signal
        self._on_error = on_error
        self._stopped = threading.Event()
        self._last: bytes | None = None
        """The bytes last handled: the same value is not delivered or reported twice."""
        self._down = False
        """Inside an outage (already reported)."""
        self._thread = threading.Thread(target=self._run, name="resil-control-watch",
                                        daemon=True)

    @property
    def running(self) -> bool:
        """Whether the thread is still alive."""
        return self._thread.is_alive()

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """End the thread (within ~1 s even with Redis hung); idempotent."""
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=CONNECT_TIMEOUT + WATCH_SOCKET_TIMEOUT + 0.5)

    # ------------------------------------------------------------ loop

    def _run(self) -> None:
        import redis
        backoff = BACKOFF_FIRST
        client: redis.Redis | None = None
        while not self._stopped.is_set():
            pubsub: redis.client.PubSub | None = None
            try:
                if client is None:
                    client = self._plane.new_client(socket_timeout=WATCH_SOCKET_TIMEOUT)
                with context.bypass():
                    pubsub = client.pubsub()  # type: ignore[no-untyped-call]
                self._subscribe(pubsub)
                with context.bypass():
                    data = client.get(self._plane.state_key)    # catch up
                if self._down:
                    log.info("resil: control plane %s reachable again", self._plane.url)
                    self._down = False
                self._last = None                   # after a gap, deliver the key again
                backoff = BACKOFF_FIRST
                self._handle(data)
                self._listen(client, pubsub)
            except redis.RedisError as exc:
                self._outage(exc)
            except ControlPlaneError as exc:         # no redis-py, a bad URL
                self._outage(exc)
            except Exception as exc:  # the watch must outlive any single bad read
                self._call(self._on_error, exc)
            finally:
                if pubsub is not None:
                    self._quietly(pubsub.close)
            if self._stopped.wait(backoff):
                break
            backoff = min(backoff * 2, BACKOFF_MAX)
        if client is not None:
            self._quietly(client.close)

    def _subscribe(self, pubsub: redis.client.PubSub) -> None:
        """Subscribe and wait for the confirmation: from then on nothing is missed."""
        with context.bypass():
            pubsub.subscribe(self._plane.channel)
        deadline = time.monotonic() + CONNECT_TIMEOUT + WATCH_SOCKET_TIMEOUT
        while time.monotonic() < deadline and not self._stopped.is_set():
            with context.bypass():
                message = pubsub.get_message(timeout=_LISTEN_SLICE)
            if message is None:
                continue
            if message.get("type") == "subscribe":
                return
            if message.get("type") == "message":
                self._handle(message.get("data"))
        if not self._stopped.is_set():
            import redis
            raise redis.TimeoutError(f"no confirmation of SUBSCRIBE {self._plane.channel}")

    def _listen(self, client: redis.Redis, pubsub: redis.client.PubSub) -> None:
        """Deliver messages as they come; re-read the key every poll interval."""
        interval = self._plane._poll_interval
        next_poll = time.monotonic() + interval
        while not self._stopped.is_set():
            wait = min(_LISTEN_SLICE, max(0.0, next_poll - time.monotonic()))
            with context.bypass():
                message = pubsub.get_message(timeout=wait)
            if message is not None and message.get("type") == "message":
                self._handle(message.get("data"))
            if time.monotonic() >= next_poll:
                with context.bypass():
                    data = client.get(self._plane.state_key)
                self._handle(data)
                next_poll = time.monotonic() + interval

    # ------------------------------------------------------------ delivery

    def _handle(self, data: object) -> None:
        """Verify ``data`` and deliver it, or report why it was rejected (once)."""
        if not isinstance(data, bytes):
            self._last = None                      # no key (yet, or any more)
            return
        if data == self._last or self._stopped.is_set():
            return
        self._last = data
        try:
            signal = self._plane.decode(data)
        except SignalError as exc:
            self._call(self._on_error, exc)
            return
        self._call(self._on_signal, signal)

    def _outage(self, exc: Exception) -> None:
        """Report an unreachable Redis once per outage."""
        if self._down or self._stopped.is_set():
            return
        self._down = True
        error = exc if isinstance(exc, ControlPlaneError) else \
            self._plane.unreachable("watch", exc)
        self._call(self._on_error, error)

    def _call(self, callback: Callable[[T], object], arg: T) -> None:
        """Run a callback; an exception it raises goes to ``on_error``, never up."""
        try:
            callback(arg)
        except Exception as exc:
            if callback is self._on_error:
                log.error("resil: control watch error callback failed", exc_info=exc)
            else:
                self._call(self._on_error, exc)

    @staticmethod
    def _quietly(close: Callable[[], object]) -> None:
        try:
            with context.bypass():
                close()
        except Exception:   # closing a dead connection can fail: nothing to do about it
            pass
