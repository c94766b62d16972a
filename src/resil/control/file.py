"""The file control plane: one JSON signal in one file, for a single machine.

Writers replace the file atomically (temporary file in the same directory, fsync,
rename) under an ``flock`` on a sibling lock file, so a reader sees the old signal or
the new one, never half of one, and two publishers cannot both win the same epoch.
Readers watch the file's identity (inode, size, mtime) and re-read it only when that
changes, which keeps the watch loop to one ``stat`` per poll interval.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import sys
import threading
from _socket import gethostname  # socket.gethostname itself, without importing socket
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from urllib.parse import quote, unquote

from .. import _log
from ..clock import Clock
from ..config import DEFAULT_SERVICE
from ..errors import ControlPlaneError, SignalError
from ..state import ControlState, Signal, decode_signal, encode_signal, make_signal
from ..topology import Topology
from .base import NOTE_TTL, LeaseNote, Mark, highest_epoch, lease_cap

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = _log.get("resil.control")
_Identity = tuple[int, int, int]


class FileControlPlane:
    """Control state in a local JSON file (the embedded default)."""

    def __init__(self, path: str | os.PathLike[str], topology: Topology, key: bytes | None, *,
                 poll_interval: float, clock: Clock, agent_ttl: float = 10.0,
                 previous_keys: Sequence[bytes] = ()) -> None:
        self.path = Path(path)
        self.url = self.path.as_uri() if self.path.is_absolute() else f"file:{self.path}"
        self._topology = topology
        self._key = key
        self._previous = tuple(previous_keys)
        self._poll_interval = poll_interval
        self._clock = clock
        self._agent_ttl = agent_ttl

    def _identity(self) -> _Identity | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ControlPlaneError(f"{self.path}: cannot stat: {exc.strerror}") from None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def load(self) -> Signal | None:
        """The stored signal, verified; None when the file does not exist."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ControlPlaneError(f"{self.path}: cannot read: {exc.strerror}") from None
        try:
            return decode_signal(data, self._topology, self._key, self._previous)
        except SignalError as exc:
            raise SignalError(f"{self.path}: {exc}") from None

    def watch(self, on_signal: Callable[[Signal], object],
              on_error: Callable[[Exception], None]) -> _FileWatch:
        """Poll the file's identity; read and verify it each time it changes."""
        watch = _FileWatch(self, on_signal, on_error)
        watch.start()
        return watch

    def publish(self, state: ControlState, *, issuer: str) -> Signal:
        """Atomically replace the file with a signal for ``state`` (epoch must grow)."""
        signal = make_signal(state, issuer=issuer, issued_at=self._clock(), key=self._key)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{self.path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                current = self.load()
            except SignalError:
                current = None      # a corrupt or forged file may be replaced by a good one
            if current is not None and state.epoch <= current.epoch:
                raise SignalError(f"stale publish refused: epoch {state.epoch} is not higher "
                                  f"than the stored epoch {current.epoch}")
            _write_atomic(self.path, encode_signal(signal))
        return signal

    @property
    def agents_dir(self) -> Path:
        """Where heartbeats live: one JSON file per agent beside the state file."""
        return self.path.with_name(self.path.name + ".agents")

    def _agent_file(self, agent_id: str) -> Path:
        return self.agents_dir / (re.sub(r"[^A-Za-z0-9_.-]", "_", agent_id) + ".json")

    def report(self, heartbeat: Mapping[str, Any]) -> None:
        """Replace this agent's heartbeat file atomically."""
        self.agents_dir.mkdir(parents=True, exist_ok=True)
        data = json.dumps(dict(heartbeat), sort_keys=True).encode()
        _write_atomic(self._agent_file(str(heartbeat["id"])), data, durable=False)

    def retire(self, agent_id: str) -> None:
        """Delete this agent's heartbeat file."""
        try:
            self._agent_file(agent_id).unlink()
        except FileNotFoundError:
            pass

    def agents(self) -> list[dict[str, Any]]:
        """Every readable heartbeat; files of dead local processes are removed."""
        found: list[dict[str, Any]] = []
        try:
            files = list(self.agents_dir.glob("*.json"))
        except OSError:
            return found
        for file in files:
            try:
                beat = json.loads(file.read_bytes())
            except (OSError, ValueError):
                continue        # being replaced, or garbage: skip it
            if not isinstance(beat, dict):
                continue
            if _dead_local_process(beat):
                file.unlink(missing_ok=True)
                continue
            found.append(beat)
        return sorted(found, key=lambda b: float(b.get("started_at", 0)))

    # One machine's agents are few: the fleet-wide questions read every heartbeat.

    def agent_ids(self) -> set[str]:
        """The ids of the heartbeats on file (of processes still running here)."""
        return {str(beat.get("id")) for beat in self.agents()}

    def heartbeats(self, ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """The heartbeats of these agents."""
        wanted = set(ids)
        return {str(b.get("id")): b for b in self.agents() if str(b.get("id")) in wanted}

    def children(self, parent: str) -> list[dict[str, Any]]:
        """The heartbeats of the agents ``parent`` forked."""
        return [beat for beat in self.agents() if beat.get("parent") == parent]

    def _marks_dir(self, resource: str) -> Path:
        return self.agents_dir / ("marks-" + re.sub(r"[^A-Za-z0-9_.-]", "_", resource))

    def mark(self, resource: str, agent_id: str, epoch: int, in_flight: int,
             arrived: tuple[str, str] | None = None) -> None:
        """Replace this agent's mark file for ``resource`` atomically; leave the wait."""
        folder = self._marks_dir(resource)
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(folder / self._agent_file(agent_id).name,
                      f"{int(epoch)} {int(in_flight)}".encode(), durable=False)
        if arrived is not None:
            self.arrive(arrived[0], resource, arrived[1], [agent_id])

    def marks(self, resource: str, ids: Collection[str]) -> dict[str, Mark]:
        """These agents' marks on ``resource``."""
        folder = self._marks_dir(resource)
        found: dict[str, Mark] = {}
        for agent_id in ids:
            try:
                epoch, busy = (folder / self._agent_file(agent_id).name).read_text().split()
                found[agent_id] = (int(epoch), int(busy))
            except (OSError, ValueError):
                continue
        return found

    def _waiting_dir(self, kind: str, resource: str, holder: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{kind}-{resource}-{holder}")
        return self.agents_dir / f"waiting-{safe}"

    def expect(self, kind: str, resource: str, holder: str, ids: Collection[str]) -> None:
        """One empty file per agent waited for, in a folder of the wait's own; mark files
        of agents not among ``ids`` are removed."""
        folder = self._waiting_dir(kind, resource, holder)
        folder.mkdir(parents=True, exist_ok=True)
        for agent_id in ids:
            (folder / self._agent_file(agent_id).name).touch()
        alive = {self._agent_file(i).name for i in ids}
        try:
            marks = list(self._marks_dir(resource).iterdir())
        except OSError:
            marks = []
        for file in marks:
            if not file.name.startswith(".") and file.name not in alive:
                file.unlink(missing_ok=True)

    def arrive(self, kind: str, resource: str, holder: str, ids: Collection[str]) -> None:
        """Remove these agents' files from the wait's folder."""
        folder = self._waiting_dir(kind, resource, holder)
        for agent_id in ids:
            (folder / self._agent_file(agent_id).name).unlink(missing_ok=True)

    def expected(self, kind: str, resource: str, holder: str,
                 sample: int = 0) -> tuple[int, list[str]]:
        """The files left in the wait's folder (file names: ids with ``:`` as ``_``)."""
        try:
            names = sorted(f.name for f in self._waiting_dir(kind, resource, holder).iterdir())
        except OSError:
            return 0, []
        if not sample:
            return len(names), []
        ids = {self._agent_file(i).name: i for i in self.agent_ids()}
        return len(names), [ids.get(n, n.removesuffix(".json")) for n in names[:sample]]

    def forget(self, kind: str, resource: str, holder: str) -> None:
        """Remove the wait's folder."""
        import shutil
        shutil.rmtree(self._waiting_dir(kind, resource, holder), ignore_errors=True)

    def _recent(self) -> list[dict[str, Any]]:
        """The heartbeats reported within the heartbeat's time to live."""
        now = self._clock()
        found = []
        for beat in self.agents():
            try:
                if now - float(beat.get("reported_at", 0)) <= self._agent_ttl:
                    found.append(beat)
            except (TypeError, ValueError):
                continue
        return found

    def fleet_load(self, service: str) -> dict[str, tuple[int, float]]:
        """Per unit, the recent instances of ``service`` that report utilization, and
        the sum of their utilizations."""
        return self.fleet_loads().get(service, {})

    def fleet_loads(self) -> dict[str, dict[str, tuple[int, float]]]:
        """:meth:`fleet_load` of every service, from one read of the heartbeats."""
        found: dict[str, dict[str, tuple[int, float]]] = {}
        for beat in self._recent():
            if beat.get("utilization") is None:
                continue
            try:
                utilization = float(beat["utilization"])
            except (TypeError, ValueError):
                continue
            units = found.setdefault(str(beat.get("service") or DEFAULT_SERVICE), {})
            unit = str(beat.get("unit", ""))
            count, total = units.get(unit, (0, 0.0))
            units[unit] = (count + 1, total + utilization)
        return found

    @property
    def _history_dir(self) -> Path:
        return self.path.with_name(self.path.name + ".history")

    def _history_file(self, series: str) -> Path:
        return self._history_dir / (quote(series, safe="@") + ".bin")

    def history_write(self, series: str, offset: int, data: bytes, size: int) -> None:
        """Write into the series' file, sized ``size`` once (sparse until written)."""
        if offset < 0 or offset + len(data) > size:
            raise ControlPlaneError(f"history {series}: write at {offset} outside its "
                                    f"{size} bytes")
        self._history_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self._history_file(series), os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if os.fstat(fd).st_size != size:
                    os.ftruncate(fd, size)     # a ring resized (history_days changed)
                os.pwrite(fd, data, offset)
            finally:
                os.close(fd)
        except OSError as exc:
            raise ControlPlaneError(f"history {series}: cannot write: {exc.strerror}"
                                    ) from None

    def history_read(self, series: str) -> bytes:
        """The series' file (empty when absent)."""
        try:
            return self._history_file(series).read_bytes()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise ControlPlaneError(f"history {series}: cannot read: {exc.strerror}"
                                    ) from None

    def history_series(self) -> list[str]:
        """The series with a file."""
        try:
            return sorted(unquote(p.stem) for p in self._history_dir.glob("*.bin"))
        except OSError:
            return []

    def _document_file(self, name: str) -> Path:
        return self.path.with_name(f"{self.path.name}.{quote(name, safe='')}.json")

    def put_document(self, name: str, data: bytes) -> None:
        """Replace the document's file atomically."""
        try:
            _write_atomic(self._document_file(name), data, durable=False)
        except OSError as exc:
            raise ControlPlaneError(f"document {name}: cannot write: {exc.strerror}"
                                    ) from None

    def get_document(self, name: str) -> bytes | None:
        """The document's file (None when absent)."""
        try:
            return self._document_file(name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ControlPlaneError(f"document {name}: cannot read: {exc.strerror}"
                                    ) from None

    def applied_epoch(self) -> int:
        """The highest epoch in the recent heartbeats."""
        return highest_epoch(self._recent())

    def _lease_file(self, name: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        return self.path.with_name(f"{self.path.name}.lease-{safe}")

    def lease(self, name: str, holder: str, ttl: float, note: str = "") -> bool:
        """Take or renew a lease: a small JSON file, changed under the publish lock. A
        lease held for longer than :func:`~resil.control.base.lease_cap` of ``ttl`` is
        forged and taken over. The last ``note`` stays in the file until released."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = self._lease_file(name)
        with open(f"{self.path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            now = self._clock()
            try:
                current = json.loads(file.read_bytes())
            except (OSError, ValueError):
                current = {}
            try:
                left = float(current.get("expires", 0)) - now
            except (TypeError, ValueError):
                left = 0.0
            if current.get("holder") not in (None, holder) and 0 < left <= lease_cap(ttl):
                return False    # held by another (a longer hold is forged: taken over)
            record: dict[str, Any] = {"holder": holder, "expires": now + ttl}
            if note:
                record["note"] = {"holder": holder, "note": note, "at": now}
            elif isinstance(current.get("note"), dict):
                record["note"] = current["note"]    # a dead holder's note, for its resolver
            _write_atomic(file, json.dumps(record).encode(), durable=False)
            return True

    def lease_holder(self, name: str) -> str | None:
        """Who holds the lease ``name`` now (None: nobody, or it expired)."""
        try:
            current = json.loads(self._lease_file(name).read_bytes())
            if float(current.get("expires", 0)) > self._clock():
                return str(current.get("holder"))
        except (OSError, ValueError, TypeError, AttributeError):
            pass
        return None

    def lease_note(self, name: str) -> LeaseNote | None:
        """The last note in the lease file, for :data:`~resil.control.base.NOTE_TTL`
        after it was written (dropped when a holder releases the lease)."""
        try:
            current = json.loads(self._lease_file(name).read_bytes())
        except (OSError, ValueError):
            return None
        note = current.get("note") if isinstance(current, dict) else None
        found = LeaseNote.parse(json.dumps(note)) if note else None
        return found if found and found.at + NOTE_TTL > self._clock() else None

    def release(self, name: str, holder: str) -> None:
        """Delete the lease file if ``holder`` has the lease."""
        file = self._lease_file(name)
        with open(f"{self.path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if json.loads(file.read_bytes()).get("holder") == holder:
                    file.unlink()
            except (OSError, ValueError):
                pass

    def durability(self) -> str | None:
        """None: every publish is an fsync'd atomic rename."""
        return None

    def close(self) -> None:
        """Nothing to release: files are opened per operation."""


def _dead_local_process(beat: Mapping[str, Any]) -> bool:
    """A heartbeat from this host whose process no longer exists."""
    pid = beat.get("pid")
    if beat.get("host") != gethostname() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _write_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Replace ``path`` by a complete new file (temporary file + rename)."""
    import tempfile
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)    # make the rename itself durable
        finally:
            os.close(dir_fd)


class _FileWatch:
    """The thread behind :meth:`FileControlPlane.watch`.

    On Linux it sleeps in ``select()`` on an inotify descriptor watching the state file's
    folder, and wakes only when something there changes (plus a reconciling look every
    second). A thread that wakes on a timer every few milliseconds would make the
    application's threads hand the GIL over at every wake-up — measured at +50 µs per
    request on a busy two-core machine. Elsewhere, or when inotify is unavailable, it
    polls every ``poll_interval``.
    """

    RECONCILE = 1.0

    def __init__(self, plane: FileControlPlane, on_signal: Callable[[Signal], object],
                 on_error: Callable[[Exception], None]) -> None:
        self._plane = plane
        self._on_signal = on_signal
        self._on_error = on_error
        self._stopped = threading.Event()
        self._seen: _Identity | None = None
        self._wake_r, self._wake_w = os.pipe()     # stop() interrupts select() at once
        self._inotify = _inotify(plane.path.parent)
        self._thread = threading.Thread(target=self._run, name="resil-control-watch",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.close_after_fork()

    def close_after_fork(self) -> None:
        """Close the descriptors (also in a forked child, where the thread is gone)."""
        for fd in (self._inotify, self._wake_r, self._wake_w):
            if fd is not None and fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._inotify = self._wake_r = self._wake_w = -1

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self._poll_once()
            except Exception as exc:  # the watch must outlive any single bad read
                self._on_error(exc)
            self._wait()

    def _wait(self) -> None:
        if self._inotify is None or self._inotify < 0:
            self._stopped.wait(self._plane._poll_interval)
            return
        try:
            ready, _, _ = select.select([self._inotify, self._wake_r], [], [], self.RECONCILE)
            if self._inotify in ready:
                os.read(self._inotify, 65536)     # drain; what changed is re-read anyway
        except (OSError, ValueError):
            self._stopped.wait(self._plane._poll_interval)

    def _poll_once(self) -> None:
        identity = self._plane._identity()
        if identity is None or identity == self._seen:
            return
        self._seen = identity   # report a bad file once, not on every poll
        signal = self._plane.load()
        if signal is not None:
            self._on_signal(signal)


_IN_MODIFY, _IN_CLOSE_WRITE, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x2, 0x8, 0x80, 0x100, 0x200


def _inotify(folder: Path) -> int | None:
    """An inotify descriptor watching ``folder`` for replaced files, or None."""
    if not sys.platform.startswith("linux") or not folder.is_dir():
        return None
    try:
        import ctypes  # here, not at import: the watch starts on first use
        libc = ctypes.CDLL(None, use_errno=True)
        fd = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
        if fd < 0:
            return None
        mask = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE
        if libc.inotify_add_watch(fd, os.fsencode(folder), mask) < 0:
            os.close(fd)
            return None
        return fd
    except (OSError, AttributeError):
        return None
