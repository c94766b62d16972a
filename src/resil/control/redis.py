"""The Redis control plane: one signal in one Redis key, shared by many machines.

Keys, all under a prefix (``resil`` unless the URL says ``?prefix=...``):

``{prefix}:state``
    The current signal: exactly the bytes :func:`~resil.state.encode_signal` returns.
``{prefix}:signals``
    A pub/sub channel; every publish sends the same bytes on it.
``{prefix}:agents:{id}``
    One agent's heartbeat (JSON), expiring ``agent_ttl`` seconds after its last report.
``{prefix}:children:{id}``
    The ids of the agents forked by agent ``id`` (a set, expiring like a heartbeat).
``{prefix}:marks:{resource}``
    A hash: agent id → ``"epoch in_flight"``, what each agent last applied and has open
    on the resource. Written on change; read by a switch's drain and verify.
``{prefix}:fleet:{width}:{window}``
    A hash summed by every heartbeat in one window of ``width`` ms: the highest applied
    ``epoch``, and per service and unit the instances (``n``) and their utilization
    (``u``) that reported in it. Read: the last complete window (O(1) for every agent).
``{prefix}:lease:{name}``
    A lease: the holder's name, expiring with the lease.
``{prefix}:history:{service}@{unit}``
    One series of the load history: a fixed-size ring of one-minute records written
    with ``SETRANGE`` by ``resil scale`` (:mod:`resil.ops.history`).
``{prefix}:doc:{name}``
    A small document: ``scale``, the last scaling recommendation.

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
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _deps, _log, context
from ..clock import Clock
from ..config import DEFAULT_SERVICE
from ..envvars import default_poll_interval
from ..errors import ControlPlaneError, SignalError
from ..state import ControlState, Signal, decode_signal, encode_signal, make_signal
from ..topology import Topology
from .base import MAX_EPOCH, NOTE_TTL, LeaseNote, Mark, lease_cap, load_window
from .redis_url import SCHEMES, RedisURL, glob_escape, parse_url
from .redis_watch import CONNECT_TIMEOUT, RedisWatch

if TYPE_CHECKING:
    import redis
    from redis.commands.core import Script

log = _log.get("resil.control")
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

_REPORT_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local epoch = tonumber(ARGV[3])
local seen = tonumber(redis.call('HGET', KEYS[2], 'epoch') or '-1')
if epoch > seen then
  redis.call('HSET', KEYS[2], 'epoch', ARGV[3])
end
if ARGV[5] ~= '' then
  redis.call('HINCRBY', KEYS[2], 'n ' .. ARGV[5], 1)
  redis.call('HINCRBYFLOAT', KEYS[2], 'u ' .. ARGV[5], ARGV[6])
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if ARGV[7] ~= '' then
  redis.call('SADD', KEYS[3], ARGV[7])
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
end
return 1
"""
"""One heartbeat: store it (``KEYS[1]``), raise the window's highest applied epoch and,
once per window (``ARGV[5]`` = ``service unit``), add the instance and its utilization
to the window's sums (``KEYS[2]``); a forked agent joins its parent's children
(``KEYS[3]``)."""

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
        problem = _deps.missing("redis", "a Redis control plane")
        if problem:
            raise ControlPlaneError(f"control plane {self.url}: {problem}")
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
        self._report_script: Script = self._client.register_script(_REPORT_SCRIPT)
        self._window = load_window(agent_ttl)
        self._counted: dict[str, int] = {}
        """agent id -> the last window its load was added to (once per window)."""

    # ------------------------------------------------------------ connections

    def new_client(self, socket_timeout: float = SOCKET_TIMEOUT) -> redis.Redis:
        """A new client for this plane's Redis (connections open lazily, in bypass)."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
        from redis.sentinel import Sentinel
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
        """Store this agent's heartbeat (it expires ``agent_ttl`` after this report) and
        add it to the current window's sums, in one round trip."""
        data = json.dumps(dict(heartbeat), sort_keys=True).encode()
        agent_id = str(heartbeat["id"])
        key = self.agent_key(agent_id)
        now = self._clock()
        window = int(now // self._window)
        load, utilization = "", 0.0
        if heartbeat.get("utilization") is not None and self._counted.get(agent_id) != window:
            load = f"{heartbeat.get('service') or DEFAULT_SERVICE} {heartbeat.get('unit', '')}"
            utilization = float(heartbeat["utilization"])
        parent = str(heartbeat.get("parent") or "")
        epoch = int(heartbeat.get("epoch", 0))
        if not 0 <= epoch <= MAX_EPOCH:
            epoch = 0               # forged: must not hide the genuine highest epoch
        with self._talking(f"report to {key}"):
            self._report_script(
                keys=[key, self._fleet_key(window), self._children_key(parent or agent_id)],
                args=[data, self._agent_ttl_ms, epoch,
                      round(3 * self._window * 1000), load, repr(utilization),
                      agent_id if parent else ""])
        if load:
            self._counted[agent_id] = window

    def _fleet_key(self, window: int) -> str:
        return f"{self.prefix}:fleet:{round(self._window * 1000)}:{window}"

    def _children_key(self, parent: str) -> str:
        return f"{self.prefix}:children:{parent}"

    def retire(self, agent_id: str) -> None:
        """Delete this agent's heartbeat; when Redis is down, leave it to expire."""
        try:
            with self._talking(f"retire {self.agent_key(agent_id)}"):
                self._client.delete(self.agent_key(agent_id))
        except ControlPlaneError as exc:
            log.warning("resil: %s; the heartbeat expires by itself", exc)

    def agents(self) -> list[dict[str, Any]]:
        """Every live heartbeat (expired ones are gone), oldest agent first."""
        with self._talking("list agents"):
            keys = list(self._client.scan_iter(match=self._agents_pattern(), count=1000))
            values = self._client.mget(keys) if keys else []
        return sorted((b for b in map(_beat, values) if b is not None), key=_started_at)

    def _agents_pattern(self) -> str:
        return f"{glob_escape(self.prefix)}:agents:*"

    def agent_ids(self) -> set[str]:
        """The ids of the agents with a heartbeat: key names only (SCAN), no contents."""
        start = len(self.agent_key(""))
        with self._talking("list agents"):
            return {(k.decode() if isinstance(k, bytes) else str(k))[start:]
                    for k in self._client.scan_iter(match=self._agents_pattern(), count=1000)}

    def heartbeats(self, ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """The heartbeats of these agents (one MGET; expired ones are absent)."""
        wanted = list(ids)
        if not wanted:
            return {}
        with self._talking("read heartbeats"):
            values = self._client.mget([self.agent_key(i) for i in wanted])
        return {i: beat for i, raw in zip(wanted, values, strict=True)
                if (beat := _beat(raw)) is not None}

    def children(self, parent: str) -> list[dict[str, Any]]:
        """The heartbeats of the agents ``parent`` forked; members whose heartbeat
        expired (a worker that died) are dropped from the set."""
        key = self._children_key(parent)
        with self._talking(f"read {key}"):
            members = [m.decode() if isinstance(m, bytes) else str(m)
                       for m in self._client.smembers(key)]
        found = self.heartbeats(members)
        gone = [m for m in members if m not in found]
        if gone:
            with self._talking(f"update {key}"):
                self._client.srem(key, *gone)
        return sorted(found.values(), key=_started_at)

    def marks_key(self, resource: str) -> str:
        """Where the agents' marks on ``resource`` live."""
        return f"{self.prefix}:marks:{resource}"

    def mark(self, resource: str, agent_id: str, epoch: int, in_flight: int,
             arrived: tuple[str, str] | None = None) -> None:
        """Set this agent's field in the resource's marks (the hash outlives the last
        write by :data:`NOTE_TTL`; a switch prunes the fields of dead agents), and leave
        the set a switch waits on, in one round trip."""
        key = self.marks_key(resource)
        with self._talking(f"mark {key}"), self._client.pipeline(transaction=False) as pipe:
            pipe.hset(key, agent_id, f"{int(epoch)} {int(in_flight)}")
            pipe.pexpire(key, round(NOTE_TTL * 1000))
            if arrived is not None:
                pipe.srem(self.waiting_key(arrived[0], resource, arrived[1]), agent_id)
            pipe.execute()

    def marks(self, resource: str, ids: Collection[str]) -> dict[str, Mark]:
        """These agents' marks on ``resource`` (one HMGET)."""
        wanted = list(ids)
        if not wanted:
            return {}
        key = self.marks_key(resource)
        with self._talking(f"read {key}"):
            values = self._client.hmget(key, wanted)
        return {agent_id: _mark(raw) for agent_id, raw in zip(wanted, values, strict=True)
                if raw is not None}

    def waiting_key(self, kind: str, resource: str, holder: str) -> str:
        """Where a switch records the agents it waits for (:meth:`expect`)."""
        return f"{self.prefix}:{kind}:{resource}:{holder}"

    def expect(self, kind: str, resource: str, holder: str, ids: Collection[str]) -> None:
        """A set of the agents waited for (expiring with :data:`NOTE_TTL`), written before
        the wait; the marks of agents no longer alive are deleted meanwhile."""
        key, wanted, alive = self.waiting_key(kind, resource, holder), list(ids), set(ids)
        marks = self.marks_key(resource)
        with self._talking(f"write {key}"):
            stale = [f for f in self._client.hkeys(marks)
                     if (f.decode() if isinstance(f, bytes) else str(f)) not in alive]
            with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                for start in range(0, len(wanted), 1000):
                    pipe.sadd(key, *wanted[start:start + 1000])
                for start in range(0, len(stale), 1000):
                    pipe.hdel(marks, *stale[start:start + 1000])
                pipe.pexpire(key, round(NOTE_TTL * 1000))
                pipe.execute()

    def arrive(self, kind: str, resource: str, holder: str, ids: Collection[str]) -> None:
        """Remove these agents from the set."""
        if ids:
            key = self.waiting_key(kind, resource, holder)
            with self._talking(f"update {key}"):
                self._client.srem(key, *ids)

    def expected(self, kind: str, resource: str, holder: str,
                 sample: int = 0) -> tuple[int, list[str]]:
        """``SCARD`` (and ``SRANDMEMBER``): the same cost at 10 agents as at 5,000."""
        key = self.waiting_key(kind, resource, holder)
        with self._talking(f"read {key}"), self._client.pipeline(transaction=False) as pipe:
            pipe.scard(key)
            if sample:
                pipe.srandmember(key, sample)
            reply = pipe.execute()
        names = [m.decode() if isinstance(m, bytes) else str(m) for m in
                 (reply[1] if sample else [])]
        return int(reply[0]), names

    def forget(self, kind: str, resource: str, holder: str) -> None:
        """Delete the set (best effort: it expires by itself)."""
        try:
            with self._talking("forget a wait"):
                self._client.delete(self.waiting_key(kind, resource, holder))
        except ControlPlaneError:
            pass

    def _last_window(self) -> dict[str, str]:
        key = self._fleet_key(int(self._clock() // self._window) - 1)
        with self._talking(f"read {key}"):
            raw = self._client.hgetall(key)
        return {(k.decode() if isinstance(k, bytes) else str(k)):
                (v.decode() if isinstance(v, bytes) else str(v)) for k, v in raw.items()}

    def fleet_load(self, service: str) -> dict[str, tuple[int, float]]:
        """Per unit, the instances of ``service`` that reported utilization in the last
        complete window and the sum of their utilizations (one HGETALL)."""
        return self.fleet_loads().get(service, {})

    def fleet_loads(self) -> dict[str, dict[str, tuple[int, float]]]:
        """:meth:`fleet_load` of every service (the same HGETALL)."""
        sums = self._last_window()
        found: dict[str, dict[str, tuple[int, float]]] = {}
        for field, value in sums.items():
            kind, _, rest = field.partition(" ")
            name, _, unit = rest.partition(" ")
            if kind != "n":
                continue
            try:
                found.setdefault(name, {})[unit] = (int(value),
                                                    float(sums.get(f"u {rest}", 0.0)))
            except ValueError:
                continue
        return found

    def _history_key(self, series: str) -> str:
        return f"{self.prefix}:history:{series}"

    def history_write(self, series: str, offset: int, data: bytes, size: int) -> None:
        """``SETRANGE`` into the series' string (and trim it, should the ring shrink)."""
        if offset < 0 or offset + len(data) > size:
            raise ControlPlaneError(f"history {series}: write at {offset} outside its "
                                    f"{size} bytes")
        key = self._history_key(series)
        with self._talking(f"write {key}"):
            pipe = self._client.pipeline(transaction=False)
            pipe.setrange(key, offset, data)
            pipe.strlen(key)
            _, length = pipe.execute()
            if int(length) > size:          # the ring shrank (history_days lowered)
                self._client.set(key, self._client.getrange(key, 0, size - 1))

    def history_read(self, series: str) -> bytes:
        """The series' string (empty when absent)."""
        key = self._history_key(series)
        with self._talking(f"read {key}"):
            value = self._client.get(key)
        return value if isinstance(value, bytes) else b""

    def history_series(self) -> list[str]:
        """The series with a key (one SCAN)."""
        pattern = glob_escape(f"{self.prefix}:history:") + "*"
        start = len(f"{self.prefix}:history:")
        with self._talking("list the history"):
            keys = list(self._client.scan_iter(match=pattern, count=500))
        return sorted((k.decode() if isinstance(k, bytes) else str(k))[start:] for k in keys)

    def _document_key(self, name: str) -> str:
        return f"{self.prefix}:doc:{name}"

    def put_document(self, name: str, data: bytes) -> None:
        """``SET`` the document."""
        key = self._document_key(name)
        with self._talking(f"write {key}"):
            self._client.set(key, data)

    def get_document(self, name: str) -> bytes | None:
        """``GET`` the document."""
        key = self._document_key(name)
        with self._talking(f"read {key}"):
            value = self._client.get(key)
        return value if isinstance(value, bytes) else None

    def applied_epoch(self) -> int:
        """The highest epoch reported in this window or the last (an implausible one,
        from a forged heartbeat, is ignored)."""
        window = int(self._clock() // self._window)
        with self._talking("read the applied epochs"):
            values = [self._client.hget(self._fleet_key(w), "epoch") for w in (window - 1,
                                                                              window)]
        epochs = [0]
        for raw in values:
            try:
                epochs.append(int(raw or 0))
            except ValueError:
                continue
        return max(e for e in epochs if 0 <= e <= MAX_EPOCH)

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


def _mark(raw: object) -> Mark:
    """A stored mark; one that is not a mark reads as behind every epoch."""
    try:
        epoch, busy = (raw.decode() if isinstance(raw, bytes) else str(raw)).split()
        return int(epoch), int(busy)
    except (ValueError, AttributeError):
        return -1, 0


def _beat(raw: object) -> dict[str, Any] | None:
    """A stored heartbeat, or None (expired, or not a JSON object)."""
    if raw is None:
        return None
    try:
        beat = json.loads(raw)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return None
    return beat if isinstance(beat, dict) else None


def _started_at(beat: Mapping[str, Any]) -> float:
    try:
        return float(beat.get("started_at", 0))
    except (TypeError, ValueError):
        return 0.0
