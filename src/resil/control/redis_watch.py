"""The watch thread of the Redis control plane: pub/sub plus a reconciling poll.

It owns its connections (a subscriber and a reader), reconnects with a bounded backoff
while Redis is away, and hands every new valid signal to the agent's callback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from .. import _log, context
from ..errors import ControlPlaneError, SignalError
from ..state import Signal

if TYPE_CHECKING:
    import redis

log = _log.get("resil.control")
T = TypeVar("T")

CONNECT_TIMEOUT = 1.0
"""Seconds to open a TCP connection to Redis (or to a Sentinel)."""
WATCH_SOCKET_TIMEOUT = 1.0
"""Reply timeout of the watch's own connections: bounds how long ``stop()`` can wait."""
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 2.0
"""The watch reconnects after 0.1 s, then doubles the wait up to this many seconds."""
_LISTEN_SLICE = 0.2
"""Longest single wait for a pub/sub message: the watch checks ``stop()`` this often."""


class Source(Protocol):
    """What the watch needs of :class:`~resil.control.redis.RedisControlPlane`."""

    url: str
    channel: str
    state_key: str
    _poll_interval: float

    def new_client(self, socket_timeout: float = ...) -> redis.Redis:
        """A new client of the control-plane Redis."""

    def decode(self, data: bytes | str) -> Signal:
        """Verify and decode a stored signal."""

    def unreachable(self, doing: str, exc: BaseException) -> ControlPlaneError:
        """The error that says Redis cannot be reached."""


class RedisWatch:
    """The thread behind :meth:`RedisControlPlane.watch`.

    It owns its connections (a subscriber and a reader) so that the plane's ``close()``
    and the watch's ``stop()`` never pull a socket out from under each other.
    """

    def __init__(self, plane: Source, on_signal: Callable[[Signal], object],
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
