"""The admin endpoint: ``/healthz`` (also ``/livez``), ``/readyz``, ``/state`` and
``/metrics`` on loopback.

One per process tree: it is served by the process where the agent started (with
gunicorn, the master), from a daemon thread of its own started with the agent — a load
balancer asks ``/readyz`` before any request arrives, so it cannot wait for first use.
A forked worker closes its inherited copy of the listening socket and serves nothing;
its state is the master's (aggregating workers' metrics is not done yet).

The server is a few lines over ``_socket`` rather than ``http.server`` (or even
``socket`` and ``socketserver``), whose imports would cost start-up time in every
process: it answers ``GET`` and ``HEAD`` with HTTP/1.0, one request per connection.
"""

from __future__ import annotations

import _socket
import json
import os
import threading
import time

from .. import _log, counters

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..runtime import AgentView
    from ..scale import Sampler

log = _log.get("resil")
_POLL = 0.5
"""How often the accepting thread looks whether it is to stop (seconds)."""
_REQUEST_TIMEOUT = 10.0
"""How long a request may take to arrive and its answer to be taken (seconds)."""
_HEAD_LIMIT = 8192
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def state_document(agent: AgentView) -> dict[str, Any]:
    """What ``GET /state`` answers."""
    from ..readiness import readiness
    state = agent.current_state()
    resources: dict[str, Any] = {}
    for name, resource in agent.config.resources.items():
        entry: dict[str, Any] = {
            "kind": resource.kind,
            "endpoints": {u: [str(e) for e in eps] for u, eps in resource.endpoints.items()},
        }
        failures = counters.stats()
        if resource.kind == "http":
            entry["health"] = agent.router.health(resource).snapshot()
        else:
            entry["health"] = {
                str(e): {"unit": e.unit, "connect_failures": int(
                    failures.get(f"connect_failures:{e.host}:{e.port}", 0))}
                for eps in resource.endpoints.values() for e in eps}
        if resource.kind != "http":
            endpoint = agent.router.primary_of(resource, state)
            entry["primary"] = {"unit": endpoint.unit if endpoint else None,
                                "endpoint": str(endpoint) if endpoint else None}
            lock = state.locks.get(name)
            entry["lock"] = lock.to_dict() if lock else None
        resources[name] = entry
    return {
        "unit": agent.config.unit, "pid": os.getpid(), "epoch": state.epoch,
        "ready": not readiness(agent), "weights": dict(state.weights),
        "resources": resources, "in_flight": agent.in_flight(),
        "events": counters.stats(), "faults": counters.faults(),
        "chaos": [fault.to_dict() for fault in state.faults if fault.active(time.time())],
    }


class _Server:
    """A listening socket, the thread that accepts on it (:meth:`serve_forever`) and a
    daemon thread per request. Written over ``_socket``: ``socket``, ``selectors`` and
    ``socketserver`` cost every process a few ms of start-up for what a loopback
    endpoint that answers one request per connection does not use."""

    def __init__(self, address: tuple[str, int], agent: AgentView) -> None:
        self.agent = agent
        host, port = address
        family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
        sock = _socket.socket(family, _socket.SOCK_STREAM)
        try:
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)
            sock.settimeout(_POLL)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.server_address: tuple[Any, ...] = sock.getsockname()
        self._stopping = False

    def serve_forever(self) -> None:
        """Accept until :meth:`shutdown`; each request is answered by a thread of its own."""
        sock = self._sock
        while not self._stopping:
            try:
                fd, _ = sock._accept()  # type: ignore[attr-defined]
            except TimeoutError:
                continue
            except OSError:
                if self._stopping or sock.fileno() < 0:
                    return
                time.sleep(_POLL)        # out of descriptors: try again, never spin
                continue
            conn = _socket.socket(sock.family, _socket.SOCK_STREAM, 0, fd)
            threading.Thread(target=self._respond, args=(conn,), name="resil-admin-request",
                             daemon=True).start()

    def shutdown(self) -> None:
        """Make :meth:`serve_forever` return now (a shut-down listening socket wakes its
        ``accept``). Never in a forked child: the socket is shared with the parent."""
        self._stopping = True
        try:
            self._sock.shutdown(_socket.SHUT_RDWR)
        except OSError:
            pass

    def server_close(self) -> None:
        self._stopping = True
        self._sock.close()

    def _respond(self, conn: Any) -> None:
        try:
            conn.settimeout(_REQUEST_TIMEOUT)
            head = _read_head(conn)
            if head is None:
                return
            try:
                line = head.split(b"\n", 1)[0].decode("latin-1").split()
                if len(line) < 2:
                    return
                method = line[0]
                status, body, kind = self.answer(method, line[1].split("?", 1)[0])
            except Exception as exc:  # a bad request must not kill the admin thread
                counters.record_fault("admin endpoint", exc)
                method, status, body, kind = "GET", 503, b'{"error": "internal"}', \
                    "application/json"
            allow = "Allow: GET, HEAD\r\n" if status == 405 else ""
            reply = (f"HTTP/1.0 {status} {_REASONS.get(status, '')}\r\n"
                     f"Content-Type: {kind}\r\nContent-Length: {len(body)}\r\n{allow}"
                     "Connection: close\r\n\r\n").encode()
            conn.sendall(reply if method == "HEAD" else reply + body)
            conn.shutdown(_socket.SHUT_WR)
        except OSError:
            pass                    # the client left, or was too slow: nothing to answer
        except Exception as exc:    # resil's own fault: counted, never the host's stderr
            counters.record_fault("admin endpoint", exc)
        finally:
            conn.close()

    def answer(self, method: str, path: str) -> tuple[int, bytes, str]:
        if method not in ("GET", "HEAD"):
            return 405, b"only GET and HEAD\n", "text/plain"
        agent = self.agent
        if path in ("/healthz", "/livez"):
            return 200, _json({"status": "ok", "pid": os.getpid(),
                               "epoch": agent.state.epoch}), "application/json"
        if path == "/readyz":
            from ..readiness import readiness
            agent.current_state()                   # starts the watch if nothing did yet
            reasons = readiness(agent)
            return (503 if reasons else 200,
                    _json({"ready": not reasons, "reasons": reasons}), "application/json")
        if path == "/state":
            return 200, _json(state_document(agent)), "application/json"
        if path == "/scale":
            answer = agent.scale_answer()
            return (200 if answer["desired"] is not None else 503, _json(answer),
                    "application/json")
        if path == "/metrics":
            from .metrics import prometheus_text
            return (200, prometheus_text(agent).encode(),
                    "text/plain; version=0.0.4; charset=utf-8")
        return 404, b"not found: try /healthz /livez /readyz /state /metrics /scale\n", "text/plain"


