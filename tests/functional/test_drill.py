"""`resil drill switch|kill` on real pairs: a semi-synchronous MariaDB pair and a Redis pair.

The pairs are this module's own: the kill drills destroy their primaries, so they run
last, after the switch drills have moved each primary to b and back to a.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from resil import context
from servers import MariaDBPair, RedisPair
from servers.config import PASSWORDS, resil_toml

RESIL = str(Path(sys.executable).parent / "resil")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    base = tmp_path_factory.mktemp("drill")
    with MariaDBPair(base / "mysql", semi_sync=True) as mysql, RedisPair(base / "redis") as cache:
        yield mysql, cache, base


@pytest.fixture(scope="module")
def config(pairs) -> Path:
    """One configuration and control state for the whole module: primaries move."""
    mysql, cache, base = pairs
    path = base / "resil.toml"
    path.write_text(resil_toml((base / "state.json").as_uri(), mysql=mysql, redis=cache))
    return path


def drill(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RESIL, "drill", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **PASSWORDS})


def report(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert out.returncode == 0, out.stdout + out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    print(f"\n{out.stderr}")
    return data


@pytest.mark.parametrize("resource", ["orders-db", "cache"])
def test_planned_switch_there_and_back(config, resource):
    for old, new in (("a", "b"), ("b", "a")):
        data = report(drill(config, "switch", resource, "--to", new, "--duration", "1",
                            "--json"))
        assert data["drill"] == "switch" and data["ok"], data
        assert (data["old_primary"]["unit"], data["new_primary"]["unit"]) == (old, new)
        assert data["epoch"]["after"] > data["epoch"]["before"]
        assert data["writes"] > 20
        assert data["rpo"] == {"lost_writes": 0, "lost_window_s": 0.0, "lost_seqs": []}
        assert data["client_errors"]["count"] == 0, data["client_errors"]
        assert data["rto_s"] < 1.0, data
        assert [s["name"] for s in data["steps"]] == [
            "precheck", "converge", "spares", "lock", "drain", "fence", "catch-up",
            "promote", "reverse", "publish", "verify"]


def test_the_probe_data_is_removed_unless_kept(pairs, config):
    mysql, cache, _ = pairs
    data = report(drill(config, "switch", "cache", "--to", "b", "--duration", "0.4",
                        "--json", "--keep"))
    kept = f"resil:drill:{data['run']}"
    data = report(drill(config, "switch", "cache", "--to", "a", "--duration", "0.4",
                        "--json"))
    with context.bypass():
        client = cache.primary.client()
        assert client.exists(kept) and not client.exists(f"resil:drill:{data['run']}")
        client.delete(kept)
    rows = mysql.primary.root_sql("SELECT COUNT(*) FROM resil_drill.probe")
    assert rows == [(0,)]


def test_text_output_is_one_line_per_step(config):
    out = drill(config, "switch", "cache", "--to", "b", "--duration", "0.4")
    assert out.returncode == 0, out.stdout + out.stderr
    back = drill(config, "switch", "cache", "--to", "a", "--duration", "0.4")
    assert back.returncode == 0, back.stdout + back.stderr
    names = [line.split()[0] for line in out.stdout.splitlines()]
    assert names[:3] == ["drill", "prepare", "probe"]
    assert "publish" in names and names[-3:] == ["verify", "cleanup", "result"]
    assert "lost write(s)" in out.stdout.splitlines()[-1]


def test_unknown_resource_and_unit_exit_2(config):
    out = drill(config, "switch", "nope", "--to", "b")
    assert out.returncode == 2 and "unknown resource 'nope'" in out.stderr, out.stderr
    out = drill(config, "switch", "cache", "--to", "z")
    assert out.returncode == 2 and "no endpoint in unit 'z'" in out.stderr, out.stderr
    out = drill(config, "kill", "nope")
    assert out.returncode == 2 and "unknown resource 'nope'" in out.stderr, out.stderr


def test_kill_refuses_a_primary_on_another_host(tmp_path):
    path = tmp_path / "remote.toml"
    path.write_text(f'unit = "a"\n[control]\nurl = "{(tmp_path / "s.json").as_uri()}"\n'
                    '[resources.orders-db]\nkind = "mysql"\nprimary = "a"\n'
                    'endpoints = { a = "10.255.255.1:3306", b = "10.255.255.2:3306" }\n'
                    'admin_user = "resil"\n')
    began = time.monotonic()
    out = drill(path, "kill", "orders-db", "--json", "--yes")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "10.255.255.1:3306" in out.stderr and "not an address of this host" in out.stderr
    assert out.stdout == ""
    assert time.monotonic() - began < 5        # no connection attempt, no timeout


def test_kill_asks_for_yes_and_kills_nothing_without_it(pairs, config):
    out = drill(config, "kill", "cache")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "would kill -9 the primary of cache" in out.stderr and "--yes" in out.stderr
    assert "(unit " in out.stderr and "pid " in out.stderr    # which server, which process
    assert pairs[1].primary.client().ping() and pairs[1].replica.client().ping()  # alive


def test_kill_redis_primary(pairs, config):
    data = report(drill(config, "kill", "cache", "--json", "--timeout", "20", "--yes"))
    assert data["monitor"] == "in-process" and data["ok"], data
    assert data["new_primary"]["unit"] == "b"
    assert data["timeline"]["published_s"] is not None
    assert data["rto_s"] < 6.0, data
    # Redis replicates asynchronously: a write acknowledged just before the kill may be
    # lost. It is reported; a single probe writer loses a handful at most.
    assert data["rpo"]["lost_writes"] <= 5, data["rpo"]
    assert "stays down" in data["left_behind"]


def test_kill_semi_sync_mysql_primary(pairs, config):
    mysql = pairs[0]
    # The switches left a the primary. Semi-sync must not fall back to asynchronous while
    # we test "no acknowledged write lost".
    mysql.primary.root_sql("SET GLOBAL rpl_semi_sync_master_timeout = 30000")
    deadline = time.monotonic() + 10
    while mysql.primary.root_sql("SHOW STATUS LIKE 'Rpl_semi_sync_master_status'")[0][1] \
            != "ON":
        assert time.monotonic() < deadline, "semi-sync did not come back on a"
        mysql.primary.root_sql("INSERT INTO resil_drill.probe VALUES (0, 0, 'x');"
                               "DELETE FROM resil_drill.probe WHERE seq = 0")
        time.sleep(0.1)
    data = report(drill(config, "kill", "orders-db", "--json", "--timeout", "20", "--yes"))
    assert data["monitor"] == "in-process" and data["ok"], data
    assert data["new_primary"]["unit"] == "b"
    assert data["killed"]["commands"] == ["mariadbd"]
    assert data["rpo"]["lost_writes"] == 0, data["rpo"]
    assert data["rto_s"] < 6.0, data
    assert data["epoch"]["after"] >= data["epoch"]["before"] + 2   # lock, then publish
