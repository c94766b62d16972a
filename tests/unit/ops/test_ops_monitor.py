"""The parts of `resil monitor` that need no database."""

from __future__ import annotations

import pytest

from resil.config import load_config
from resil.control import open_control_plane
from resil.ops.monitor import REPEAT_AFTER, Monitor


@pytest.fixture
def config(write_config, tmp_path):
    """One Redis resource in units a and b, nothing listening: these parts need none."""
    return load_config(write_config(f"""
        unit = "a"
        [control]
        url = "{(tmp_path / 'state.json').as_uri()}"
        [resources.db]
        kind = "redis"
        primary = "a"
        endpoints = {{ a = "127.0.0.1:1", b = "127.0.0.1:2" }}
    """))


def test_an_unresolvable_orphan_is_said_once_not_every_round(config):
    """An orphaned lock the servers cannot resolve is looked at every 0.5 s round: its
    lines are said again only after REPEAT_AFTER seconds, so the log stays readable."""
    now = [100.0]
    out: list[str] = []
    monitor = Monitor(config, open_control_plane(config.control_url, config.topology, None),
                      out=out.append, clock=lambda: now[0])
    for _ in range(10):                     # ten rounds, 0.5 s apart
        monitor._say_unrepeated("db: the servers do not say which is the primary")
        monitor._say_unrepeated("db: resolving from the servers (writable: a, b)")
        now[0] += 0.5
    assert len(out) == 2
    now[0] += REPEAT_AFTER
    monitor._say_unrepeated("db: the servers do not say which is the primary")
    monitor._say_unrepeated("db: something new")
    assert len(out) == 4 and out[-1].endswith("db: something new")


def test_agents_that_cannot_connect_are_witnesses_from_two_units_or_a_majority(config):
    """Agents report the endpoints they cannot connect to in their heartbeats; the
    monitor takes them as confirmation of its own failed probe only from agents in two
    or more units, or from a majority of the live agents, and only for the endpoint
    that is the primary now."""
    import time

    plane = open_control_plane(config.control_url, config.topology, None)
    out: list[str] = []
    monitor = Monitor(config, plane, out=out.append)
    resource = config.resources["db"]
    primary = resource.endpoint_in("a")

    def beat(agent: str, unit: str, endpoint: str | None) -> None:
        plane.report({"id": f"elsewhere:{agent}", "host": "elsewhere", "pid": 1,
                      "unit": unit, "reported_at": time.time(), "started_at": 0,
                      "unreachable": {"db": {"endpoint": endpoint, "since": 0}}
                      if endpoint else {}})

    beat("1", "a", "127.0.0.1:1")
    beat("2", "a", None)
    beat("3", "b", None)
    assert not monitor._witnessed(resource, primary)       # one of three, one unit
    beat("2", "a", "127.0.0.1:1")
    assert monitor._witnessed(resource, primary)           # two of three: a majority
    assert "2 of 3 live agent(s), in unit(s) a, cannot connect to 127.0.0.1:1" in out[-1]
    beat("2", "a", None)
    beat("3", "b", "127.0.0.1:1")
    beat("4", "b", None)
    beat("5", "b", None)
    assert monitor._witnessed(resource, primary)           # two units, not a majority
    beat("1", "a", "127.0.0.1:2")                          # another endpoint: not ours
    assert not monitor._witnessed(resource, primary)
