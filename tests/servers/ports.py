"""Loopback ports and the OS-process plumbing shared by the server wrappers.

``mariadb.py`` and ``redis.py`` each drive one kind of server; everything they
have in common lives here: finding binaries, stopping a process by its PID,
reading the tail of a log, and the registry that guarantees every server we
started is stopped (and its directory removed) when the interpreter exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Protocol, TypeGuard

#: Set this environment variable to 1 to keep server directories (data, logs)
#: after the servers are stopped, to debug a failing test.
KEEP_DIRS_ENV = "RESIL_TEST_KEEP_SERVER_DIRS"

# Binaries installed by mariadb-server live in /usr/sbin, which is not on every
# user's PATH, so we look there too.
_EXTRA_BIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")

# free_port() closes its socket before the server binds, so two calls in a row
# can return the same port. Remembering what we handed out rules that out
# within this process.
_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now and not returned before.

    The port is only probably still free when the server binds it: callers
    retry once with a new port if the bind fails (see ``port_taken``).
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        with _handed_out_lock:
            if port not in _handed_out:
                _handed_out.add(port)
                return port


def find_binary(name: str) -> str:
    """Return the path of the server binary ``name``.

    Raises:
        RuntimeError: the binary is not installed; the message says how to
            install it. Tests must fail, not skip, without their servers.
    """
    search_path = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_BIN_DIRS])
    found = shutil.which(name, path=search_path)
    if found is None:
        raise RuntimeError(
            f"{name} not found: run `make test`, which installs the Debian "
            "packages mariadb-server and redis-server the test suite needs"
        )
    return found


def log_tail(path: Path, since: int = 0, lines: int = 40) -> str:
    """Return the last ``lines`` lines of ``path`` after byte offset ``since``."""
    try:
        with path.open("rb") as f:
            f.seek(since)
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def file_size(path: Path) -> int:
    """Return the size of ``path`` in bytes, 0 if it does not exist.

    Logs are appended to across restarts: a start remembers the size first
    and later reads only what this start wrote.
    """
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def port_taken(log_text: str) -> bool:
    """Tell whether a server log says its TCP port was already in use."""
    return "Address already in use" in log_text


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def is_running(proc: subprocess.Popen[bytes] | None) -> TypeGuard[subprocess.Popen[bytes]]:
    """Tell whether ``proc`` was started and has not exited (a frozen process is running)."""
    return proc is not None and proc.poll() is None


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """Stop ``proc`` cleanly by its PID, by force after ``timeout`` seconds.

    SIGCONT comes first because a frozen (SIGSTOPped) process would never act
    on the SIGTERM. ``Popen.wait`` reaps the child, so its PID is really gone
    when this returns. Does nothing if the process already exited.
    """
    if not is_running(proc):
        return
    _send(proc, signal.SIGCONT)
    _send(proc, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_process(proc)


def kill_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL ``proc`` (a crash: no clean shutdown) and reap it."""
    if not is_running(proc):
        return
    _send(proc, signal.SIGKILL)
    proc.wait()


def signal_process(proc: subprocess.Popen[bytes] | None, sig: signal.Signals, what: str) -> None:
    """Send ``sig`` to the running ``proc``; ``what`` names it in the error."""
    if not is_running(proc):
        raise RuntimeError(f"{what} is not running")
    _send(proc, sig)


def _send(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # The process may exit between poll() and kill(): that is fine.
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)


def remove_dir(path: Path) -> None:
    """Delete a server directory, unless KEEP_DIRS_ENV asks to keep it."""
    if os.environ.get(KEEP_DIRS_ENV) == "1":
        return
    shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------ registry


class Destroyable(Protocol):
    """A server the registry can clean up: stop it, then delete its files."""

    def destroy(self) -> None:
        """Stop the server (idempotent) and remove its directory."""


# server -> PID of the process that registered it. A forked child (a test
# that calls os.fork) inherits this registry and our atexit hook; it must not
# tear down its parent's servers when it exits.
_servers: dict[Destroyable, int] = {}
_servers_lock = threading.Lock()


def register(server: Destroyable) -> None:
    """Remember ``server`` so that it is destroyed at exit if nobody else does it."""
    with _servers_lock:
        _servers[server] = os.getpid()


def unregister(server: Destroyable) -> None:
    """Forget ``server`` (it has been destroyed)."""
    with _servers_lock:
        _servers.pop(server, None)


def destroy_all() -> None:
    """Destroy every server this process registered: the safety net behind fixture finalizers."""
    me = os.getpid()
    with _servers_lock:
        servers = [server for server, owner in _servers.items() if owner == me]
    for server in servers:
        # One server failing to stop must not leave the others running.
        with contextlib.suppress(Exception):
            server.destroy()


# A crashed or interrupted test run still stops its servers: atexit runs after
# pytest returns, even when fixture finalizers never got the chance to.
atexit.register(destroy_all)


def _interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def stop_servers_on_sigterm() -> Callable[[], None]:
    """Turn SIGTERM into KeyboardInterrupt so that atexit still stops our servers.

    By default SIGTERM kills Python without running atexit hooks, which would
    leave mariadbd and redis-server running (they are in their own sessions, so
    they do not get the signal themselves). Only replaces the default handler,
    only from the main thread. Returns a function that restores the old one.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        return lambda: None
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is _interrupt_on_sigterm:
            signal.signal(signal.SIGTERM, previous)

    return restore
