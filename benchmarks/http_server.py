"""A minimal HTTP/1.1 keep-alive server for ``overhead.py``: ``python http_server.py PORT...``.

It listens on 127.0.0.1 on every port given, in one thread, and answers every request
with the same small JSON document (which names the port that served it), keeping the
connection open. It parses no more than it must: a request ends at its blank line and
its body, if it declares one, is skipped. That keeps the server's CPU per request at a
few µs, so that the client's cost (and resil's share of it) is what a benchmark sees;
``tests/servers/web_app.py`` (``http.server``, a thread per connection) spends ~100 µs
per request on its own parsing, which dilutes the ratio the benchmark is about.

It prints ``ready`` once every port listens and runs until killed.
"""

from __future__ import annotations

import json
import selectors
import socket
import sys


def response(port: int) -> bytes:
    """The answer on ``port``: a small JSON document, as a REST read would return it."""
    body = json.dumps({"port": port, "items": [{"id": i, "name": f"item-{i}", "price": 10 + i}
                                              for i in range(3)]}).encode()
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def body_length(head: bytes) -> int:
    """The Content-Length a request head declares (0 when none)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip() or 0)
    return 0


def serve(ports: list[int]) -> None:
    """Answer on every port until killed."""
    selector = selectors.DefaultSelector()
    for port in ports:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ, ("listen", response(port)))
    print("ready", flush=True)
    buffers: dict[socket.socket, bytearray] = {}
    while True:
        for key, _ in selector.select():
            kind, answer = key.data
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if kind == "listen":
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buffers[conn] = bytearray()
                selector.register(conn, selectors.EVENT_READ, ("conn", answer))
                continue
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                selector.unregister(sock)
                buffers.pop(sock, None)
                sock.close()
                continue
            buffer = buffers[sock]
            buffer += data
            out = bytearray()
            while True:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    break
                need = end + 4 + body_length(bytes(buffer[:end]))
                if len(buffer) < need:
                    break
                del buffer[:need]
                out += answer
            if out:
                # Small answers on loopback: the send buffer takes them whole.
                try:
                    sock.setblocking(True)
                    sock.sendall(out)
                    sock.setblocking(False)
                except OSError:         # the client went away: forget the connection
                    selector.unregister(sock)
                    buffers.pop(sock, None)
                    sock.close()


if __name__ == "__main__":
    serve([int(p) for p in sys.argv[1:]])
