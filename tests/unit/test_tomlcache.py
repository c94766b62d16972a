"""The parsed configuration file is kept per content, and never read stale.

Each case runs ``load_config`` in a fresh interpreter (the cache's point is that a new
process need not import ``tomllib``) with its own ``XDG_CACHE_HOME``, and prints the
unit it read and whether ``tomllib`` was imported."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from resil import _tomlcache

CONFIG = """unit = "{unit}"
[control]
url = "{url}"
[admin]
listen = "off"
[resources.db]
kind = "mysql"
endpoints = {{ a = "127.0.0.1:3306", b = "127.0.0.1:3307" }}
primary = "a"
"""

LOAD = """
import json, sys
from resil.config import load_config
config = load_config(sys.argv[1], {})
print(json.dumps([config.unit, "tomllib" in sys.modules]))
"""


def load(path: Path, cache: Path) -> tuple[str, bool]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    done = subprocess.run([sys.executable, "-c", LOAD, str(path)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    unit, parsed = json.loads(done.stdout)
    return unit, parsed


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "resil.toml"
    path.write_text(CONFIG.format(unit="a", url=(tmp_path / "state.json").as_uri()))
    return path


def entries(cache: Path) -> list[Path]:
    return sorted((cache / "resil").glob("config-*.marshal"))


def test_a_second_start_reads_the_kept_tables_without_tomllib(config, tmp_path):
    cache = tmp_path / "cache"
    assert load(config, cache) == ("a", True)
    assert load(config, cache) == ("a", False)
    [entry] = entries(cache)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert stat.S_IMODE((cache / "resil").stat().st_mode) == 0o700


def test_an_edit_is_read_even_with_the_same_size_and_timestamps(config, tmp_path):
    cache = tmp_path / "cache"
    assert load(config, cache) == ("a", True)
    before = config.stat()
    config.write_text(config.read_text().replace('unit = "a"', 'unit = "b"'))
    os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert config.stat().st_size == before.st_size
    assert load(config, cache) == ("b", True)
    assert load(config, cache) == ("b", False)


def test_a_corrupt_or_foreign_entry_is_ignored(config, tmp_path):
    cache = tmp_path / "cache"
    load(config, cache)
    [entry] = entries(cache)
    entry.write_bytes(b"\x00garbage")
    assert load(config, cache) == ("a", True)     # parsed again, and kept again
    assert load(config, cache) == ("a", False)
    # An entry others may write is not trusted, whatever it holds.
    good = entry.read_bytes()
    entry.chmod(0o666)
    assert load(config, cache) == ("a", True)
    entry.write_bytes(good)
    entry.chmod(0o600)
    assert load(config, cache) == ("a", False)


def test_no_cache_where_none_can_be_kept(config, tmp_path, monkeypatch):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder")    # the cache folder cannot be made
    assert load(config, blocked) == ("a", True)
    assert load(config, blocked) == ("a", True)
    monkeypatch.chdir(tmp_path)
    assert load(config, Path("relative")) == ("a", True)  # a relative XDG_CACHE_HOME: unused
    assert not (tmp_path / "relative").exists()


def test_invalid_toml_is_still_a_configuration_error(tmp_path, write_config):
    from resil.config import load_config
    from resil.errors import ConfigError
    path = write_config('unit = "a"\n[control\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, {})
    path.write_bytes(b'unit = "\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path, {})


def test_dates_are_parsed_every_time(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = b"when = 2026-12-02T10:00:00Z\n"
    first = _tomlcache.parse(data, str(tmp_path / "x.toml"))
    assert entries(tmp_path / "cache") == []       # marshal cannot hold a datetime
    assert _tomlcache.parse(data, str(tmp_path / "x.toml")) == first
