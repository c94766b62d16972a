"""A tiny HTTP server for routing tests: ``python web_app.py UNIT PORT``.

Every answer is JSON saying which unit and port served it and what arrived (method,
path with query, headers, body), so a test can tell where each call went. Special
paths: ``/status/NNN`` answers with that status; ``/slow/SECONDS`` waits first;
``/healthz`` answers 200 unless the file named by ``$HTTP_APP_DOWN_FILE`` exists.
"""

from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The head and the body go out in two writes: without TCP_NODELAY each keep-alive
    # answer would wait for the client's delayed ACK (40 ms here).
    disable_nagle_algorithm = True
    server: "Server"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        status = 200
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[0] == "status" and len(parts) > 1:
            status = int(parts[1])
        elif parts[0] == "slow" and len(parts) > 1:
            time.sleep(float(parts[1]))
        elif parts[0] == "healthz":
            down = os.environ.get("HTTP_APP_DOWN_FILE", "")
            status = 503 if down and os.path.exists(down) else 200
        data = json.dumps({
            "unit": self.server.unit, "port": self.server.server_port,
            "method": self.command, "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "header_names": [k.lower() for k in self.headers.keys()],   # repeats kept
            "body": body.decode("utf-8", "replace"),
        }).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _answer

    def log_message(self, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, unit: str, port: int) -> None:
        self.unit = unit
        super().__init__(("127.0.0.1", port), Handler)


if __name__ == "__main__":
    server = Server(sys.argv[1], int(sys.argv[2]))
    print("ready", flush=True)
    server.serve_forever()
