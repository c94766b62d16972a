"""Pytest fixtures for real servers; load with ``pytest_plugins = ["servers.fixtures"]``.

The pairs are session-scoped because starting them costs a second or two. A
test that changes a shared server (read_only, a stop, a freeze) must put it
back; tests that need to break servers should start their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from .mariadb import APP_USER, MariaDBPair
from .ports import stop_servers_on_sigterm
from .redis import RedisPair

_RESTORE_SIGTERM = pytest.StashKey[Callable[[], None]]()


def pytest_configure(config: pytest.Config) -> None:
    """Let a SIGTERMed test run still stop its servers (see ``stop_servers_on_sigterm``)."""
    config.stash[_RESTORE_SIGTERM] = stop_servers_on_sigterm()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Put the SIGTERM handler back as it was."""
    restore = config.stash.get(_RESTORE_SIGTERM, None)
    if restore is not None:
        restore()


@pytest.fixture(scope="session")
def mariadb_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBPair]:
    """A running MariaDB primary/replica pair (no semi-sync), shared by the session."""
    with MariaDBPair(tmp_path_factory.mktemp("mariadb")) as pair:
        yield pair


@pytest.fixture(scope="session")
def redis_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisPair]:
    """A running Redis primary/replica pair, shared by the session."""
    with RedisPair(tmp_path_factory.mktemp("redis")) as pair:
        yield pair


@pytest.fixture
def mysql_db(mariadb_pair: MariaDBPair) -> Iterator[str]:
    """The name of a fresh, empty database on the pair, on the replica too.

    The app user has all privileges on it. It is dropped after the test.
    """
    name = f"t_{uuid.uuid4().hex[:12]}"
    account = f"'{APP_USER}'@'127.0.0.1'"
    mariadb_pair.primary.root_sql(
        f"CREATE DATABASE `{name}`; GRANT ALL PRIVILEGES ON `{name}`.* TO {account}"
    )
    mariadb_pair.wait_caught_up()
    yield name
    # DROP DATABASE leaves database-level grants behind: revoke them too.
    mariadb_pair.primary.root_sql(
        f"DROP DATABASE IF EXISTS `{name}`; REVOKE ALL PRIVILEGES ON `{name}`.* FROM {account}"
    )
    mariadb_pair.wait_caught_up()
