"""A ``resil.toml`` for real server pairs: one builder for tests, benchmarks and the demo.

Unit ``a`` (the first of ``units``) holds each pair's primary, unit ``b`` its replica.
The mysql resource is ``orders-db`` and the redis one ``cache``; the application reaches
them by those names (aliases) only.
"""

from __future__ import annotations

from .mariadb import MariaDBPair
from .redis import RedisPair

#: Environment variables holding the admin and replication passwords of ``orders-db``.
ADMIN_PASSWORD_ENV = "RESIL_TEST_ADMIN_PW"
REPL_PASSWORD_ENV = "RESIL_TEST_REPL_PW"
#: Their values for the accounts the pairs create.
PASSWORDS = {ADMIN_PASSWORD_ENV: "resilpw", REPL_PASSWORD_ENV: "replpw"}


def resil_toml(state: str, *, mysql: MariaDBPair | None = None,
               redis: RedisPair | None = None, units: tuple[str, str] = ("a", "b"),
               mysql_aliases: tuple[str, ...] = ("orders-db",),
               control: str = "poll_interval = 0.01\nheartbeat_interval = 0.2",
               admin: str = "127.0.0.1:0") -> str:
    """The configuration text; ``state`` is the control URL (e.g. a ``file://`` URI).

    The admin endpoint listens on any free port by default, so that processes of
    several tests never compete for one.
    """
    a, b = units
    text = (f'unit = "{a}"\n\n[control]\nurl = "{state}"\n{control}\n'
            f'\n[admin]\nlisten = "{admin}"\n')
    if mysql is not None:
        aliases = ", ".join(f'"{alias}"' for alias in mysql_aliases)
        text += (
            f'\n[resources.orders-db]\nkind = "mysql"\nprimary = "{a}"\n'
            f'endpoints = {{ {a} = "127.0.0.1:{mysql.primary.port}", '
            f'{b} = "127.0.0.1:{mysql.replica.port}" }}\n'
            f"aliases = [{aliases}]\n"
            f'admin_user = "resil"\nadmin_password_env = "{ADMIN_PASSWORD_ENV}"\n'
            f'replication_user = "repl"\nreplication_password_env = "{REPL_PASSWORD_ENV}"\n')
    if redis is not None:
        text += (
            f'\n[resources.cache]\nkind = "redis"\nprimary = "{a}"\n'
            f'endpoints = {{ {a} = "127.0.0.1:{redis.primary.port}", '
            f'{b} = "127.0.0.1:{redis.replica.port}" }}\n'
            'aliases = ["cache"]\n')
    return text
