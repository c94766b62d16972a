"""A playground for the quickstart: two MariaDB and two Redis servers on loopback.

    python servers.py up DIR      # start them, write DIR/resil.toml, print the passwords
    python servers.py down DIR    # stop them (by the PIDs in DIR/servers.json)

Unit ``beijing`` holds both primaries, unit ``hangzhou`` a replica of each: MariaDB with
GTID and semi-synchronous replication, set up as docs/operations/switch.md describes,
and Redis with ``replicaof``. The servers run as your user in DIR (any free ports on
127.0.0.1) and keep running after ``up`` returns, so that you can try every command of
the README by hand. Needs the ``mariadbd`` and ``redis-server`` binaries (Debian:
``apt-get install mariadb-server redis-server``) and the PyMySQL and redis-py packages
(the quickstart's app uses them too); nothing of resil's.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pymysql
import redis

UNITS = ("beijing", "hangzhou")
#: The passwords of the accounts created here, by the variables resil.toml names.
PASSWORDS = {"RESIL_DB_ADMIN_PASSWORD": "resil-admin-pw", "RESIL_DB_REPL_PASSWORD": "repl-pw"}
APP_USER, APP_PASSWORD = "app", "apppw"

MY_CNF = """\
[mariadb]
datadir = {dir}/data
socket = {dir}/mysqld.sock
pid-file = {dir}/mysqld.pid
log-error = {dir}/error.log
tmpdir = {dir}
port = {port}
bind-address = 127.0.0.1
skip-name-resolve
innodb_buffer_pool_size = 64M
performance_schema = OFF
server_id = {server_id}
log_bin = mysql-bin
binlog_format = ROW
log_slave_updates = ON
gtid_strict_mode = ON
slave_parallel_threads = 4
slave_parallel_mode = optimistic
rpl_semi_sync_master_enabled = ON
rpl_semi_sync_master_timeout = 1000
rpl_semi_sync_slave_enabled = ON
"""

ACCOUNTS = f"""
CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY '{PASSWORDS["RESIL_DB_REPL_PASSWORD"]}';
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'repl'@'127.0.0.1';
CREATE USER 'resil'@'127.0.0.1' IDENTIFIED BY '{PASSWORDS["RESIL_DB_ADMIN_PASSWORD"]}';
GRANT ALL PRIVILEGES ON *.* TO 'resil'@'127.0.0.1';
CREATE DATABASE app;
CREATE USER '{APP_USER}'@'127.0.0.1' IDENTIFIED BY '{APP_PASSWORD}';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON app.* TO '{APP_USER}'@'127.0.0.1';
"""

RESIL_TOML = """\
unit = "beijing"

[control]
url = "{state}"

[resources.orders-db]
kind = "mysql"
primary = "beijing"
endpoints = {{ beijing = "127.0.0.1:{mysql[0]}", hangzhou = "127.0.0.1:{mysql[1]}" }}
aliases = ["orders-db"]
admin_user = "resil"
admin_password_env = "RESIL_DB_ADMIN_PASSWORD"
replication_user = "repl"
replication_password_env = "RESIL_DB_REPL_PASSWORD"

