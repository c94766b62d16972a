"""The parts of `resil monitor` that need no database."""

from __future__ import annotations

import pytest

from resil.config import load_config
from resil.control import open_control_plane
from resil.ops.monitor import REPEAT_AFTER, Monitor


def one_resource(write_config, tmp_path, kind: str = "redis"):
    """One resource ``db`` of ``kind`` in units a and b, nothing listening."""
    return load_config(write_config(f"""
        unit = "a"
        [control]
        url = "{(tmp_path / 'state.json').as_uri()}"
        [resources.db]
        kind = "{kind}"
        primary = "a"
        endpoints = {{ a = "127.0.0.1:1", b = "127.0.0.1:2" }}
    """))


@pytest.fixture
def config(write_config, tmp_path):
    """One Redis resource in units a and b, nothing listening: these parts need none."""
    return one_resource(write_config, tmp_path)


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


def test_a_semi_sync_check_the_primary_did_not_answer_is_made_when_it_does(
        write_config, tmp_path, monkeypatch):
    """The start-up semi-sync check of a primary that does not answer in time (down, or
    slow on a loaded machine) is not dropped: it is tried again, less and less often,
    after probes the primary answers, until the primary answers it; then never again
    for that primary, and once for a new primary."""
    from resil.errors import ResilError
    from resil.ops import monitor as monitor_module

    config = one_resource(write_config, tmp_path, "mysql")
    answers: list[bool] = [False, False, True]
    opened: list[str] = []

    class Server:                       # what open_server returns for a semi-sync primary
        def semi_sync_timeout_ms(self) -> int:
            return 1000

        def close(self) -> None:
            pass

    def open_server(resource, endpoint, credentials, **kwargs):
        opened.append(str(endpoint))
        if not answers.pop(0):
            raise ResilError("no answer in time")
        return Server()

    monkeypatch.setattr(monitor_module, "open_server", open_server)
    now = [0.0]
    out: list[str] = []
    monitor = Monitor(config, open_control_plane(config.control_url, config.topology, None),
                      out=out.append, clock=lambda: now[0])
    resource = config.resources["db"]
    a, b = resource.endpoint_in("a"), resource.endpoint_in("b")
    monitor._check_semi_sync()                          # at start: no answer
    monitor._semi_sync_once(resource, a)                # at once again: not yet
    assert opened == ["127.0.0.1:1"] and not out
    now[0] += 0.5
    monitor._semi_sync_once(resource, a)                # 0.5 s later: no answer
    now[0] += 0.5
    monitor._semi_sync_once(resource, a)                # backing off: 1 s now
    assert len(opened) == 2 and not out
    now[0] += 0.5
    monitor._semi_sync_once(resource, a)                # it answers
    assert len(opened) == 3
    assert len(out) == 1 and "WARNING rpl_semi_sync_master_timeout = 1000 ms" in out[0]
    now[0] += 100
    monitor._semi_sync_once(resource, a)                # checked: never again
    assert len(opened) == 3
    answers.append(True)
    monitor._semi_sync_once(resource, b)                # a new primary: checked once
    assert opened[-1] == "127.0.0.1:2" and len(out) == 2
