"""Real MariaDB and Redis servers for resil's tests.

Every server runs as a child process on 127.0.0.1 in a temporary directory and
is stopped by its PID: by the pytest fixtures in ``servers.fixtures``, by the
context managers, and in any case when the interpreter exits.
"""

from .mariadb import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    APP_DATABASE,
    APP_PASSWORD,
    APP_USER,
    REPL_PASSWORD,
    REPL_USER,
    MariaDB,
    MariaDBPair,
)
from .ports import KEEP_DIRS_ENV, free_port
from .redis import Redis, RedisPair

__all__ = [
    "ADMIN_PASSWORD",
    "ADMIN_USER",
    "APP_DATABASE",
    "APP_PASSWORD",
    "APP_USER",
    "KEEP_DIRS_ENV",
    "REPL_PASSWORD",
    "REPL_USER",
    "MariaDB",
    "MariaDBPair",
    "Redis",
    "RedisPair",
    "free_port",
]
