"""Real MariaDB servers for the test suite: one server, or a GTID primary/replica pair.

Each server is a ``mariadbd`` child process listening on 127.0.0.1 with its
own data directory under the base directory it is given. Root talks to it over
the unix socket (root has no TCP login); tests and resil use the TCP accounts
that ``MariaDBPair`` creates.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import pymysql
import pymysql.connections
import pymysql.cursors
from pymysql.constants import CLIENT

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

# Accounts MariaDBPair creates, all as 'user'@'127.0.0.1'.
APP_USER, APP_PASSWORD, APP_DATABASE = "app", "apppw", "app"
REPL_USER, REPL_PASSWORD = "repl", "replpw"
ADMIN_USER, ADMIN_PASSWORD = "resil", "resilpw"

# A unix socket path longer than this does not fit in sockaddr_un (108 bytes
# with the terminating NUL); deep pytest temp dirs can exceed it.
_MAX_SOCKET_PATH = 100

_CONFIG = """\
[mysqld]
# mariadbd refuses to run as OS root unless told to
user=root
datadir={data}
socket={socket}
pid-file={dir}/mysqld.pid
log-error={dir}/error.log
# Not the shared /tmp: concurrent mariadb-install-db runs there crash or fail
# now and then on each other's temporary table files.
tmpdir={dir}/tmp
port={port}
bind-address=127.0.0.1
# TCP logins then match 'user'@'127.0.0.1' without DNS lookups
skip-name-resolve
character-set-server=utf8mb4
collation-server=utf8mb4_general_ci
# small and fast: tests never need more
innodb_buffer_pool_size=64M
innodb_log_file_size=16M
performance_schema=OFF
# a killed mariadbd loses nothing with 2 (the OS still has the page cache);
# only an OS crash would, and tests do not crash the OS
innodb_flush_log_at_trx_commit=2
server_id={server_id}
log_bin=mysql-bin
relay_log=relay-bin
binlog_format=ROW
log_slave_updates=ON
# parallel replication: a replica under many concurrent writers keeps up (optimistic mode
# applies transactions in parallel and retries the few that conflict)
slave_parallel_threads={parallel_threads}
slave_parallel_mode=optimistic
gtid_strict_mode=ON
gtid_domain_id=0
report_host=127.0.0.1
report_port={port}
{extra}"""


class _PortTakenError(RuntimeError):
    """mariadbd exited because another process bound its port first."""


class MariaDB:
    """One mariadbd on 127.0.0.1:<free port> in its own temp directory.

    The directory is ``base_dir / name``; it keeps the data across ``stop()``,
    ``kill()`` and ``start()`` so a restart finds its data again. ``destroy()``
    (or interpreter exit) stops the server and deletes the directory.
    """

    host: str = "127.0.0.1"

    #: Replication applier threads (``slave_parallel_threads``); 0 applies serially.
    parallel_threads: int = 4

    def __init__(self, base_dir: Path, name: str, server_id: int, port: int | None = None) -> None:
        """Describe the server; nothing runs until ``start()``.

        Args:
            base_dir: an existing directory; the server uses ``base_dir / name``.
            name: names the server in its directory and in error messages.
            server_id: the replication ``server_id``, unique within a topology.
            port: a fixed TCP port, or None to pick a free one (then a start
                that finds the port taken retries once with another).
        """
        self.name = name
        self.server_id = server_id
        self.dir = Path(base_dir) / name
        self.data_dir = self.dir / "data"
        self.config_path = self.dir / "my.cnf"
        self.error_log = self.dir / "error.log"
        self.port: int = port if port is not None else free_port()
        self._port_is_ours = port is None
        self._socket_dir: Path | None = None
        self.socket_path: Path = self._choose_socket_path()
        self._proc: subprocess.Popen[bytes] | None = None
        self.extra_config = ""
        """More ``[mysqld]`` lines, written at the next start (e.g. a restart's
        ``rpl_semi_sync_slave_enabled = ON``)."""
        register(self)

    def __repr__(self) -> str:
        return f"MariaDB({self.name!r}, port={self.port}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        """The mariadbd PID while it runs (frozen counts as running), else None."""
        return self._proc.pid if is_running(self._proc) else None

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 30.0) -> None:
        """Start mariadbd and wait until it answers; a no-op if it is running.

        The data directory is initialised on the first start only. If our own
        free port was taken in the meantime, retries once with a new port.

        Raises:
            RuntimeError: the server did not come up; the message carries the
                tail of its error log.
        """
        if self.pid is not None:
            return
        mariadbd = find_binary("mariadbd")
        register(self)  # again, in case destroy() came before this start
        (self.dir / "tmp").mkdir(parents=True, exist_ok=True)
        self.socket_path.parent.mkdir(exist_ok=True)
        self._write_config()
        self._install_once()
        try:
            self._launch(mariadbd, timeout)
        except _PortTakenError:
            if not self._port_is_ours:
                raise
            self.port = free_port()
            self._write_config()
            self._launch(mariadbd, timeout)
        # A restart must come back on the same port: clients and the replica
        # are configured with it.
        self._port_is_ours = False

    def stop(self, timeout: float = 15.0) -> None:
        """Shut mariadbd down cleanly by PID (SIGKILL after ``timeout``); idempotent."""
        stop_process(self._proc, timeout)

    def kill(self) -> None:
        """SIGKILL mariadbd, like a crash; InnoDB recovers on the next start."""
        kill_process(self._proc)

    def freeze(self) -> None:
        """SIGSTOP mariadbd: connections stay open but nothing answers (a hung host)."""
        signal_process(self._proc, signal.SIGSTOP, repr(self))

    def thaw(self) -> None:
        """SIGCONT a frozen mariadbd."""
        signal_process(self._proc, signal.SIGCONT, repr(self))

    def destroy(self) -> None:
        """Stop mariadbd and delete its directory (a later start begins empty)."""
        self.stop()
        remove_dir(self.dir)
        if self._socket_dir is not None:
            remove_dir(self._socket_dir)
        unregister(self)

    # ------------------------------------------------------------ SQL

    def root_sql(self, query: str, timeout: float = 30.0) -> list[tuple[Any, ...]]:
        """Run ``query`` as root over the unix socket and return all rows.

        ``query`` may hold several statements separated by ``;``: the rows of
        all their result sets are returned in order. Statements autocommit.
        ``query`` is sent as is (no ``%`` parameter substitution).

        Raises:
            pymysql.err.MySQLError: with the server's error code and message.
        """
        conn = self._root_connection(timeout)
        try:
            with conn.cursor() as cur:
                cur.execute(query)
                rows = list(cur.fetchall())
                while cur.nextset():
                    rows.extend(cur.fetchall())
            return rows
        finally:
            conn.close()

    def gtid_binlog_pos(self) -> str:
        """Return ``@@gtid_binlog_pos``: the GTIDs this server has binlogged ('' if none)."""
        return str(self.root_sql("SELECT @@gtid_binlog_pos")[0][0])

    def slave_status(self) -> dict[str, Any]:
        """Return SHOW SLAVE STATUS as a dict by column name ({} if not a replica)."""
        conn = self._root_connection(timeout=10)
        try:
            with conn.cursor(pymysql.cursors.DictCursor) as cur:
                cur.execute("SHOW SLAVE STATUS")
                row: dict[str, Any] | None = cur.fetchone()
            return dict(row) if row else {}
        finally:
            conn.close()

    def connect(
        self,
        user: str = APP_USER,
        password: str = APP_PASSWORD,
        database: str | None = APP_DATABASE,
        **kw: Any,
    ) -> pymysql.connections.Connection[Any]:
        """Open a PyMySQL connection over TCP to this server.

        Connect/read/write timeouts default to 5/30/30 s because PyMySQL would
        otherwise block forever on a frozen server; ``kw`` overrides them and
        passes anything else to ``pymysql.connect`` (autocommit stays off
        unless asked for, as in PyMySQL).
        """
        kw.setdefault("connect_timeout", 5)
        kw.setdefault("read_timeout", 30)
        kw.setdefault("write_timeout", 30)
        return pymysql.connect(
            host=self.host, port=self.port, user=user, password=password, database=database, **kw
        )

    # ------------------------------------------------------------ internals

    def _choose_socket_path(self) -> Path:
        path = self.dir / "mysqld.sock"
        if len(str(path)) <= _MAX_SOCKET_PATH:
            return path
        self._socket_dir = Path(tempfile.mkdtemp(prefix=f"resil-{self.name}-"))
        return self._socket_dir / "mysqld.sock"

    def _write_config(self) -> None:
        self.config_path.write_text(
            _CONFIG.format(
                data=self.data_dir,
                socket=self.socket_path,
                dir=self.dir,
                port=self.port,
                server_id=self.server_id,
                parallel_threads=self.parallel_threads,
                extra=self.extra_config,
            )
        )

    def _install_once(self) -> None:
        """Create the system tables on the first start; later starts reuse them."""
        if (self.data_dir / "mysql").is_dir():
            return
        install_log = self.dir / "install.log"
        log_start = file_size(self.error_log)
        with install_log.open("wb") as out:
            result = subprocess.run(
                [
                    find_binary("mariadb-install-db"),
                    # first, or the server's /etc/mysql config is read as well
                    f"--defaults-file={self.config_path}",
                    "--skip-test-db",
                    "--skip-name-resolve",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            remove_dir(self.data_dir)  # a half-built datadir would break the next try
            # install.log only says "failed"; the reason is in the error log.
            raise RuntimeError(
                f"mariadb-install-db for {self.name} failed (exit {result.returncode}); "
                f"error log {self.error_log}:\n{log_tail(self.error_log, since=log_start)}"
            )

    def _launch(self, mariadbd: str, timeout: float) -> None:
        """Spawn mariadbd and wait for it; on failure leave nothing running."""
        log_start = file_size(self.error_log)
        with (self.dir / "mariadbd.out").open("ab") as out:
            # Own session: a Ctrl-C in the terminal reaches pytest only, which
            # then stops the server in order instead of it dying mid-test.
            self._proc = subprocess.Popen(
                [mariadbd, f"--defaults-file={self.config_path}"],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # Checking the process first means a server that exited at once (its
        # port taken, say) fails fast instead of being pinged.
        wait_until(lambda: not is_running(self._proc) or self._ping(), timeout)
        if is_running(self._proc) and self._ping():
            return
        exit_code = self._proc.poll()
        self.kill()
        tail = log_tail(self.error_log, since=log_start)
        if exit_code is not None and port_taken(tail):
            raise _PortTakenError(f"port {self.port} of {self.name} was taken")
        state = "did not answer" if exit_code is None else f"exited with {exit_code}"
        raise RuntimeError(
            f"mariadbd {self.name} on port {self.port} {state} within {timeout} s; "
            f"error log {self.error_log}:\n{tail}"
        )

    def _ping(self) -> bool:
        try:
            self._root_connection(timeout=2).close()
        except (pymysql.err.MySQLError, OSError):
            return False
        return True

    def _root_connection(self, timeout: float) -> pymysql.connections.Connection[Any]:
        # root@localhost authenticates with unix_socket: PyMySQL only needs to
        # connect over the socket as OS root, no password.
        return pymysql.connect(
            unix_socket=str(self.socket_path),
            user="root",
            autocommit=True,
            client_flag=CLIENT.MULTI_STATEMENTS,
            connect_timeout=min(timeout, 5),
            read_timeout=timeout,
            write_timeout=timeout,
        )


class MariaDBPair:
    """A GTID primary and replica, with accounts: app/apppw (narrow grants
    SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER on app.*),
    repl/replpw (REPLICATION SLAVE, REPLICATION CLIENT), resil/resilpw (ALL
    PRIVILEGES ON *.* WITH GRANT OPTION - the admin user), all @'127.0.0.1';
    database `app` exists. Users are created on the primary before replication
    starts so both servers have them.

    The replica runs with ``read_only=1``. Because ``app`` has neither SUPER nor
    READ_ONLY ADMIN, read_only really stops its writes; it does not stop
    ``resil`` or root.
    """

    def __init__(self, base_dir: Path, semi_sync: bool = False) -> None:
        """Describe the pair under ``base_dir``; nothing runs until ``start()``.

        Args:
            base_dir: an existing directory; servers use ``primary/`` and ``replica/``.
            semi_sync: enable semi-synchronous replication (10 s master timeout).
        """
        self.base_dir = Path(base_dir)
        self.semi_sync = semi_sync
        self.primary = MariaDB(self.base_dir, "primary", server_id=1)
        self.replica = MariaDB(self.base_dir, "replica", server_id=2)

    def __repr__(self) -> str:
        return f"MariaDBPair(primary={self.primary!r}, replica={self.replica!r})"

    def __enter__(self) -> MariaDBPair:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start both servers, create the accounts, replicate, wait for catch-up.

        On failure both servers are stopped and their directories removed.
        """
        try:
            _in_parallel(self.primary.start, self.replica.start)
            self.primary.root_sql(_accounts_sql())
            self._start_replication()
            self.wait_caught_up(timeout=30)
            if self.semi_sync:
                self._enable_semi_sync()
        except BaseException:
            self.stop()
            raise

    def wait_caught_up(self, timeout: float = 10.0) -> None:
        """Wait until the replica has applied everything the primary binlogged.

        Raises:
            TimeoutError: with the replica's replication errors, if any.
        """
        pos = self.primary.gtid_binlog_pos()
        if not pos:
            return
        result = self.replica.root_sql(
            f"SELECT MASTER_GTID_WAIT('{pos}', {timeout})", timeout=timeout + 10
        )[0][0]
        if result != 0:
            raise TimeoutError(
                f"replica did not reach {pos} within {timeout} s: {self._replication_errors()}"
            )

    def stop(self) -> None:
        """Stop both servers by PID and delete their directories; idempotent."""
        _in_parallel(self.primary.destroy, self.replica.destroy)

    # ------------------------------------------------------------ internals

    def _start_replication(self) -> None:
        # MASTER_CONNECT_RETRY=1: after a test restarts the primary the replica
        # reconnects within a second instead of the default 60.
        self.replica.root_sql(
            "SET GLOBAL read_only=1;"
            f"CHANGE MASTER TO MASTER_HOST='{self.primary.host}', MASTER_PORT={self.primary.port},"
            f" MASTER_USER='{REPL_USER}', MASTER_PASSWORD='{REPL_PASSWORD}',"
            " MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;"
            "START SLAVE"
        )

    def _enable_semi_sync(self) -> None:
        # 10 s: longer than a default `resil monitor` needs to detect a dead primary and
        # fail over (7.5 s with its margin). Shorter, a primary cut off from its replica
        # falls back to asynchronous replication before the failover, and what it then
        # acknowledges can be lost (`resil doctor` calls that a problem).
        self.primary.root_sql(
            "SET GLOBAL rpl_semi_sync_master_enabled=ON;"
            "SET GLOBAL rpl_semi_sync_master_timeout=10000"
        )
        # The IO thread only negotiates semi-sync when it connects.
        self.replica.root_sql(
            "SET GLOBAL rpl_semi_sync_slave_enabled=ON; STOP SLAVE IO_THREAD; START SLAVE IO_THREAD"
        )
        if not wait_until(lambda: self._semi_sync_clients() >= 1, timeout=10):
            raise RuntimeError(f"semi-sync replica never connected: {self._replication_errors()}")

    def _semi_sync_clients(self) -> int:
        rows = self.primary.root_sql("SHOW STATUS LIKE 'Rpl_semi_sync_master_clients'")
        return int(rows[0][1])

    def _replication_errors(self) -> str:
        status = self.replica.slave_status()
        wanted = ("Slave_IO_Running", "Slave_SQL_Running", "Last_IO_Error", "Last_SQL_Error")
        return ", ".join(f"{key}={status.get(key)!r}" for key in wanted)


def _accounts_sql() -> str:
    """SQL that creates the pair's accounts and the app database.

    Run on the primary before replication starts: it lands in the binlog and
    so the replica replays it, and both servers end up with the same accounts.
    """
    host = "'127.0.0.1'"
    return (
        f"CREATE USER '{REPL_USER}'@{host} IDENTIFIED BY '{REPL_PASSWORD}';"
        f"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{REPL_USER}'@{host};"
        f"CREATE USER '{APP_USER}'@{host} IDENTIFIED BY '{APP_PASSWORD}';"
        "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER"
        f" ON `{APP_DATABASE}`.* TO '{APP_USER}'@{host};"
        f"CREATE USER '{ADMIN_USER}'@{host} IDENTIFIED BY '{ADMIN_PASSWORD}';"
        f"GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@{host} WITH GRANT OPTION;"
        f"CREATE DATABASE `{APP_DATABASE}`"
    )


def _in_parallel(*calls: Callable[[], None]) -> None:
    """Run the no-argument ``calls`` in threads; re-raise the first failure after all end.

    Starting two servers concurrently halves the pair's start-up: data
    directory creation and server start are each about a second.
    """
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="mariadb") as pool:
        futures = [pool.submit(call) for call in calls]
    for future in futures:
        future.result()
