"""Direct administration of MySQL and Redis servers, for switches (and, later, monitors).

This is the one place in resil that drives database servers itself. Every connection it
opens bypasses resil's own hooks (:class:`resil.context.bypass`), so it talks to
exactly the endpoint it names even inside an instrumented process.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .. import _deps, context
from ..errors import ConfigError, SwitchError, SwitchInputError
from ..topology import Endpoint, Resource

if TYPE_CHECKING:
    from ..config import Config

#: ``min-replicas-to-write`` of a fenced Redis primary: more replicas than can exist, so
#: every write is refused (NOREPLICAS), and ``INFO``/``CONFIG GET`` show it is fenced.
FENCED_MIN_REPLICAS = "1000000"


@dataclass(frozen=True)
class Credentials:
    """Admin and replication accounts of a resource (passwords from the environment)."""

    admin_user: str
    admin_password: str
    replication_user: str
    replication_password: str

    @classmethod
    def of(cls, resource: Resource) -> Credentials:
        """Read the passwords named by ``*_password_env``; error if one is missing."""
        def secret(var: str, key: str) -> str:
            if not var:
                return ""
            value = os.environ.get(var)
            if value is None:
                raise SwitchError(f"resources.{resource.name}.{key} names {var}, "
                                  "which is not set in the environment")
            return value
        return cls(resource.admin_user,
                   secret(resource.admin_password_env, "admin_password_env"),
                   resource.replication_user,
                   secret(resource.replication_password_env, "replication_password_env"))


class Server(Protocol):
    """What a switch needs from one database server."""

    endpoint: Endpoint
    needs_replication_account: bool
    """Whether :meth:`replicate_from` needs the resource's replication account."""

    def replication(self) -> dict[str, Any]:
        """Replication status: ``role``, ``source`` (host, port), ``running``, ``lag``."""

    def position(self) -> str:
        """The replication position this server has written (GTID set / offset)."""

    def wait_for(self, position: str, timeout: float) -> bool:
        """Wait until this server has applied ``position``; False on timeout."""

    def fence(self, hold_for: float) -> int:
        """Stop accepting application writes; return how many clients were cut."""

    def unfence(self) -> None:
        """Undo :meth:`fence` (rollback before promote)."""

    def promote(self) -> None:
        """Stop replicating and accept writes."""

    def semi_sync_primary(self) -> bool:
        """Whether this server waits for a replica's ACK before a commit returns."""

    def semi_sync_timeout_ms(self) -> int | None:
        """MySQL: ``rpl_semi_sync_master_timeout`` of a semi-sync primary, else None."""

    def failover_settings(self) -> dict[str, float]:
        """The server settings that decide how fast a frozen source is noticed and how
        fast a replica keeps up (for ``resil doctor``)."""

    def make_semi_sync_primary(self) -> None:
        """Take over the semi-sync primary role (a switch moves it with the primary)."""

    def replicate_from(self, source: Endpoint, credentials: Credentials) -> None:
        """Become a replica of ``source``."""

    def after_promotion(self, reversed_: bool) -> int:
        """On the old primary once the new one is promoted; returns clients cut."""

    def probe(self, token: str) -> None:
        """Write ``token`` through this server (a verification write)."""

    def writable(self) -> bool:
        """Whether applications could write here (a primary that is not fenced)."""

    def fence_for_good(self) -> int:
        """Refuse application writes until an operator rejoins it; return clients cut."""

    def progress(self) -> tuple[int, ...]:
        """How far this server's data goes (GTID sequence / replication offset): the
        replica with the highest progress is the one to promote."""

    def apply_received(self, timeout: float) -> bool:
        """A replica: apply everything it has received from its (lost) primary."""

    def errant_against(self, primary: Server) -> str:
        """Writes this server has that ``primary`` never got, named; "" when none."""

    def rejoin(self, source: Endpoint, credentials: Credentials, semi_sync: bool) -> None:
        """Replicate from ``source`` (as a semi-sync replica when ``semi_sync``)."""

    def replicating(self, position: str, timeout: float) -> str:
        """Wait until this replica reached ``position`` of its source: "" when it did,
        else why not (its replication is then stopped and cleared)."""

    def close(self) -> None:
        """Close the admin connection."""


