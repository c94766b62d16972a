"""The tracker of a driver's connections: routing a new connection (the last match
reused only within the same control state and address), and the set of live
connections that a switch walks (a freed connection leaves it at once, even while
another thread copies it)."""

from __future__ import annotations

import gc
import sys
import threading
from dataclasses import replace

import resil
from resil import registry
from resil.integrations._tracking import Tracker

CONFIG = """
unit = "a"
[control]
url = "{url}"
[admin]
listen = "off"
[resources.db]
kind = "mysql"
primary = "a"
endpoints = {{ a = "10.0.0.1:3306", b = "10.0.0.2:3306" }}
aliases = ["db"]
[resources.other]
kind = "mysql"
primary = "b"
endpoints = {{ a = "10.0.1.1:3306", b = "10.0.1.2:3306" }}
aliases = ["other"]
"""


class Conn:
    def __init__(self, host: str, port: int = 3306) -> None:
        self.host, self.port = host, port


def start(write_config, tmp_path):
    return resil.start(write_config(CONFIG.format(url=(tmp_path / "state.json").as_uri())))


def test_new_connections_follow_the_state_and_the_address(write_config, tmp_path):
    agent = start(write_config, tmp_path)
    tracker = Tracker("mysql")
    try:
        first, second, other = Conn("db"), Conn("db"), Conn("other")
        assert tracker.route(first).resource.name == "db"
        assert tracker.route(second).resource.name == "db"      # the last match, reused
        assert tracker.route(other).resource.name == "other"    # another address: matched
        assert [(c.host, c.port) for c in (first, second, other)] == [
            ("10.0.0.1", 3306), ("10.0.0.1", 3306), ("10.0.1.2", 3306)]
        assert tracker.route(Conn("nothing")) is None
        # The primary moves: a new connection to the same address goes to the new one
        agent.state = replace(agent.state, epoch=agent.state.epoch + 1,
                              primaries={**agent.state.primaries, "db": "b"})
        third = Conn("db")
        record = tracker.route(third)
        assert (third.host, record.epoch) == ("10.0.0.2", agent.state.epoch)
        assert tracker.route(first).epoch == agent.state.epoch  # a reconnect: moved too
        assert first.host == "10.0.0.2"
    finally:
        resil.stop()


def test_a_freed_connection_leaves_the_set_while_others_copy_it(write_config, tmp_path):
    start(write_config, tmp_path)
    tracker = Tracker("mysql")
    faults: list[str] = []
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    stop = threading.Event()

    def walk() -> None:
        try:
            while not stop.is_set():
                for conn, record in tracker.connections():
                    assert record.resource.name == "db" and isinstance(conn, Conn)
        except Exception as exc:
            faults.append(repr(exc))
    walkers = [threading.Thread(target=walk) for _ in range(4)]
    try:
        for walker in walkers:
            walker.start()
        kept = []
        for i in range(20000):
            conn = Conn("db")
            tracker.route(conn)
            if i % 100 == 0:
                kept.append(conn)
            del conn                # freed now (no cycle): its reference leaves at once
    finally:
        stop.set()
        for walker in walkers:
            walker.join()
        sys.setswitchinterval(before)
        resil.stop()
    assert faults == []
    gc.collect()
    assert sorted(id(c) for c, _ in tracker.connections()) == sorted(id(c) for c in kept)
    assert len(tracker._refs) == len(kept)
    assert registry.runtime() is None
