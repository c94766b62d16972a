"""The parts of `resil monitor` that need no database."""

from __future__ import annotations

from resil.config import load_config
from resil.control import open_control_plane
from resil.ops.monitor import REPEAT_AFTER, Monitor


def test_an_unresolvable_orphan_is_said_once_not_every_round(write_config, tmp_path):
    """An orphaned lock the servers cannot resolve is looked at every 0.5 s round: its
    lines are said again only after REPEAT_AFTER seconds, so the log stays readable."""
    config = load_config(write_config(f"""
        unit = "a"
        [control]
        url = "{(tmp_path / 'state.json').as_uri()}"
        [resources.db]
        kind = "redis"
        primary = "a"
        endpoints = {{ a = "127.0.0.1:1", b = "127.0.0.1:2" }}
    """))
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