class MySQLServer:
    """A MariaDB/MySQL server driven over an admin connection (PyMySQL)."""

    #: Threads a fence must not kill: replication and the server's own.
    _SYSTEM_COMMANDS = ("Binlog Dump", "Binlog Dump GTID", "Daemon", "Slave_IO", "Slave_SQL",
                        "Slave_worker")

    needs_replication_account = True

    def __init__(self, endpoint: Endpoint, credentials: Credentials,
                 timeout: float = 3.0, read_timeout: float = 30.0) -> None:
        import pymysql  # type: ignore[import-untyped]
        self.endpoint = endpoint
        self._credentials = credentials
        if not credentials.admin_user:
            raise SwitchError(f"resources.{endpoint.resource}.admin_user is not set: "
                              "a switch needs an admin account")
        try:
            with context.bypass():
                self._conn = pymysql.connect(
                    host=endpoint.host, port=endpoint.port, user=credentials.admin_user,
                    password=credentials.admin_password, connect_timeout=timeout,
                    read_timeout=read_timeout, write_timeout=read_timeout, autocommit=True)
        except pymysql.err.MySQLError as exc:
            raise SwitchError(f"cannot connect to {endpoint} (unit {endpoint.unit}): "
                              f"{exc}") from exc

    def _rows(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        with self._conn.cursor() as cur:
            cur.execute(sql, params or None)
            names = [d[0] for d in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def _one(self, sql: str, *params: Any) -> Any:
        rows = self._rows(sql, *params)
        return next(iter(rows[0].values())) if rows else None

    def replication(self) -> dict[str, Any]:
        rows = self._rows("SHOW SLAVE STATUS")
        if not rows:
            return {"role": "primary", "read_only": bool(self._one("SELECT @@read_only"))}
        row = rows[0]
        lag = row.get("Seconds_Behind_Master")
        beats = {str(r["Variable_name"]): r["Value"] for r in self._rows(
            "SHOW GLOBAL STATUS WHERE Variable_name IN "
            "('Slave_received_heartbeats', 'Slave_heartbeat_period')")}
        return {
            "role": "replica",
            "source": (str(row.get("Master_Host")), int(row.get("Master_Port") or 0)),
            "running": row.get("Slave_IO_Running") == "Yes"
            and row.get("Slave_SQL_Running") == "Yes",
            "lag": float(lag) if lag is not None else None,
            "gtid": row.get("Using_Gtid", "No") != "No",
            "error": row.get("Last_Error") or row.get("Last_IO_Error") or "",
            # What the replica has received from its source: it changes with every event
            # and every heartbeat, so an unchanged value over more than the heartbeat
            # period means it has heard nothing (a frozen source keeps the IO thread
            # "running" until slave_net_timeout).
            "heard": (row.get("Master_Log_File"), row.get("Read_Master_Log_Pos"),
                      beats.get("Slave_received_heartbeats")),
            "heartbeat_period": float(beats.get("Slave_heartbeat_period") or 0),
        }

    def position(self) -> str:
        return str(self._one("SELECT @@gtid_binlog_pos"))

    def wait_for(self, position: str, timeout: float) -> bool:
        return bool(self._one("SELECT MASTER_GTID_WAIT(%s, %s)", position, timeout) == 0)

    def fence(self, hold_for: float) -> int:
        # Cut the clients first: SET GLOBAL read_only waits for every commit in progress,
        # and a primary coming back from a freeze has commits waiting for a semi-sync
        # ACK that will never come. Killed, they were never acknowledged to anyone.
        cut = self._kill_clients()
        self._rows("SET GLOBAL read_only = 1")
        return cut + self._kill_clients()      # anyone who got in between

    def _kill_clients(self) -> int:
        placeholders = ", ".join(["%s"] * len(self._SYSTEM_COMMANDS))
        skip_users = ("system user", "event_scheduler", self._credentials.replication_user)
        rows = self._rows(
            "SELECT ID, USER FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()"
            f" AND COMMAND NOT IN ({placeholders})", *self._SYSTEM_COMMANDS)
        killed = 0
        for row in rows:
            if row["USER"] in skip_users:
                continue
            try:
                self._rows(f"KILL CONNECTION {int(row['ID'])}")
                killed += 1
            except Exception:   # it ended by itself meanwhile
                pass
        return killed

    def unfence(self) -> None:
        self._rows("SET GLOBAL read_only = 0")

    def promote(self) -> None:
        # A semi-sync replica's STOP SLAVE first connects to its primary to kill its dump
        # thread, and waits up to rpl_semi_sync_slave_kill_conn_timeout (5 s; measured:
        # 2 s) for a primary that is frozen: every write is held meanwhile. 1 s is the
        # least that still bounds it (0 waits without a bound: 24 s measured).
        kill_wait = self._rows("SHOW GLOBAL VARIABLES LIKE "
                               "'rpl_semi_sync_slave_kill_conn_timeout'")
        before = int(kill_wait[0]["Value"]) if kill_wait else 0
        if before > 1:
            self._rows("SET GLOBAL rpl_semi_sync_slave_kill_conn_timeout = 1")
        try:
            self._rows("STOP SLAVE")
        finally:
            if before > 1:
                self._rows(f"SET GLOBAL rpl_semi_sync_slave_kill_conn_timeout = {before}")
        self._rows("RESET SLAVE ALL")
        self._rows("SET GLOBAL read_only = 0")

    def _semi_sync(self) -> dict[str, str]:
        """The semi-sync switches of this server ({} where the plugin is absent)."""
        rows = self._rows("SHOW GLOBAL VARIABLES WHERE Variable_name IN "
                          "('rpl_semi_sync_master_enabled', 'rpl_semi_sync_slave_enabled')")
        return {str(r["Variable_name"]): str(r["Value"]).upper() for r in rows}

    def semi_sync_primary(self) -> bool:
        return self._semi_sync().get("rpl_semi_sync_master_enabled") == "ON"

    def semi_sync_timeout_ms(self) -> int | None:
        """``rpl_semi_sync_master_timeout`` when this is a semi-sync primary, else None."""
        if not self.semi_sync_primary():
            return None
        return int(self._one("SELECT @@rpl_semi_sync_master_timeout"))

    def failover_settings(self) -> dict[str, float]:
        row = self._rows("SELECT @@slave_net_timeout AS net, "
                         "@@slave_parallel_threads AS threads")[0]
        found = {"slave_net_timeout": float(row["net"]),
                 "slave_parallel_threads": float(row["threads"])}
        period = self.replication().get("heartbeat_period")
        if isinstance(period, float):
            found["heartbeat_period"] = period
        return found

    def make_semi_sync_primary(self) -> None:
        if self._semi_sync():
            self._rows("SET GLOBAL rpl_semi_sync_slave_enabled = OFF")
            self._rows("SET GLOBAL rpl_semi_sync_master_enabled = ON")

    def replicate_from(self, source: Endpoint, credentials: Credentials) -> None:
        # A former semi-sync primary becomes a semi-sync replica. Left a semi-sync
        # primary, its SQL thread would wait for ACKs no replica sends, up to
        # rpl_semi_sync_master_timeout for every transaction it applies.
        if self._semi_sync().get("rpl_semi_sync_master_enabled") == "ON":
            self._rows("SET GLOBAL rpl_semi_sync_master_enabled = OFF")
            self._rows("SET GLOBAL rpl_semi_sync_slave_enabled = ON")
        self._rows("STOP SLAVE")
        self._rows(
            "CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %s, MASTER_USER = %s, "
            "MASTER_PASSWORD = %s, MASTER_USE_GTID = current_pos, MASTER_CONNECT_RETRY = 1",
            source.host, source.port, credentials.replication_user,
            credentials.replication_password)
        self._rows("START SLAVE")

    def after_promotion(self, reversed_: bool) -> int:
        return self._kill_clients()     # stay read_only; cut anyone who reconnected

    def probe(self, token: str) -> None:
        self._rows("CREATE DATABASE IF NOT EXISTS resil")
        self._rows("CREATE TABLE IF NOT EXISTS resil.probe (name VARCHAR(64) PRIMARY KEY, "
                   "token VARCHAR(128), at DOUBLE)")
        self._rows("REPLACE INTO resil.probe VALUES ('switch', %s, %s)", token, time.time())

    def writable(self) -> bool:
        return not self._rows("SHOW SLAVE STATUS") and not self._one("SELECT @@read_only")

    def fence_for_good(self) -> int:
        return self.fence(0.0)          # read_only stays until an operator lifts it

    def progress(self) -> tuple[int, ...]:
        # gtid_current_pos covers what this server applied, as replica or as primary.
        # One entry per replication domain: domain-server-sequence; compare sequences.
        text = str(self._one("SELECT @@gtid_current_pos") or "")
        seqs = sorted((int(d), int(q)) for d, _, q in
                      (g.strip().split("-") for g in text.split(",") if g.strip()))
        return tuple(q for _, q in seqs)

    def apply_received(self, timeout: float) -> bool:
        rows = self._rows("SHOW SLAVE STATUS")
        if not rows:
            return True
        received = str(rows[0].get("Gtid_IO_Pos") or "")
        if not received:
            return True
        return bool(self._one("SELECT MASTER_GTID_WAIT(%s, %s)", received, timeout) == 0)

    def gtids(self, variable: str) -> dict[int, tuple[int, int]]:
        """``@@gtid_binlog_pos`` (or ``gtid_slave_pos``, ``gtid_current_pos``) as
        ``{domain: (server_id, sequence)}``."""
        if variable not in ("gtid_binlog_pos", "gtid_slave_pos", "gtid_current_pos"):
            raise ValueError(variable)
        text = str(self._one(f"SELECT @@{variable}") or "")
        found: dict[int, tuple[int, int]] = {}
        for gtid in filter(None, (g.strip() for g in text.split(","))):
            domain, server, seq = (int(part) for part in gtid.split("-"))
            found[domain] = (server, seq)
        return found

    def errant_against(self, primary: Server) -> str:
        # What this server wrote itself (the last GTID it logged per domain carries its
        # server_id) must be among what the primary applied from it or logged.
        if not isinstance(primary, MySQLServer):
            raise TypeError(primary)
        me = int(self._one("SELECT @@server_id"))
        known = (primary.gtids("gtid_slave_pos"), primary.gtids("gtid_binlog_pos"))
        errant = []
        for domain, (server, seq) in sorted(self.gtids("gtid_binlog_pos").items()):
            if server != me:
                continue        # its last write there came from another server
            got = max((pos[domain][1] for pos in known
                       if domain in pos and pos[domain][0] == server), default=0)
            if got >= seq:
                continue
            if got:
                span = f"{domain}-{server}-{got + 1}" + \
                    (f"..{domain}-{server}-{seq}" if seq > got + 1 else "")
                errant.append(f"{span} ({seq - got} transaction(s))")
            else:
                errant.append(f"{domain}-{server}-{seq} and earlier ones of server {server} "
                              "(the primary has none of them)")
        return ", ".join(errant)

    def rejoin(self, source: Endpoint, credentials: Credentials, semi_sync: bool) -> None:
        if semi_sync and self._semi_sync():
            self._rows("SET GLOBAL rpl_semi_sync_master_enabled = OFF")
            self._rows("SET GLOBAL rpl_semi_sync_slave_enabled = ON")
        self.replicate_from(source, credentials)

    def replicating(self, position: str, timeout: float) -> str:
        reached = self._one("SELECT MASTER_GTID_WAIT(%s, %s)", position, timeout) == 0
        rows = self._rows("SHOW SLAVE STATUS")
        row = rows[0] if rows else {}
        error = row.get("Last_IO_Error") or row.get("Last_SQL_Error") or ""
        running = row.get("Slave_IO_Running") == "Yes" and row.get("Slave_SQL_Running") == "Yes"
        if reached and running and not error:
            return ""
        self._rows("STOP SLAVE")
        self._rows("RESET SLAVE ALL")       # alone and fenced again, as it was
        return error or f"it did not reach {position} within {timeout:g} s"

    def close(self) -> None:
        try:
            self._conn.close()
        except Exception:
            pass


SILENCE_MARGIN = 1.0
"""Seconds a Redis replica may go without a word from its primary beyond the primary's
ping period before it counts as cut off from it (``master_last_io_seconds_ago`` is a
whole number of seconds)."""


class RedisServer:
    """A Redis server driven over an admin connection (redis-py)."""

    needs_replication_account = False

    def __init__(self, endpoint: Endpoint, credentials: Credentials,
                 timeout: float = 3.0, read_timeout: float = 30.0) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
        self.endpoint = endpoint
        self._min_replicas = 0
        self._ping: float | None = None
        with context.bypass():
            self._client = redis.Redis(
                host=endpoint.host, port=endpoint.port,
                username=credentials.admin_user or None,
                password=credentials.admin_password or None, socket_connect_timeout=timeout,
                socket_timeout=read_timeout,
                decode_responses=True, retry=Retry(NoBackoff(), 0))
            try:
                self._client.ping()
            except redis.RedisError as exc:
                raise SwitchError(f"cannot connect to {endpoint} (unit {endpoint.unit}): "
                                  f"{exc}") from exc

    def _call(self, *args: Any) -> Any:
        with context.bypass():
            return self._client.execute_command(*args)  # type: ignore[no-untyped-call]

    def _info(self) -> dict[str, Any]:
        with context.bypass():
            return dict(self._client.info("replication"))

    def replication(self) -> dict[str, Any]:
        info = self._info()
        if info.get("role") == "master":
            return {"role": "primary", "offset": int(info.get("master_repl_offset", 0))}
        up = info.get("master_link_status") == "up"
        # A frozen primary keeps the link "up" until repl-timeout (60 s by default); but
        # a live one sends something at least every repl-ping-replica-period seconds.
        silent = int(info.get("master_last_io_seconds_ago", -1))
        bound = self._ping_period() + SILENCE_MARGIN
        running = up and silent <= bound
        return {
            "role": "replica",
            "source": (str(info.get("master_host")), int(info.get("master_port", 0))),
            "running": running,
            # Redis has no lag in seconds (master_last_io_seconds_ago counts idle time up
            # to the ping period): a live link passes; catch-up bounds the real wait.
            "lag": 0.0 if running else None,
            "gtid": True,
            "error": "" if running else "link down" if not up else
            f"nothing from the primary for {silent} s (it pings every "
            f"{bound - SILENCE_MARGIN:g} s)",
        }

    def failover_settings(self) -> dict[str, float]:
        return {"repl_ping_replica_period": self._ping_period()}

    def _ping_period(self) -> float:
        """``repl-ping-replica-period``, read once (10, Redis's default, if CONFIG is
        refused): the longest a live primary stays silent to its replicas."""
        if self._ping is None:
            try:
                found = self._call("CONFIG", "GET", "repl-ping-replica-period")
                values = dict(zip(found[::2], found[1::2], strict=True)) \
                    if isinstance(found, list) else dict(found)
                self._ping = float(values.get("repl-ping-replica-period", 10))
            except Exception:
                self._ping = 10.0
        return self._ping

    def position(self) -> str:
        return str(self._info().get("master_repl_offset", 0))

    def wait_for(self, position: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            info = self._info()
            if int(info.get("slave_repl_offset", info.get("master_repl_offset", 0))) \
                    >= int(position):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)

    def fence(self, hold_for: float) -> int:
        # Writes from every client now block (not fail) on the old primary; they are
        # released by unfence() (rollback) or refused as READONLY after the reverse.
        self._call("CLIENT", "PAUSE", str(int(hold_for * 1000)), "WRITE")
        # A pause is invisible to INFO and ends by itself: the fence is also marked where
        # writable() sees it and where it outlasts the pause (a switch killed after its
        # fence must not leave a primary that turns writable again by itself).
        self._min_replicas = self._min_replicas_to_write()
        self._call("CONFIG", "SET", "min-replicas-to-write", FENCED_MIN_REPLICAS)
        return 0

    def unfence(self) -> None:
        # The value before the fence when this process fenced it; else (a lock resolved
        # for a dead switch) 0, as after a promote.
        before = self._min_replicas if self._min_replicas < int(FENCED_MIN_REPLICAS) else 0
        self._call("CONFIG", "SET", "min-replicas-to-write", str(before))
        self._call("CLIENT", "UNPAUSE")

    def _min_replicas_to_write(self) -> int:
        config = self._call("CONFIG", "GET", "min-replicas-to-write")
        return int(config.get("min-replicas-to-write", 0) if isinstance(config, dict)
                   else config[1])

    def promote(self) -> None:
        self._call("REPLICAOF", "NO", "ONE")
        self._call("CONFIG", "SET", "min-replicas-to-write", "0")   # an earlier fence

    def semi_sync_primary(self) -> bool:
        return False        # Redis replication is asynchronous (WAIT is per command)

    def semi_sync_timeout_ms(self) -> int | None:
        return None

    def make_semi_sync_primary(self) -> None:
        pass

    def replicate_from(self, source: Endpoint, credentials: Credentials) -> None:
        self._call("REPLICAOF", source.host, str(source.port))

    def after_promotion(self, reversed_: bool) -> int:
        if not reversed_:
            # Still a master: refuse writes for good (NOREPLICAS) before the pause ends.
            self._call("CONFIG", "SET", "min-replicas-to-write", FENCED_MIN_REPLICAS)
        else:       # a replica refuses writes by its role; drop the fence's mark, which
            # would otherwise refuse every write if something else promoted it later
            self._call("CONFIG", "SET", "min-replicas-to-write", str(
                self._min_replicas if self._min_replicas < int(FENCED_MIN_REPLICAS) else 0))
        self._call("CLIENT", "UNPAUSE")
        killed = self._call("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        return int(killed or 0)

    def probe(self, token: str) -> None:
        self._call("SET", "resil:probe", token)

    def fence_for_good(self) -> int:
        self._call("CONFIG", "SET", "min-replicas-to-write", FENCED_MIN_REPLICAS)  # NOREPLICAS
        return int(self._call("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes") or 0)

    def writable(self) -> bool:
        info = self._info()
        if info.get("role") != "master":
            return False
        return self._min_replicas_to_write() < int(FENCED_MIN_REPLICAS)

    def progress(self) -> tuple[int, ...]:
        info = self._info()
        return (int(info.get("slave_repl_offset", info.get("master_repl_offset", 0))),)

    def apply_received(self, timeout: float) -> bool:
        return True     # a Redis replica applies what it receives as it receives it

    def errant_against(self, primary: Server) -> str:
        # The primary, once a replica of this server, keeps that history's id and where
        # its own began (master_replid2 / second_repl_offset): anything this server
        # wrote past that point never reached it.
        if not isinstance(primary, RedisServer):
            raise TypeError(primary)
        keys = int(self._call("DBSIZE"))
        if keys == 0:
            return ""
        mine, theirs = self._info(), primary._info()
        offset = int(mine.get("master_repl_offset", 0))
        if mine.get("master_replid") == theirs.get("master_replid"):
            return ""
        if mine.get("master_replid") == theirs.get("master_replid2"):
            extra = offset - (int(theirs.get("second_repl_offset", 0)) - 1)
            return f"{extra} byte(s) of writes after the primary took over" if extra > 0 else ""
        return (f"a replication history that is not the primary's (id "
                f"{mine.get('master_replid')}, {keys} key(s))")

    def rejoin(self, source: Endpoint, credentials: Credentials, semi_sync: bool) -> None:
        self._call("REPLICAOF", source.host, str(source.port))
        # A replica refuses writes by its role: the fence's mark goes, and so does a
        # write pause a dead switch left.
        self._call("CONFIG", "SET", "min-replicas-to-write", "0")
        self._call("CLIENT", "UNPAUSE")

    def replicating(self, position: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            info = self._info()
            if info.get("role") == "slave" and info.get("master_link_status") == "up" \
                    and int(info.get("slave_repl_offset", -1)) >= int(position):
                return ""
            if time.monotonic() > deadline:
                self._call("REPLICAOF", "NO", "ONE")
                self._call("CONFIG", "SET", "min-replicas-to-write", FENCED_MIN_REPLICAS)
                return (f"link {info.get('master_link_status', 'down')}, offset "
                        f"{info.get('slave_repl_offset', '?')} of {position} after "
                        f"{timeout:g} s")
            time.sleep(0.05)

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:
            pass


def database_resource(config: Config, name: str, unit: str) -> Resource:
    """The mysql or redis resource ``name`` of ``config``, which must have an endpoint in
    ``unit``: what ``resil db switch`` and ``resil db rejoin`` act on. Raises
    :class:`SwitchError` naming what is wrong."""
    resource = config.resources.get(name)
    if resource is None:
        raise SwitchInputError(f"unknown resource {name!r} (known: {', '.join(config.resources)})")
    if resource.kind == "http":
        raise SwitchInputError(f"{resource.name} is an http resource: it has no primary")
    if unit not in resource.endpoints:
        raise SwitchInputError(f"{resource.name} has no endpoint in unit {unit!r} "
                          f"(units: {', '.join(resource.endpoints)})")
    return resource


def require_drivers(config: Config, only: str | None = None) -> None:
    """Raise :class:`ConfigError` when a database resource of ``config`` (or just the one
    named ``only``) is of a kind whose client library is not installed here: an operator
    command that acts on servers checks this before anything else, so that it never
    starts half-blind (a monitor that could not reach a single server would take every
    one of them for lost)."""
    for resource in config.resources.values():
        if only is None or resource.name == only:
            check_driver(resource, str(config.path or "the configuration"))


def check_driver(resource: Resource, source: str = "the configuration") -> None:
    """Raise :class:`ConfigError` when the client library resil reaches ``resource``'s
    servers with is not installed here."""
    if resource.kind not in _deps.DRIVERS:
        return
    problem = _deps.missing(resource.kind, f"acting on {resource.kind} servers")
    if problem:
        raise ConfigError(source, f"resources.{resource.name}.kind", resource.kind, problem)


def open_server(resource: Resource, endpoint: Endpoint, credentials: Credentials,
                timeout: float = 3.0, read_timeout: float = 30.0) -> Server:
    """An admin handle on ``endpoint`` of ``resource``: ``timeout`` bounds the connect,
    ``read_timeout`` every command (a probe of a frozen server wants both short)."""
    check_driver(resource, "the configuration")
    if resource.kind == "mysql":
        return MySQLServer(endpoint, credentials, timeout, read_timeout)
    if resource.kind == "redis":
        return RedisServer(endpoint, credentials, timeout, read_timeout)
    raise SwitchError(f"{resource.name} is an http resource: it has no primary to switch")


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def same_address(source: tuple[str, int], endpoint: Endpoint) -> bool:
    """Whether a replica's ``source`` (host, port) is ``endpoint`` (loopback names alike)."""
    host = source[0].lower()
    same_host = host == endpoint.host or {host, endpoint.host} <= _LOOPBACK
    return same_host and source[1] == endpoint.port
