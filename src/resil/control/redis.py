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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from .. import context
from ..clock import Clock
from ..envvars import default_poll_interval
from ..errors import ControlPlaneError, SignalError
from ..state import ControlState, Signal, decode_signal, encode_signal, make_signal
from ..topology import Topology
from .base import NOTE_TTL, LeaseNote, lease_cap
from .redis_url import SCHEMES, RedisURL, glob_escape, parse_url
from .redis_watch import CONNECT_TIMEOUT, RedisWatch

if TYPE_CHECKING:
    import redis
    from redis.commands.core import Script

log = logging.getLogger("resil.control")
__all__ = ["SCHEMES", "RedisControlPlane", "RedisURL", "parse_url"]
T = TypeVar("T")

SOCKET_TIMEOUT = 2.0
"""Seconds to wait for a reply on an open connection."""
PUBLISH_ATTEMPTS = 100
"""``WATCH`` conflicts tolerated by one publish before it gives up."""

_LEASE_SCRIPT = """
local current = redis.call('GET', KEYS[1])
local held = 0
if current == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  held = 1
elseif current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  held = 1
else
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 or left > tonumber(ARGV[3]) then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    held = 2
  end
end
if held > 0 and ARGV[4] ~= '' then
  redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5])
end
return held
"""
"""Take the lease if it is free, renew it if ``ARGV[1]`` holds it; 1 if it holds it now.
A lease another holder has for longer than ``ARGV[3]`` ms (or for ever) is not one any
holder asking for the same ``ttl`` could have taken: it is forged, and taken over (2).
A holder that holds it and gives a note (``ARGV[4]``) records it in ``KEYS[2]``, which
outlives the lease (``ARGV[5]`` ms): a resolver reads what a dead holder last said."""

_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1], KEYS[2])
end
return 0
"""
"""Delete the lease and its note only if ``ARGV[1]`` holds it."""


class RedisControlPlane:
    """Control state in Redis, shared by every machine that can reach it.

    Nothing connects until the first operation; each operation fails fast (1 s to
    connect, 2 s for a reply, no retries) with :class:`ControlPlaneError` when Redis is
    unreachable, naming the URL without its password.
    """

    def __init__(self, url: str, topology: Topology, key: bytes | None, *,
                 poll_interval: float | None = None, clock: Clock = time.time,
                 agent_ttl: float = 10.0, previous_keys: Sequence[bytes] = ()) -> None:
        """Describe the plane; no connection is opened yet.

        Args:
            url: ``redis://``, ``rediss://`` or ``redis+sentinel://`` (see :func:`parse_url`).
            topology: what signals are verified against.
            key: the HMAC signing key, or None for unsigned signals.
            poll_interval: seconds between the watch's reconciling reads of the key.
            clock: the time recorded in published signals.
            agent_ttl: seconds a heartbeat lives after its last report.
        """
        if poll_interval is None:    # the declared default for redis URLs
            poll_interval = default_poll_interval("redis")
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
        self._previous = tuple(previous_keys)
        self._poll_interval = poll_interval
        self._clock = clock
        self._agent_ttl_ms = max(1, round(agent_ttl * 1000))
        self._watches: list[RedisWatch] = []
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
            return decode_signal(raw, self._topology, self._key, self._previous)
        except SignalError as exc:
            raise SignalError(f"{self.url} {self.state_key}: {exc}") from None

    def watch(self, on_signal: Callable[[Signal], object],
              on_error: Callable[[Exception], None]) -> RedisWatch:
        """Subscribe to the channel and re-read the key every poll interval, in a thread."""
        watch = RedisWatch(self, on_signal, on_error)
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
        pattern = f"{glob_escape(self.prefix)}:agents:*"
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

    def lease(self, name: str, holder: str, ttl: float, note: str = "") -> bool:
        """Take the lease ``name`` if it is free (or expired), renew it if ``holder`` has it.

        Returns whether ``holder`` holds it now, for ``ttl`` seconds (Redis's clock). A
        lease held for longer than :func:`~resil.control.base.lease_cap` of ``ttl`` is
        forged (every holder asks for the same ``ttl``) and is taken over: a planted lease
        cannot stop failover. A ``note`` is recorded when the lease is held (see
        :meth:`lease_note`).
        """
        if not ttl > 0:
            raise ValueError(f"lease ttl {ttl!r} must be > 0")
        key = self.lease_key(name)
        ttl_ms = max(1, round(ttl * 1000))
        record = json.dumps({"holder": holder, "note": note, "at": self._clock()}) \
            if note else ""
        with self._talking(f"take lease {key}"):
            held = self._lease_script(keys=[key, f"{key}:note"], args=[
                holder, ttl_ms, round(lease_cap(ttl) * 1000), record,
                round(NOTE_TTL * 1000)])
        if held == 2:
            log.warning("resil: lease %s was held for longer than any holder asking for "
                        "%g s could hold it (forged?): taken over by %s", key, ttl, holder)
        return bool(held)

    def lease_holder(self, name: str) -> str | None:
        """Who holds the lease ``name`` now (None: nobody)."""
        with self._talking(f"read lease {self.lease_key(name)}"):
            value = self._client.get(self.lease_key(name))
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def lease_note(self, name: str) -> LeaseNote | None:
        """The last note a holder of the lease ``name`` recorded, whether its lease is
        still alive or not (None: none, or it was released)."""
        with self._talking(f"read lease {self.lease_key(name)}"):
            raw = self._client.get(f"{self.lease_key(name)}:note")
        return LeaseNote.parse(raw)

    def release(self, name: str, holder: str) -> None:
        """Give the lease ``name`` up, if ``holder`` holds it (else do nothing).

        Best effort, like the file backend's: when Redis is unreachable the lease is
        left to expire by itself (a warning is logged).
        """
        key = self.lease_key(name)
        try:
            with self._talking(f"release lease {key}"):
                self._release_script(keys=[key, f"{key}:note"], args=[holder])
        except ControlPlaneError as exc:
            log.warning("resil: %s; the lease expires by itself", exc)

    # ------------------------------------------------------------ lifecycle

    def durability(self) -> str | None:
        """A warning when the store keeps no append-only file: a restart of it then
        comes back empty, or with a snapshot minutes old (an older state)."""
        try:
            with self._talking("read the persistence settings"):
                found = self._client.config_get("appendonly")
        except Exception:    # CONFIG may be refused (ACLs, managed Redis): cannot tell
            return None
        if str(found.get("appendonly", "")).lower() == "yes":
            return None
        return (f"{self.url} keeps no append-only file (appendonly no): a restart loses "
                "the control state or rolls it back to a snapshot; resil rebuilds the "
                "primaries from the servers, but not unit weights and routing rules. "
                "Set appendonly yes (and appendfsync everysec or always)")

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
