"""Shared fixtures. Real servers come from the ``servers`` package (tests/servers)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from resil import registry
from servers.config import resil_toml

pytest_plugins = ["servers.fixtures"]

# The parsed configuration files the agents keep (resil._tomlcache) go to a folder of
# this test run, not the home of whoever runs it; every process the tests start inherits
# it. It is removed when the run ends.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="resil-test-cache-")


def _remove_test_cache(folder: str = os.environ["XDG_CACHE_HOME"], pid: int = os.getpid()) -> None:
    if os.getpid() == pid:      # not in a forked child that exits normally
        shutil.rmtree(folder, ignore_errors=True)


atexit.register(_remove_test_cache)


@pytest.fixture(autouse=True)
def _reset_resil() -> Iterator[None]:
    """Every test starts and ends with no agent and no recorded faults."""
    registry.reset()
    yield
    registry.reset()


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write a resil.toml (dedented) into the test's temp dir and return its path."""
    def write(text: str, name: str = "resil.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path
    return write




@pytest.fixture
def pair_config(write_config, mariadb_pair, redis_pair, tmp_path) -> Path:
    """A two-unit resil.toml over the real MariaDB and Redis pairs (primaries in unit a)."""
    return write_config(resil_toml(
        (tmp_path / "state.json").as_uri(), mysql=mariadb_pair, redis=redis_pair,
        mysql_aliases=("orders-db", "mysql.internal:3306"), control="poll_interval = 0.02"))


@pytest.fixture
def publish(pair_config) -> Callable[..., int]:
    """Publish a control state with the given primaries; returns the new epoch."""
    from resil.config import load_config
    from resil.control import open_control_plane
    from resil.state import ControlState, issuer

    config = load_config(pair_config, env={})
    plane = open_control_plane(config.control_url, config.topology, config.signing_key)

    def do(**primaries: str) -> int:
        signal = plane.load()
        state = signal.state if signal else ControlState.initial(config.topology)
        new = state.evolve(primaries={**state.primaries,
                                      **{k.replace("_", "-"): v for k, v in primaries.items()}})
        return plane.publish(new, issuer=issuer()).epoch
    return do