def _read_head(conn: Any) -> bytes | None:
    """The request's line and headers (up to the blank line, 8 KiB at most), or None
    when the client closed first."""
    head = b""
    while b"\r\n\r\n" not in head and b"\n\n" not in head:
        if len(head) > _HEAD_LIMIT:
            break
        chunk = conn.recv(4096)
        if not chunk:
            return head or None
        head += chunk
    return head


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True).encode() + b"\n"


def _resil_owner(host: str, port: int) -> int | None:
    """The pid of the resil agent whose admin endpoint listens on ``host:port`` (asked
    at ``/healthz``, 0.5 s at most), or None when something else holds the port."""
    target = "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host
    import socket  # only when the port is taken
    try:
        with socket.create_connection((target, port), timeout=0.5) as conn:
            conn.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            reply = b""
            while chunk := conn.recv(4096):
                reply += chunk
                if len(reply) > 65536:
                    return None
        answer = json.loads(reply.partition(b"\r\n\r\n")[2])
    except (OSError, ValueError):
        return None
    if not isinstance(answer, dict) or answer.get("status") != "ok":
        return None     # something else answered (a list, a string): not an agent
    pid = answer.get("pid")
    return pid if isinstance(pid, int) else None


class AdminServer:
    """The admin endpoint of one agent."""

    def __init__(self, agent: AgentView, host: str, port: int) -> None:
        self._agent = agent
        self._requested = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._sampler: Sampler | None = None

    @property
    def sampler(self) -> Sampler:
        """The utilization sampler (made on first use: ``/metrics``, ``/scale``)."""
        if self._sampler is None:
            from ..scale import Sampler
            self._sampler = Sampler()
        return self._sampler

    @property
    def address(self) -> tuple[str, int] | None:
        """Where it listens (the real port when 0 was asked for), or None."""
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> bool:
        """Bind and serve; on a taken port log one clear error and return False."""
        host, port = self._requested
        try:
            self._server = _Server((host, port), self._agent)
        except OSError as exc:
            owner = _resil_owner(host, port)
            if owner is not None:   # a sibling or parent agent serves it: one owner
                log.info("resil: admin endpoint %s:%d is served by another agent (pid %s); "
                         "this process serves none", host, port, owner)
                return False
            otel = " (OpenTelemetry's Prometheus exporter also defaults to port 9464)" \
                if port == 9464 else ""
            log.error("resil: admin endpoint not started: cannot listen on %s:%d (%s%s); "
                      "set [admin] listen (RESIL_ADMIN_LISTEN) to a free port, or to \"off\"",
                      host, port, exc.strerror, otel)
            return False
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="resil-admin", daemon=True)
        self._thread.start()
        log.info("resil: admin endpoint on http://%s:%d/", *self.address)  # type: ignore[misc]
        return True

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self.after_fork_in_child()

    def after_fork_in_child(self) -> None:
        """In a forked child: close the inherited socket; the parent keeps serving."""
        if self._server is not None:
            self._server.server_close()
        self._server = None
        self._thread = None
