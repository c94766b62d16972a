"""Real HTTP servers on loopback, one process each, grouped by unit.

:class:`HttpUnits` starts ``per_unit`` servers (``web_app.py``) in each unit, and can
kill a unit's servers with SIGKILL and start them again on the same ports — the
outage and the return that outlier detection must notice.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from . import ports

APP = Path(__file__).with_name("web_app.py")


class HttpServer:
    """One ``web_app.py`` process serving ``unit`` on 127.0.0.1:``port``."""

    def __init__(self, unit: str, port: int, env: dict[str, str] | None = None) -> None:
        self.unit = unit
        self.port = port
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The base URL of this server."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the process and wait until it accepts connections."""
        if ports.is_running(self.proc):
            return
        self.proc = subprocess.Popen([sys.executable, str(APP), self.unit, str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=self.env)
        if not ports.wait_until(self._accepts, 10):
            ports.kill_process(self.proc)
            raise RuntimeError(f"web_app on port {self.port} did not start")

    def _accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the process (connections are refused from then on)."""
        ports.kill_process(self.proc)

    def destroy(self) -> None:
        """Stop the process (idempotent)."""
        ports.stop_process(self.proc, 5)
        ports.unregister(self)


class HttpUnits:
    """``per_unit`` HTTP servers in each of ``units``; a context manager."""

    def __init__(self, units: tuple[str, ...] = ("a", "b"), per_unit: int = 2,
                 env: dict[str, str] | None = None) -> None:
        self.servers = {u: [HttpServer(u, ports.free_port(), env) for _ in range(per_unit)]
                        for u in units}

    def __enter__(self) -> HttpUnits:
        for server in self.all():
            ports.register(server)
            server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self.all():
            server.destroy()

    def all(self) -> list[HttpServer]:
        """Every server, unit by unit."""
        return [s for servers in self.servers.values() for s in servers]

    def kill(self, unit: str) -> None:
        """SIGKILL every server of ``unit``."""
        for server in self.servers[unit]:
            server.kill()

    def start(self, unit: str) -> None:
        """Start ``unit``'s servers again, on their old ports."""
        for server in self.servers[unit]:
            server.start()

    def toml(self, name: str = "products", extra: str = "") -> str:
        """A ``[resources.NAME]`` table of kind http over these servers."""
        endpoints = ", ".join(
            f'{u} = [{", ".join(repr(s.url).replace(chr(39), chr(34)) for s in servers)}]'
            for u, servers in self.servers.items())
        return f'\n[resources.{name}]\nkind = "http"\nendpoints = {{ {endpoints} }}\n{extra}'
