"""What a switch waits for (resil.ops.fleet.Pending): the agents take themselves off the
wait with their marks; a look at the stragglers stops waiting for the dead, and for an
agent that never marks but whose heartbeat shows it done."""

from __future__ import annotations

import os
import socket
import time
import uuid

import pytest

from resil.config import load_config
from resil.control import open_control_plane
from resil.ops import fleet
from resil.ops.fleet import Pending

CONFIG = """
unit = "a"
[resources.db]
kind = "mysql"
primary = "a"
endpoints = { a = "127.0.0.1:3306", b = "127.0.0.1:3307" }
"""


@pytest.fixture(params=["file", "redis"])
def plane(request, write_config, tmp_path):
    config = load_config(write_config(CONFIG), env={})
    if request.param == "file":
        url = (tmp_path / "state.json").as_uri()
    else:
        port = request.getfixturevalue("redis_pair").primary.port
        url = f"redis://127.0.0.1:{port}/0?prefix=p{uuid.uuid4().hex[:8]}"
    made = open_control_plane(url, config.topology, None)
    yield made
    made.close()


def test_marks_take_agents_off_the_wait_and_a_look_finds_the_rest(plane, monkeypatch):
    now = time.time()

    def beat(agent_id: str, age: float = 0.0, epoch: int = 4, busy: int = 0) -> None:
        plane.report({"id": agent_id, "host": socket.gethostname() + "-x",
                      "pid": os.getpid(), "started_at": now, "reported_at": now - age,
                      "epoch": epoch, "in_flight": {"db": busy}})
    for agent_id in ("fast", "slow", "busy", "old"):
        beat(agent_id)
    beat("dead", age=60)                              # stopped reporting a minute ago
    plane.mark("db", "gone:1", 1, 0)                  # an agent long gone: its mark
    pending = Pending.start(plane, "db", 1.0, "drain", "sw1", plane.agent_ids())
    assert pending.seen == 5 and plane.marks("db", ["gone:1"]) == {}   # forgotten
    assert not pending.check(5, idle=True) and pending.left == 5
    plane.mark("db", "fast", 5, 0, arrived=("drain", "sw1"))
    plane.mark("db", "busy", 5, 2)                    # under the lock, still busy
    plane.mark("db", "slow", 4, 0)                    # not there yet
    beat("old", epoch=5)                              # never marks: its heartbeat says
    assert not pending.check(5, idle=True) and pending.left == 4
    monkeypatch.setattr(fleet, "LOOK_EVERY", 0.0)     # look at the stragglers now
    assert not pending.check(5, idle=True)
    assert pending.left == 2 and pending.seen == 4    # "dead" dropped, "old" done
    assert pending.behind == ["slow"] and pending.busy == 2
    plane.mark("db", "slow", 5, 0, arrived=("drain", "sw1"))
    plane.mark("db", "busy", 5, 0, arrived=("drain", "sw1"))
    monkeypatch.setattr(fleet, "LOOK_EVERY", 60.0)    # done without another look:
    assert pending.check(5, idle=True)
    assert pending.behind == [] and pending.busy == 0  # what the last look found is over
    pending.finish()
    assert plane.expected("drain", "db", "sw1") == (0, [])


def test_a_wait_reads_the_same_at_any_fleet_size(redis_pair, write_config):
    """One round is a counter read, however many agents are waited for."""
    config_plane = open_control_plane(
        f"redis://127.0.0.1:{redis_pair.primary.port}/0?prefix=q{uuid.uuid4().hex[:8]}",
        load_config(write_config(CONFIG), env={}).topology, None)
    try:
        ids = {f"a:{i}" for i in range(3000)}
        pending = Pending.start(config_plane, "db", 1.0, "verify", "sw2", ids)
        client = redis_pair.primary.client()
        before = client.info("stats")["total_net_output_bytes"]
        for _ in range(10):
            assert not pending.check(7, idle=False)
        sent = client.info("stats")["total_net_output_bytes"] - before
        assert pending.left == 3000
        assert sent < 10 * 200, sent                  # a count per round, not 3,000 names
    finally:
        config_plane.close()

