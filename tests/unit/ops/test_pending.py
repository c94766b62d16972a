"""What a switch waits for (resil.ops.fleet.Pending), on the file control plane: the
marks of the agents still waited for, a heartbeat for an agent that never marked, and
no wait at all for an agent that died."""

from __future__ import annotations

import os
import socket
import time

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


def test_marks_heartbeats_and_the_dead(write_config, tmp_path, monkeypatch):
    config = load_config(write_config(CONFIG), env={})
    plane = open_control_plane((tmp_path / "state.json").as_uri(), config.topology, None)
    now = time.time()

    def beat(agent_id: str, age: float = 0.0, **fields: object) -> None:
        plane.report({"id": agent_id, "host": socket.gethostname() + "-x", "pid": os.getpid(),
                      "started_at": now, "reported_at": now - age, **fields})
    for agent_id in ("done", "behind", "busy", "old", "dead"):
        beat(agent_id, age=60 if agent_id == "dead" else 0,
             epoch=5, in_flight={"db": 0})
    plane.mark("db", "done", 5, 0)
    plane.mark("db", "behind", 4, 2)
    plane.mark("db", "busy", 5, 2)
    plane.mark("db", "dead", 4, 0)
    # "old" never marks (an agent of an earlier version): its heartbeat says epoch 5, idle.
    pending = Pending.start(plane, "db", interval=1.0)
    assert pending.seen == 5
    assert not pending.check(5, idle=True)
    assert pending.waiting == {"behind", "busy", "dead"}
    assert pending.behind == ["behind", "dead"] and pending.busy == 2
    monkeypatch.setattr(fleet, "LOOK_EVERY", 0.0)     # the stragglers are looked at
    assert not pending.check(5, idle=True)
    assert pending.waiting == {"behind", "busy"} and pending.seen == 4    # dead: dropped
    plane.mark("db", "behind", 5, 0)
    plane.mark("db", "busy", 5, 0)
    assert pending.check(5, idle=True)
    assert pending.behind == [] and pending.busy == 0
    # Verify asks only for the epoch: open transactions do not matter there.
    plane.mark("db", "busy", 6, 3)
    verify = Pending.start(plane, "db", interval=1.0)
    assert not verify.check(6, idle=False)
    assert "busy" not in verify.waiting
