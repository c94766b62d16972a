"""Real Redis servers for the test suite: one server, or a primary/replica pair.

Each server is a ``redis-server`` child process on 127.0.0.1 without
persistence: a restart after ``stop()`` or ``kill()`` comes back empty (a
replica then resyncs from its primary).
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .ports import (
    file_size,
    find_binary,
    free_port,
    is_running,
    kill_process,
    log_tail,
    port_taken,
    register,
    remove_dir,
    signal_process,
    stop_process,
    unregister,
    wait_until,
)


class _PortTakenError(RuntimeError):
    """redis-server exited because another process bound its port first."""


class Redis:
    """One redis-server on 127.0.0.1:<free port> in its own directory ``base_dir / name``."""

    host: str = "127.0.0.1"

    def __init__(
        self,
        base_dir: Path,
        name: str,
        port: int | None = None,
        replica_of: Redis | None = None,
    ) -> None:
        """Describe the server; nothing runs until ``start()``.

        Args:
            base_dir: an existing directory; the server uses ``base_dir / name``.
            name: names the server in its directory and in error messages.
            port: a fixed TCP port, or None to pick a free one (then a start
                that finds the port taken retries once with another).
            replica_of: start as a replica of this server (``--replicaof``).
        """
        self.name = name
        self.dir = Path(base_dir) / name
        self.log_path = self.dir / "redis.log"
        self.replica_of = replica_of
        self.port: int = port if port is not None else free_port()
        self._port_is_ours = port is None
        self._proc: subprocess.Popen[bytes] | None = None
        register(self)

    def __repr__(self) -> str:
        return f"Redis({self.name!r}, port={self.port}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        """The redis-server PID while it runs (frozen counts as running), else None."""
        return self._proc.pid if is_running(self._proc) else None

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 10.0) -> None:
        """Start redis-server and wait until it answers PING; a no-op if it is running.

        Raises:
            RuntimeError: the server did not come up; the message carries the
                tail of its log.
        """
        if self.pid is not None:
            return
        binary = find_binary("redis-server")
        register(self)  # again, in case destroy() came before this start
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self._launch(binary, timeout)
        except _PortTakenError:
            if not self._port_is_ours:
                raise
            self.port = free_port()
            self._launch(binary, timeout)
        # Restarts keep the port: clients and replicas point at it.
        self._port_is_ours = False

    def stop(self, timeout: float = 10.0) -> None:
        """Shut redis-server down by PID (SIGKILL after ``timeout``); idempotent."""
        stop_process(self._proc, timeout)

    def kill(self) -> None:
        """SIGKILL redis-server, like a crash."""
        kill_process(self._proc)

    def freeze(self) -> None:
        """SIGSTOP redis-server: connections stay open but nothing answers."""
        signal_process(self._proc, signal.SIGSTOP, repr(self))

    def thaw(self) -> None:
        """SIGCONT a frozen redis-server."""
        signal_process(self._proc, signal.SIGCONT, repr(self))

    def destroy(self) -> None:
        """Stop redis-server and delete its directory."""
        self.stop()
        remove_dir(self.dir)
        unregister(self)

    # ------------------------------------------------------------ clients

    def client(self, **kw: Any) -> redis.Redis:
        """Return a redis-py client for this server.

        Defaults: ``decode_responses=True``; 5 s connect/socket timeouts, so
        that a frozen server fails a test instead of hanging it; and no
        retries (redis-py retries 3 times by default), so that a test sees a
        server's failure at once and as it is. ``kw`` overrides these and
        passes anything else to ``redis.Redis``.
        """
        kw.setdefault("decode_responses", True)
        kw.setdefault("socket_connect_timeout", 5)
        kw.setdefault("socket_timeout", 5)
        kw.setdefault("retry", Retry(NoBackoff(), 0))
        return redis.Redis(host=self.host, port=self.port, **kw)

    def info(self, section: str) -> dict[str, Any]:
        """Return ``INFO <section>`` as a dict."""
        client = self.client()
        try:
            return dict(client.info(section))
        finally:
            client.close()

    # ------------------------------------------------------------ internals

    def _command(self, binary: str) -> list[str]:
        command = [
            binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.dir),
            "--logfile", str(self.log_path),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "no",
            # Every full resync would otherwise wait 5 s for more replicas.
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if self.replica_of is not None:
            command += ["--replicaof", self.replica_of.host, str(self.replica_of.port)]
        return command

    def _launch(self, binary: str, timeout: float) -> None:
        """Spawn redis-server and wait for PONG; on failure leave nothing running."""
        log_start = file_size(self.log_path)
        # Own session: Ctrl-C reaches pytest only, which then stops us in order.
        self._proc = subprocess.Popen(
            self._command(binary),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # Checking the process first means a server that exited at once (its
        # port taken, say) fails fast instead of being pinged.
        wait_until(lambda: not is_running(self._proc) or self._ping(), timeout)
        if is_running(self._proc) and self._ping():
            return
        exit_code = self._proc.poll()
        self.kill()
        tail = log_tail(self.log_path, since=log_start)
        if exit_code is not None and port_taken(tail):
            raise _PortTakenError(f"port {self.port} of {self.name} was taken")
        state = "did not answer" if exit_code is None else f"exited with {exit_code}"
        raise RuntimeError(
            f"redis-server {self.name} on port {self.port} {state} within {timeout} s; "
            f"log {self.log_path}:\n{tail}"
        )

    def _ping(self) -> bool:
        client = self.client(socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


class RedisPair:
    """A Redis primary and a replica of it (``--replicaof``), link up after ``start()``."""

    def __init__(self, base_dir: Path) -> None:
        """Describe the pair under ``base_dir``; nothing runs until ``start()``."""
        self.base_dir = Path(base_dir)
        self.primary = Redis(self.base_dir, "primary")
        self.replica = Redis(self.base_dir, "replica", replica_of=self.primary)

    def __repr__(self) -> str:
        return f"RedisPair(primary={self.primary!r}, replica={self.replica!r})"

    def __enter__(self) -> RedisPair:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> None:
        """Start the primary, then the replica, and wait for ``master_link_status:up``.

        On failure both servers are stopped and their directories removed.
        """
        try:
            # The replica needs the primary's final port (a start may change it).
            self.primary.start()
            self.replica.start()
            if not wait_until(self._link_up, timeout):
                raise RuntimeError(
                    f"redis replica link not up within {timeout} s:\n"
                    + log_tail(self.replica.log_path)
                )
        except BaseException:
            self.stop()
            raise

    def wait_caught_up(self, timeout: float = 10.0) -> None:
        """Wait until the replica has processed the primary's replication offset.

        (``WAIT`` would only cover writes made on its own connection.)

        Raises:
            TimeoutError: the replica stayed behind.
        """
        target = int(self.primary.info("replication")["master_repl_offset"])

        def caught_up() -> bool:
            info = self.replica.info("replication")
            return (
                info.get("master_link_status") == "up" and int(info["slave_repl_offset"]) >= target
            )

        if not wait_until(caught_up, timeout):
            raise TimeoutError(f"redis replica did not reach offset {target} within {timeout} s")

    def stop(self) -> None:
        """Stop both servers by PID and delete their directories; idempotent."""
        self.replica.destroy()
        self.primary.destroy()

    def _link_up(self) -> bool:
        return self.replica.info("replication").get("master_link_status") == "up"