[resources.cache]
kind = "redis"
primary = "beijing"
endpoints = {{ beijing = "127.0.0.1:{redis[0]}", hangzhou = "127.0.0.1:{redis[1]}" }}
aliases = ["cache"]
"""


def binary(name: str) -> str:
    found = shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if found is None:
        raise SystemExit(f"servers.py: {name} is not installed "
                         "(Debian: apt-get install mariadb-server redis-server)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(what: str, ready, pid: int, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise SystemExit(f"servers.py: {what} did not come up; {log}:\n{tail}")


def root_sql(server: Path, sql: str) -> list[tuple]:
    """Statements as the database's root over its unix socket (root has no TCP login)."""
    user = "root" if os.geteuid() == 0 else getpass.getuser()
    conn = pymysql.connect(unix_socket=str(server / "mysqld.sock"), user=user,
                           autocommit=True, client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def start_mariadb(base: Path, name: str, server_id: int) -> tuple[int, int]:
    server = base / name
    server.mkdir(parents=True)
    port = free_port()
    cnf = server / "my.cnf"
    cnf.write_text(MY_CNF.format(dir=server, port=port, server_id=server_id)
                   + ("user = root\n" if os.geteuid() == 0 else ""))
    subprocess.run([binary("mariadb-install-db"), f"--defaults-file={cnf}", "--skip-test-db"],
                   check=True, capture_output=True)
    proc = subprocess.Popen([binary("mariadbd"), f"--defaults-file={cnf}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)

    def answers() -> bool:
        try:
            root_sql(server, "SELECT 1")
            return True
        except pymysql.MySQLError:
            return False
    wait(f"mariadbd {name}", answers, proc.pid, server / "error.log")
    return proc.pid, port


def start_redis(base: Path, name: str, replica_of: int | None) -> tuple[int, int]:
    server = base / name
    server.mkdir(parents=True)
    port = free_port()
    command = [binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
               "--dir", str(server), "--logfile", str(server / "redis.log"), "--save", "",
               "--repl-diskless-sync-delay", "0"]
    if replica_of is not None:
        command += ["--replicaof", "127.0.0.1", str(replica_of)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)

    def answers() -> bool:
        try:
            info = redis.Redis(port=port, socket_timeout=1).info("replication")
        except redis.RedisError:
            return False
        return replica_of is None or info.get("master_link_status") == "up"
    wait(f"redis-server {name}", answers, proc.pid, server / "redis.log")
    return proc.pid, port


def up(base: Path) -> dict[str, object]:
    """Start the four servers in ``base`` (which must not hold any yet); write resil.toml."""
    base.mkdir(parents=True, exist_ok=True)
    if (base / "servers.json").exists():
        raise SystemExit(f"servers.py: {base} already has servers; `down` them first")
    pids: list[int] = []
    try:
        mysql = []
        for server_id, unit in enumerate(UNITS, 1):
            pid, port = start_mariadb(base, f"mysql-{unit}", server_id)
            pids.append(pid)
            mysql.append(port)
        primary, replica = (base / f"mysql-{unit}" for unit in UNITS)
        root_sql(primary, ACCOUNTS)
        root_sql(replica, "SET GLOBAL read_only = 1; CHANGE MASTER TO MASTER_HOST = '127.0.0.1',"
                 f" MASTER_PORT = {mysql[0]}, MASTER_USER = 'repl', MASTER_PASSWORD ="
                 f" '{PASSWORDS['RESIL_DB_REPL_PASSWORD']}', MASTER_USE_GTID = slave_pos,"
                 " MASTER_CONNECT_RETRY = 1; START SLAVE")
        position = root_sql(primary, "SELECT @@gtid_binlog_pos")[0][0]
        if root_sql(replica, f"SELECT MASTER_GTID_WAIT('{position}', 30)")[0][0] != 0:
            raise SystemExit("servers.py: the MariaDB replica did not catch up")
        redis = []
        for unit in UNITS:
            pid, port = start_redis(base, f"redis-{unit}", redis[0] if redis else None)
            pids.append(pid)
            redis.append(port)
    except BaseException:
        stop(pids)
        raise
    info = {"pids": pids, "mysql": mysql, "redis": redis}
    (base / "servers.json").write_text(json.dumps(info))
    (base / "resil.toml").write_text(RESIL_TOML.format(
        state=(base / "resil-state.json").as_uri(), mysql=mysql, redis=redis))
    return info


def stop(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 15
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def down(base: Path) -> None:
    """Stop the servers ``up`` started in ``base`` and remove the directory."""
    found = base / "servers.json"
    if not found.exists():
        raise SystemExit(f"servers.py: no servers in {base}")
    stop(json.loads(found.read_text())["pids"])
    shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    base = Path(argv[1]).resolve()
    if argv[0] == "down":
        down(base)
        return 0
    info = up(base)
    print(f"MariaDB  beijing 127.0.0.1:{info['mysql'][0]}  ->  hangzhou 127.0.0.1:"
          f"{info['mysql'][1]} (GTID, semi-sync)")
    print(f"Redis    beijing 127.0.0.1:{info['redis'][0]}  ->  hangzhou 127.0.0.1:"
          f"{info['redis'][1]}")
    print(f"wrote {base / 'resil.toml'}; the operator commands need:")
    for name, value in PASSWORDS.items():
        print(f"  export {name}={value}")
    print(f"stop them with: python {sys.argv[0]} down {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
