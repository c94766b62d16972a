"""The probe of a drill: one thread writing to a resource as an application would,
recording every acknowledged write and every error with its time (MySQL: rows of
``resil_drill.probe``; Redis: a list ``resil:drill:<run id>``)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from .. import context
from ..clock import Clock
from ..errors import ResilError
from ..topology import Endpoint
from .servers import Credentials


class DrillError(ResilError):
    """The drill could not inject its fault, or recovery did not come in time (exit 1)."""


class DrillInputError(ResilError):
    """The drill was asked for something it cannot do here (exit 2)."""


DATABASE = "resil_drill"
"""MySQL: the probe writes to ``resil_drill.probe`` (created if missing)."""
KEY_PREFIX = "resil:drill:"
"""Redis: the probe appends to the list ``resil:drill:<run id>``."""
WRITE_PAUSE = 0.005
"""Seconds between two probe writes."""
ERROR_PAUSE = 0.02
"""Seconds before the probe retries after an error (on a new connection)."""


@dataclass(frozen=True)
class Ack:
    """One acknowledged probe write: its sequence number, when it was sent and acked."""

    seq: int
    sent: float
    acked: float


@dataclass(frozen=True)
class ClientError:
    """One error the probe saw."""

    at: float
    type: str
    message: str


class Writer(Protocol):
    """An application-side connection of the probe (routed by the agent)."""

    def write(self, seq: int) -> None:
        """Write ``seq``; return once the server acknowledged it."""

    def close(self) -> None:
        """Drop the connection."""


class Store(Protocol):
    """Where a probe writes, per resource kind."""

    def prepare(self, primary: Endpoint) -> str:
        """Make the place ready (admin connection to ``primary``); say what was done."""

    def writer(self, address: Endpoint) -> Writer:
        """A new application-side connection to ``address`` (the agent routes it)."""

    def present(self, primary: Endpoint) -> set[int]:
        """The sequence numbers of this run found on ``primary`` (admin connection)."""

    def cleanup(self, primary: Endpoint) -> int:
        """Remove this run's data from ``primary``; return how many entries went."""


class MySQLStore:
    """Rows ``(seq, at, run)`` in ``resil_drill.probe``, written with the admin account."""

    def __init__(self, credentials: Credentials, run: str) -> None:
        if not credentials.admin_user:
            raise DrillInputError("the probe writes with the resource's admin account: "
                                  "set admin_user")
        self.credentials, self.run = credentials, run

    def _connect(self, endpoint: Endpoint, database: str | None, **kw: Any) -> Any:
        import pymysql  # type: ignore[import-untyped]
        return pymysql.connect(host=endpoint.host, port=endpoint.port,
                               user=self.credentials.admin_user,
                               password=self.credentials.admin_password, database=database,
                               autocommit=True, connect_timeout=2, **kw)

    def _admin(self, endpoint: Endpoint, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with context.bypass():
            conn = self._connect(endpoint, None, read_timeout=10, write_timeout=10)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params or None)
                return list(cur.fetchall())
        finally:
            conn.close()

    def prepare(self, primary: Endpoint) -> str:
        self._admin(primary, f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        self._admin(primary, f"CREATE TABLE IF NOT EXISTS {DATABASE}.probe (seq BIGINT "
                    "PRIMARY KEY, at DOUBLE, run VARCHAR(64))")
        return f"table {DATABASE}.probe ready on {primary}"

    def writer(self, address: Endpoint) -> Writer:
        return _MySQLWriter(self._connect(address, DATABASE, read_timeout=10,
                                          write_timeout=10), self.run)

    def present(self, primary: Endpoint) -> set[int]:
        rows = self._admin(primary, f"SELECT seq FROM {DATABASE}.probe WHERE run = %s",
                           self.run)
        return {int(row[0]) for row in rows}

    def cleanup(self, primary: Endpoint) -> int:
        before = len(self.present(primary))
        self._admin(primary, f"DELETE FROM {DATABASE}.probe WHERE run = %s", self.run)
        return before


class _MySQLWriter:
    def __init__(self, conn: Any, run: str) -> None:
        self.conn, self.run = conn, run

    def write(self, seq: int) -> None:
        with self.conn.cursor() as cur:
            cur.execute("INSERT INTO probe (seq, at, run) VALUES (%s, %s, %s)",
                        (seq, time.time(), self.run))

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:   # already broken: that is why it is closed
            pass


class RedisStore:
    """``RPUSH resil:drill:<run> seq``, one list per run."""

    def __init__(self, credentials: Credentials, run: str) -> None:
        self.credentials, self.key = credentials, KEY_PREFIX + run

    def _client(self, endpoint: Endpoint) -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
        # No retries: every failed command is one client error, as it happened.
        return redis.Redis(host=endpoint.host, port=endpoint.port,
                           username=self.credentials.admin_user or None,
                           password=self.credentials.admin_password or None,
                           socket_connect_timeout=2, socket_timeout=10,
                           retry=Retry(NoBackoff(), 0))

    def _admin(self, endpoint: Endpoint, *command: Any) -> Any:
        with context.bypass():     # redis-py connects lazily: at the command
            client = self._client(endpoint)
            try:
                return client.execute_command(*command)
            finally:
                client.close()

    def prepare(self, primary: Endpoint) -> str:
        self._admin(primary, "PING")
        return f"list {self.key} on {primary}"

    def writer(self, address: Endpoint) -> Writer:
        return _RedisWriter(self._client(address), self.key)

    def present(self, primary: Endpoint) -> set[int]:
        return {int(v) for v in self._admin(primary, "LRANGE", self.key, 0, -1)}

    def cleanup(self, primary: Endpoint) -> int:
        count = int(self._admin(primary, "LLEN", self.key))
        self._admin(primary, "DEL", self.key)
        return count


class _RedisWriter:
    def __init__(self, client: Any, key: str) -> None:
        self.client, self.key = client, key

    def write(self, seq: int) -> None:
        self.client.rpush(self.key, seq)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass


class Probe:
    """A thread that writes through the agent until stopped, recording what happened."""

    def __init__(self, store: Store, address: Endpoint, clock: Clock = time.monotonic) -> None:
        self.store, self.address, self.clock = store, address, clock
        self.acks: list[Ack] = []
        self.errors: list[ClientError] = []
        # Unique across runs (MySQL's key is the sequence number): microseconds now.
        self.first_seq = time.time_ns() // 1000
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="resil-drill-probe",
                                        daemon=True)

    def start(self) -> None:
        """Start writing."""
        self._thread.start()

    def stop(self) -> None:
        """Stop writing (waits for the write in progress)."""
        self._stop.set()
        self._thread.join(timeout=30)

    def acked_since(self, moment: float) -> list[Ack]:
        """The acknowledged writes that were sent after ``moment``."""
        return [a for a in list(self.acks) if a.sent > moment]

    def _loop(self) -> None:
        writer: Writer | None = None
        seq = self.first_seq
        while not self._stop.is_set():
            seq += 1        # never reused: a failed write may still have landed
            sent = self.clock()
            try:
                if writer is None:
                    writer = self.store.writer(self.address)
                writer.write(seq)
            except Exception as exc:
                self.errors.append(ClientError(self.clock(), type(exc).__name__, str(exc)))
                if writer is not None:
                    writer.close()      # what a pool does with a broken connection
                writer = None
                self._stop.wait(ERROR_PAUSE)
                continue
            self.acks.append(Ack(seq, sent, self.clock()))
            self._stop.wait(WRITE_PAUSE)
        if writer is not None:
            writer.close()


