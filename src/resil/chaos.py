"""Chaos faults applied inside the agent, at the same seams as routing.

Loaded only when a published control state carries a fault (:mod:`resil.faults`): the
seams ask ``state.faults`` (an empty tuple is false) before anything else, so with no
fault active a call costs one attribute read more than before.

For each call a seam asks :func:`draw` with the resource, the unit and address of the
endpoint called and the caller's unit. Every active fault that matches adds its latency
(plus a uniform jitter), then, in order, may fail the call: ``loss`` black-holes it,
``error_rate`` fails it with the fault's ``kind``. One generator per fault and process,
seeded with the fault's seed and id, draws these numbers, so the same calls in the same
order meet the same faults in every repetition of a drill.

How a failing call is made to fail is the point: it must look exactly like the real
fault to the application and to resil's own health, retry, hold and failover logic. So,
wherever it can, the seam does not raise an exception of its own making but sends the
call to a real socket that misbehaves (:class:`Listener`, on 127.0.0.1, started with the
first fault that needs it): a bound port that does not listen (connection refused), one
that accepts and resets, one that accepts and never answers (the caller's own timeout
applies), one that answers ``503`` (an http resource's ``error``), one that greets with
MySQL's error 1040 (a MySQL connect's ``error``). A statement on a live connection is
failed by shutting its socket (reset, refused) or, after the connection's read timeout,
also its socket (timeout): the driver then raises what it raises for a lost server.
Only an error reply on a live connection is raised directly, as the driver would raise
the server's error packet.
"""

from __future__ import annotations

import contextlib
import random
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _log, counters
from .topology import Endpoint

if TYPE_CHECKING:
    from .faults import Fault
    from .state import ControlState
    from .topology import Resource

log = _log.get("resil")

MYSQL_CONNECT_ERROR = 1040
"""The error a MySQL connect's ``error`` fault greets with: too many connections."""
MYSQL_STATEMENT_ERROR = 1105
"""The error a MySQL statement's ``error`` fault raises (ER_UNKNOWN_ERROR)."""
DEFAULT_BLACK_HOLE = 30.0
"""How long a black-holed call waits when neither it nor its resource has a timeout."""


class Effect:
    """What :func:`draw` decided for one call."""

    __slots__ = ("delay", "kind", "fault")

    def __init__(self, delay: float, kind: str, fault: Fault | None) -> None:
        self.delay = delay
        """Seconds to wait before the call goes on."""
        self.kind = kind
        """"" (the call goes on), or how it fails: refused, reset, timeout or error."""
        self.fault = fault
        """The fault that failed it."""


_generators: dict[tuple[str, int], random.Random] = {}
_generators_lock = threading.Lock()


def _generator(fault: Fault) -> random.Random:
    key = (fault.id, fault.seed)
    found = _generators.get(key)
    if found is None:
        with _generators_lock:
            found = _generators.setdefault(key, random.Random(f"{fault.seed}:{fault.id}"))
    return found


def reset_generators() -> None:
    """Forget the generators (a forked child starts its own sequences)."""
    _generators.clear()


def matching(state: ControlState, resource: str, unit: str, endpoint: str, caller: str,
             now: float | None = None) -> list[Fault]:
    """The active faults of ``state`` that apply to a call of ``caller``'s unit to
    ``endpoint`` (its text: ``host:port`` or an http endpoint's URL) in ``unit``."""
    now = time.time() if now is None else now
    return [f for f in state.faults
            if f.resource == resource and now < f.until
            and (not f.unit or f.unit == unit) and (not f.caller or f.caller == caller)
            and (not f.endpoint or f.endpoint == endpoint)]


def draw(state: ControlState, resource: Resource, endpoint: Endpoint | None,
         caller: str) -> Effect | None:
    """What the active faults do to one call, counted; None when none applies."""
    unit = endpoint.unit if endpoint is not None else ""
    faults = matching(state, resource.name, unit, str(endpoint) if endpoint else "", caller)
    if not faults:
        return None
    delay, kind, cause = 0.0, "", None
    for fault in faults:
        rng = _generator(fault)
        if fault.latency or fault.jitter:
            delay += fault.latency + (rng.uniform(0.0, fault.jitter) if fault.jitter else 0.0)
            counters.count(f"chaos_injected:{fault.id}:{resource.name}:latency")
        if kind or not (fault.loss or fault.error_rate):
            continue
        roll = rng.random()
        if roll < fault.loss:
            kind, cause = "timeout", fault
            counters.count(f"chaos_injected:{fault.id}:{resource.name}:loss")
        elif roll < fault.loss + fault.error_rate:
            kind, cause = fault.kind, fault
            counters.count(f"chaos_injected:{fault.id}:{resource.name}:{fault.kind}")
    return Effect(delay, kind, cause) if delay or kind else None


