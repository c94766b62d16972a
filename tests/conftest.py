"""Shared fixtures. Real servers come from the ``servers`` package (tests/servers)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from resil import registry

pytest_plugins = ["servers.fixtures"]


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
