"""Spare connections: opened to a planned switch's target while a write is held.

A planned switch's lock names the server it promotes. A write held by that lock will
connect there once the switch publishes, and so will every other held write of every
process, all at once: on a busy machine that burst of handshakes, not the switch, was
most of the pause. A :class:`Spare` opens the connection during the hold instead (the
writers are waiting, so the handshake has the interpreter nearly to itself), and the
write takes it over at the publish. A handshake still under way is
waited for, up to :data:`CONNECT_TIMEOUT` from its start; a failed one leaves the write
to connect as before. Whatever is not taken is closed.

One thread per process opens the spares, one after the other: a writer only queues its
spare (a thread started per held write, in every process at once, cost the switch's
drain more than the handshakes saved).

A planned switch also announces itself before it locks (an :class:`~resil.state.Intent`
in the control state). The agent then has the drivers open spares ahead of the lock,
one per connection of the resource that it could need (:data:`PREPARED`), while writes
still flow: the handshakes are then over before any write is held, and a held write
takes one of those instead of queueing a new one.

The drivers say how to open and close their connections; this module only runs the
handshake in the background and hands the result over exactly once.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import context, counters

if TYPE_CHECKING:
    from ..runtime import Runtime
    from ..state import ControlState
    from ..topology import Resource

#: Longest wait for a spare connection's handshake with a switch's target.
CONNECT_TIMEOUT = 1.0

#: Longest wait, before a spare opens, for the agent to tell the switch that it holds
#: nothing in flight (its drain mark): the handshakes must not slow that down.
AFTER_MARK_TIMEOUT = 0.05

#: Most spares one process opens for one resource ahead of a switch.
PREPARE_MAX = 32


class Spare:
    """``conn``, opened by ``open(conn)`` in the process's opener thread (with resil's
    routing bypassed: it goes where it is pointed) once ``after()`` returns, closed by
    ``close(conn)`` unless taken."""

    def __init__(self, conn: Any, open: Callable[[Any], object],
                 close: Callable[[Any], object], failures: str,
                 after: Callable[[], object] | None = None) -> None:
        self.conn = conn
        self._open, self._close_it, self._failures = open, close, failures
        self._after = after
        self.ready = False
        self._lock = threading.Lock()
        self._dropped = False
        self._done = threading.Event()
        self._deadline = time.monotonic() + CONNECT_TIMEOUT
        self.endpoint = (getattr(conn, "host", None), getattr(conn, "port", None))
        """Where it goes: the (host, port) it was made with."""
        _submit(self)

    def _connect(self) -> None:
        try:
            if self._after is not None:
                self._after()
            with context.bypass():
                self._open(self.conn)
        except Exception:
            counters.count(self._failures)
            self._done.set()
            self.drop()
            return
        with self._lock:
            self.ready = not self._dropped
        self._done.set()
        if not self.ready:
            self._close()

    def take(self) -> Any:
        """The connected spare, now the caller's to use or close; None if its handshake
        failed or outlasted its bound (it is then closed when it ends)."""
        self._done.wait(max(0.0, self._deadline - time.monotonic()))
        with self._lock:
            ready, self._dropped, self.ready = self.ready, True, False
        return self.conn if ready else None

    def take_for(self, runtime: Runtime, resource: Resource) -> tuple[Any, ControlState] | None:
        """:meth:`take`, when ``resource``'s primary in the applied control state is
        where the spare goes (with that state); None otherwise (not taken: the caller
        drops it)."""
        state = runtime.current_state()
        endpoint = runtime.router.primary_of(resource, state)
        if endpoint is None or self.endpoint != (endpoint.host, endpoint.port):
            return None
        ready = self.take()
        return None if ready is None else (ready, state)

    def drop(self) -> None:
        """Not needed: closed now if connected, or as soon as its handshake ends."""
        with self._lock:
            ready, self._dropped, self.ready = self.ready, True, False
        if ready:
            self._close()

    def _close(self) -> None:
        with contextlib.suppress(Exception):
            self._close_it(self.conn)


class Prepared:
    """Spares opened ahead of a planned switch's lock, per resource and per owner (the
    object whose arguments made them: a redis-py pool, a PyMySQL connection): taken one
    by one by the writes that the lock holds, and closed by :meth:`drop` once the
    switch is over (or its intent lapsed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spares: dict[str, dict[int, tuple[Any, list[Spare]]]] = {}

    def resources(self) -> list[str]:
        """The resources with spares waiting."""
        with self._lock:
            return list(self._spares)

    def add(self, resource: str, owner: Any, spare: Spare) -> None:
        """Keep ``spare`` (queued already) for a write of ``owner`` on ``resource``."""
        with self._lock:
            owners = self._spares.setdefault(resource, {})
            kept = owners.get(id(owner))
            if kept is None or kept[0] is not owner:
                owners[id(owner)] = kept = (owner, [])
            kept[1].append(spare)

    def take(self, resource: str, owner: Any, endpoint: tuple[str, int]) -> Spare | None:
        """One spare of ``owner`` going to ``endpoint``, now the caller's; None if none."""
        with self._lock:
            kept = self._spares.get(resource, {}).get(id(owner))
            if kept is None or kept[0] is not owner:
                return None
            for i, spare in enumerate(kept[1]):
                if spare.endpoint == endpoint and not spare._dropped:
                    return kept[1].pop(i)
        return None

    def drop(self, resource: str) -> int:
        """Close the spares of ``resource`` that no write took; how many there were."""
        with self._lock:
            owners = self._spares.pop(resource, {})
        spares = [spare for _, kept in owners.values() for spare in kept]
        for spare in spares:
            spare.drop()
        return len(spares)

    def forget(self) -> None:
        """In a forked child: the spares are the parent's (their sockets too)."""
        self._lock = threading.Lock()
        self._spares = {}


PREPARED = Prepared()
"""The spares this process opened ahead of planned switches."""


def when_opened(callback: Callable[[], object]) -> None:
    """Call ``callback`` once every spare queued so far has been opened (or given up):
    in the opener thread after them, or now when none is queued."""
    with _LOCK:     # an opener that finds its queue empty ends under this lock
        if _OPENER is not None:
            _OPENER.queue.put(callback)
            return
    callback()


class _Opener:
    """The process's spare opener: a thread that opens queued spares in turn, and ends
    once nothing came for :data:`IDLE` seconds (spares come in bursts, at a lock)."""

    IDLE = 1.0

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Spare | Callable[[], object] | None] = \
            queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="resil-spares", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                spare = self.queue.get(timeout=self.IDLE)
            except queue.Empty:
                with _LOCK:                 # nothing queued meanwhile: done
                    if self.queue.empty():
                        _retire(self)
                        return
                continue
            if spare is None:               # stop()
                return
            if not isinstance(spare, Spare):    # when_opened(): all before it are done
                with contextlib.suppress(Exception):
                    spare()
                continue
            if time.monotonic() < spare._deadline:
                spare._connect()
            else:                           # waited too long in line: not wanted
                counters.count(spare._failures)
                spare._done.set()
                spare.drop()


_OPENER: _Opener | None = None
_LOCK = threading.Lock()


def _submit(spare: Spare) -> None:
    """Queue ``spare`` for this process's opener, started if none runs."""
    global _OPENER
    with _LOCK:     # under the lock: an opener that finds its queue empty ends under it
        if _OPENER is None:
            _OPENER = _Opener()
        _OPENER.queue.put(spare)


def _retire(opener: _Opener) -> None:
    global _OPENER
    if _OPENER is opener:
        _OPENER = None


def stop() -> None:
    """End the opener (with the agent); spares still queued are left to their bound."""
    global _OPENER
    with _LOCK:
        opener, _OPENER = _OPENER, None
    if opener is not None:
        opener.queue.put(None)
        if opener.thread is not threading.current_thread():
            opener.thread.join(timeout=CONNECT_TIMEOUT + 1)


def _after_fork() -> None:
    global _OPENER, _LOCK
    _OPENER, _LOCK = None, threading.Lock()
    PREPARED.forget()


os.register_at_fork(after_in_child=_after_fork)