def active(state: ControlState, now: float | None = None) -> list[Fault]:
    """The faults of ``state`` that have not expired."""
    now = time.time() if now is None else now
    return [f for f in state.faults if now < f.until]


# --------------------------------------------------------------------------- listener

_RESPONSE = (b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
             b"Connection: close\r\nx-resil-chaos: injected\r\n\r\n%s")
_REASONS = {500: b"Internal Server Error", 502: b"Bad Gateway", 503: b"Service Unavailable",
            504: b"Gateway Timeout"}


class Listener:
    """Sockets on 127.0.0.1 that misbehave as a faulty server does, served by one daemon
    thread. Each behaviour gets its own port, made on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._ports: dict[tuple[str, int], int] = {}
        self._kept: list[socket.socket] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, ("wake", 0))
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._closed = False

    def address(self, kind: str, status: int = 503) -> tuple[str, int]:
        """``(host, port)`` of a socket that behaves as ``kind`` says: ``refused``,
        ``reset``, ``timeout`` (accepts, never answers), ``http`` (answers ``status``)
        or ``mysql`` (greets with MySQL error 1040)."""
        key = (kind, status if kind == "http" else 0)
        with self._lock:
            port = self._ports.get(key)
            if port is None:
                port = self._ports[key] = self._open(*key)
            return "127.0.0.1", port

    def _open(self, kind: str, status: int) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._kept.append(sock)
        if kind != "refused":       # a bound port that does not listen refuses
            sock.listen(128)
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, ("listen", (kind, status)))
            self._start()
        return int(sock.getsockname()[1])

    def _start(self) -> None:
        import os
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            self._wake_w.send(b"x")
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._serve, name="resil-chaos", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread and close every socket (the agent stops)."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)
        for key in list(self._selector.get_map().values()):
            with contextlib.suppress(Exception):
                key.fileobj.close()  # type: ignore[union-attr]
        for sock in (*self._kept, self._wake_w):
            with contextlib.suppress(OSError):
                sock.close()
        with contextlib.suppress(Exception):
            self._selector.close()

    def _serve(self) -> None:
        while not self._closed:
            try:
                events = self._selector.select()
            except (OSError, ValueError):
                return
            for key, _ in events:
                role, detail = key.data
                try:
                    self._handle(key.fileobj, role, detail)  # type: ignore[arg-type]
                except Exception as exc:    # one client's socket never stops the others
                    counters.record_fault("chaos.listener", exc)

    def _handle(self, sock: socket.socket, role: str, detail: Any) -> None:
        if role == "wake":
            with contextlib.suppress(OSError):
                sock.recv(4096)
            return
        if role == "listen":
            kind, status = detail
            try:
                client, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            if kind == "reset":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                return
            if kind == "mysql":
                message = b"Too many connections (injected by resil chaos)"
                payload = b"\xff" + struct.pack("<H", MYSQL_CONNECT_ERROR) + message
                with contextlib.suppress(OSError):
                    client.sendall(struct.pack("<I", len(payload))[:3] + b"\x00" + payload)
                client.close()
                return
            client.setblocking(False)
            self._selector.register(client, selectors.EVENT_READ, ("client", [kind, status,
                                                                              b""]))
            return
        kind, status, seen = detail
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:                # the caller gave up (its timeout) or closed
            self._selector.unregister(sock)
            sock.close()
            return
        if kind != "http":
            return                  # a black hole: read and drop, never answer
        detail[2] = seen = (seen + data)[-4096:]
        if b"\r\n\r\n" not in seen:
            return
        body = b"injected by resil chaos\n"
        reason = _REASONS.get(status, b"Server Error")
        with contextlib.suppress(OSError):
            sock.setblocking(True)
            sock.sendall(_RESPONSE % (status, reason, len(body), body))
            sock.shutdown(socket.SHUT_WR)
        self._selector.unregister(sock)
        sock.close()


_listener: Listener | None = None
_listener_lock = threading.Lock()


def listener() -> Listener:
    """The process's :class:`Listener` (one per process; a forked child makes its own)."""
    global _listener
    import os
    with _listener_lock:
        if _listener is None or _listener._pid not in (0, os.getpid()):
            _listener = Listener()
        return _listener


