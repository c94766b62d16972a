"""What agents leave in the control plane for the fleet-wide questions, on both backends:
the ids of the live agents, a parent's workers, the marks a switch waits on, and the
load and applied epochs summed per window. Every one of these is read without reading
the whole fleet (on Redis); the file backend answers the same questions for one machine.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from resil.config import load_config
from resil.control import ControlPlane, open_control_plane
from resil.topology import Topology

CONFIG = """
unit = "a"
[resources.db]
kind = "mysql"
primary = "a"
endpoints = { a = "127.0.0.1:3306", b = "127.0.0.1:3307" }
"""


class Clock:
    """A settable clock (the windows are the plane's clock's)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["file", "redis"])
def made(request: Any, tmp_path: Path, write_config: Callable[[str], Path]
         ) -> Iterator[tuple[ControlPlane, Clock]]:
    topology: Topology = load_config(write_config(CONFIG), env={}).topology
    clock = Clock()
    if request.param == "file":
        url = (tmp_path / "state.json").as_uri()
    else:
        server = request.getfixturevalue("redis_pair").primary
        url = f"redis://127.0.0.1:{server.port}/0?prefix=f{uuid.uuid4().hex[:10]}"
    plane = open_control_plane(url, topology, None, clock=clock, agent_ttl=10.0)
    yield plane, clock
    plane.close()


def beat(agent_id: str, clock: Clock, **fields: Any) -> dict[str, Any]:
    # The file backend removes heartbeats of dead local processes: use this one's pid.
    import os
    import socket
    return {"id": agent_id, "host": socket.gethostname() + "-elsewhere", "pid": os.getpid(),
            "started_at": clock.now, "reported_at": clock.now, "epoch": 1, **fields}


def test_ids_heartbeats_and_children(made: tuple[ControlPlane, Clock]) -> None:
    plane, clock = made
    plane.report(beat("m:1", clock, utilization=0.5))
    plane.report(beat("m:2", clock, parent="m:1", requests={"in_flight": 1}))
    plane.report(beat("m:3", clock, parent="m:1"))
    plane.report(beat("x:9", clock, parent="x:8"))
    assert plane.agent_ids() == {"m:1", "m:2", "m:3", "x:9"}
    assert set(plane.heartbeats(["m:2", "gone:1"])) == {"m:2"}
    assert plane.heartbeats([]) == {}
    assert sorted(b["id"] for b in plane.children("m:1")) == ["m:2", "m:3"]
    plane.retire("m:3")                       # a worker that stopped
    assert [b["id"] for b in plane.children("m:1")] == ["m:2"]
    assert plane.children("nobody:1") == []


def test_marks_are_per_resource_and_read_for_the_asked_agents(
        made: tuple[ControlPlane, Clock]) -> None:
    plane, _ = made
    plane.mark("db", "m:1", 7, 2)
    plane.mark("db", "m:2", 6, 0)
    plane.mark("cache", "m:1", 5, 0)
    plane.mark("db", "m:1", 8, 0)             # a later mark replaces the earlier
    assert plane.marks("db", ["m:1", "m:2", "m:3"]) == {"m:1": (8, 0), "m:2": (6, 0)}
    assert plane.marks("cache", ["m:1"]) == {"m:1": (5, 0)}
    assert plane.marks("db", []) == {}


def test_load_and_applied_epochs_are_summed_per_window(
        made: tuple[ControlPlane, Clock]) -> None:
    plane, clock = made
    clock.now = 1_000_000.0                   # the start of a 10 s window
    for _ in range(3):                        # three heartbeats each: counted once
        for i, (unit, utilization) in enumerate([("a", 0.5), ("a", 0.7), ("b", 0.2)]):
            plane.report(beat(f"i:{i}", clock, unit=unit, utilization=utilization,
                              epoch=4 + i))
        plane.report(beat("w:1", clock, unit="a", utilization=None, epoch=9))  # a worker
        plane.report(beat("o:1", clock, unit="a", utilization=0.9, service="other"))
        clock.now += 3
    assert plane.applied_epoch() == 9
    clock.now += 2                            # the window completed
    load = plane.fleet_load("default")
    assert set(load) == {"a", "b"}
    assert load["a"][0] == 2 and load["a"][1] == pytest.approx(1.2)
    assert load["b"][0] == 1 and load["b"][1] == pytest.approx(0.2)
    assert plane.fleet_load("other")["a"][0] == 1
    assert plane.fleet_load("nobody") == {}
    assert plane.applied_epoch() == 9


def test_a_forged_epoch_is_not_believed(made: tuple[ControlPlane, Clock]) -> None:
    plane, clock = made
    plane.report(beat("ok:1", clock, epoch=12))
    plane.report(beat("forged:1", clock, epoch=2**60))
    assert plane.applied_epoch() == 12
