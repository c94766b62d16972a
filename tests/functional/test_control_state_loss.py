"""A lost or rolled-back control state must never make `resil monitor` fence the real
primary (the servers are the truth; the control state is a cache of them).

After a planned switch to unit b, the control state is lost (the file deleted) or an
older state is copied back. The monitor then believes a's server — now a read-only
replica — is the primary. Before, it found b writable and fenced it as "came back
writable": no writable server left, a total write outage. Now it must leave b alone and
say that the control state is stale, while an application keeps writing to b.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pymysql
import pytest

import resil
from servers import MariaDBPair
from servers.config import PASSWORDS, resil_toml

BIN = Path(sys.executable).parent


@pytest.fixture
def pair(tmp_path):
    with MariaDBPair(tmp_path / "mysql") as pair:
        pair.primary.root_sql("CREATE TABLE app.w (seq INT PRIMARY KEY)")
        pair.wait_caught_up()
        yield pair


@pytest.fixture
def config(pair, write_config, tmp_path, monkeypatch):
    for key, value in PASSWORDS.items():
        monkeypatch.setenv(key, value)
    return write_config(resil_toml((tmp_path / "state.json").as_uri(), mysql=pair))


def switch_to_b(config: Path) -> None:
    out = subprocess.run([str(BIN / "resil"), "db", "switch", "orders-db", "--to", "b",
                          "--config", str(config)], capture_output=True, text=True,
                         timeout=90, env={**os.environ, **PASSWORDS})
    assert out.returncode == 0, out.stdout + out.stderr


def read_only(server) -> int:
    return int(server.root_sql("SELECT @@read_only")[0][0])


@pytest.mark.parametrize("tamper", ["deleted", "rolled_back"])
def test_a_lost_control_state_never_gets_the_real_primary_fenced(pair, config, tmp_path,
                                                                 tamper):
    state_file = tmp_path / "state.json"
    old_copy = tmp_path / "old-state.json"
    resil.start(config)
    conn = pymysql.connect(host="orders-db", user="app", password="apppw", database="app",
                           autocommit=True, connect_timeout=5)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO w VALUES (0)")          # publishes nothing yet
    if state_file.exists():
        shutil.copy(state_file, old_copy)
    switch_to_b(config)
    assert read_only(pair.replica) == 0 and read_only(pair.primary) == 1

    errors: list[Exception] = []
    acked: list[int] = []
    stop = threading.Event()

    def write() -> None:
        seq = 1
        while not stop.is_set():
            try:
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO w VALUES (%s)", (seq,))
                acked.append(seq)
            except Exception as exc:   # counted: the test asserts there are none
                errors.append(exc)
            seq += 1
            time.sleep(0.01)

    writer = threading.Thread(target=write)
    writer.start()
    if tamper == "deleted" or not old_copy.exists():
        state_file.unlink()
    else:
        shutil.copy(old_copy, state_file)
    log_path = tmp_path / "monitor.log"
    with open(log_path, "w") as log:
        monitor = subprocess.Popen(
            [str(BIN / "resil"), "monitor", "--config", str(config), "--interval", "0.2",
             "--failures", "2", "--timeout", "0.5", "--lease-ttl", "2"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **PASSWORDS})
        try:
            deadline = time.monotonic() + 15
            while "control state is stale" not in log_path.read_text():
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            time.sleep(1.5)              # several more rounds: still nothing fenced
        finally:
            monitor.terminate()
            monitor.wait(10)
            stop.set()
            writer.join(10)
    text = log_path.read_text()
    assert read_only(pair.replica) == 0, text           # the real primary stays writable
    assert "came back writable" not in text, text
    assert text.count("control state is stale") == 1, text    # said once, not each round
    assert not errors, errors[:3]
    assert len(acked) > 50
    rows = {r[0] for r in pair.replica.root_sql("SELECT seq FROM app.w")}
    assert set(acked) <= rows                           # no acknowledged write lost