def shutdown() -> None:
    """Close the process's :class:`Listener`, if any, and forget the generators (the
    agent stops)."""
    global _listener
    with _listener_lock:
        found, _listener = _listener, None
    if found is not None:
        found.close()
    reset_generators()


def http_endpoint(endpoint: Endpoint, effect: Effect) -> Endpoint:
    """Where an http call that ``effect`` fails is sent instead of ``endpoint``."""
    kind = "http" if effect.kind == "error" else effect.kind
    status = effect.fault.status if effect.fault is not None else 503
    host, port = listener().address(kind, status)
    return Endpoint(endpoint.resource, endpoint.unit, host, port, f"http://{host}:{port}")


def connect_address(kind: str, driver: str) -> tuple[str, int] | None:
    """Where a connect that fails with ``kind`` goes: for ``error``, a MySQL server
    that refuses the login (1040). None for a Redis connect's ``error``: Redis has no
    error at connect time, the commands get theirs."""
    if kind == "error":
        return listener().address("mysql") if driver == "mysql" else None
    return listener().address(kind)


def connect_fault(runtime: Any, resource: Resource, endpoint: Endpoint | None,
                  driver: str) -> tuple[str, int] | None:
    """The active faults on a driver's connect to ``endpoint``: wait their latency; when
    one fails it, the address of a socket that fails it as the real fault would
    (:func:`connect_address`), else None."""
    effect = draw(runtime.state, resource, endpoint, runtime.config.unit)
    if effect is None:
        return None
    sleep(effect.delay)
    return connect_address(effect.kind, driver) if effect.kind else None


# --------------------------------------------------------------------------- http

def http_send(router: Any, resource: Resource, send: Callable[[Endpoint], Any]
              ) -> Callable[[Endpoint], Any]:
    """``send`` (one attempt of a call to an http resource, :mod:`resil.retry`) with the
    active faults applied: delayed, or sent to a :class:`Listener` socket that fails it
    as the fault says. The attempt's outcome still counts against the real endpoint."""
    from .guard import fail_open
    caller = router.topology.unit

    def faulty(endpoint: Endpoint) -> Any:
        effect = fail_open("chaos.draw", draw, router.state(), resource, endpoint, caller)
        if effect is None:
            return send(endpoint)
        sleep(effect.delay)
        if effect.kind:
            endpoint = fail_open("chaos.listener", http_endpoint, endpoint, effect) or endpoint
        return send(endpoint)
    return faulty


def http_send_async(router: Any, resource: Resource, send: Callable[[Endpoint], Any]
                    ) -> Callable[[Endpoint], Any]:
    """:func:`http_send` for asyncio clients: the delay is awaited."""
    import asyncio

    from .guard import fail_open
    caller = router.topology.unit

    async def faulty(endpoint: Endpoint) -> Any:
        effect = fail_open("chaos.draw", draw, router.state(), resource, endpoint, caller)
        if effect is not None:
            if effect.delay > 0:
                await asyncio.sleep(effect.delay)
            if effect.kind:
                endpoint = fail_open("chaos.listener", http_endpoint, endpoint,
                                     effect) or endpoint
        return await send(endpoint)
    return faulty


# --------------------------------------------------------------------------- live sockets

def black_hole_wait(timeout: float | None, resource: Resource) -> float:
    """How long a black-holed call on a live connection waits: its own timeout, else its
    resource's ``io_timeout``, else :data:`DEFAULT_BLACK_HOLE`."""
    for candidate in (timeout, resource.io_timeout):
        if candidate:
            return float(candidate)
    return DEFAULT_BLACK_HOLE


def cut(sock: Any) -> None:
    """Shut a live connection's socket both ways: the driver's next send or read fails
    as it does when the server is gone."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def sleep(seconds: float, sleeper: Callable[[float], None] = time.sleep) -> None:
    """Wait ``seconds`` (if any)."""
    if seconds > 0:
        sleeper(seconds)
