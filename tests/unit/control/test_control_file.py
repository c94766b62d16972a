"""The file control plane: atomic publish, epoch guard, watch latency, bad files."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from resil.config import load_config
from resil.control import live_agents, open_control_plane
from resil.control.base import NOTE_TTL, LeaseNote
from resil.errors import SignalError
from resil.state import ControlState, Signal

CONFIG = """
unit = "a"
[resources.db]
kind = "mysql"
primary = "a"
endpoints = { a = "127.0.0.1:3306", b = "127.0.0.1:3307" }
"""


@pytest.fixture
def topology(write_config):
    return load_config(write_config(CONFIG), env={}).topology


@pytest.fixture
def plane(tmp_path, topology):
    return open_control_plane((tmp_path / "state" / "s.json").as_uri(), topology, b"key",
                              poll_interval=0.01)


def test_missing_file_loads_nothing(plane):
    assert plane.load() is None


def test_publish_then_load(plane, topology):
    state = ControlState.initial(topology).evolve(primaries={"db": "b"})
    plane.publish(state, issuer="t")
    loaded = plane.load()
    assert loaded.epoch == 1 and loaded.state.primaries["db"] == "b" and loaded.signature
    assert not list(plane.path.parent.glob(".s.json.*"))     # no temp file left behind


def test_publish_refuses_stale_epoch(plane, topology):
    state = ControlState.initial(topology).evolve(epoch=3)
    plane.publish(state, issuer="t")
    with pytest.raises(SignalError, match="stale publish refused"):
        plane.publish(state, issuer="t")
    with pytest.raises(SignalError, match="stale publish refused"):
        plane.publish(state.evolve(epoch=2), issuer="t")
    assert plane.load().epoch == 3


def test_concurrent_publishers_never_share_an_epoch(plane, topology):
    """Each thread publishes epochs 1..20; the lock lets each epoch win exactly once."""
    wins: list[int] = []
    def publisher():
        for epoch in range(1, 21):
            try:
                plane.publish(ControlState.initial(topology).evolve(epoch=epoch), issuer="t")
                wins.append(epoch)
            except SignalError:
                pass
    threads = [threading.Thread(target=publisher) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == sorted(set(wins))
    assert plane.load().epoch == 20


def test_watch_delivers_changes_within_200ms(plane, topology):
    seen: list[tuple[float, Signal]] = []
    arrived = threading.Event()
    def on_signal(signal):
        seen.append((time.monotonic(), signal))
        arrived.set()
    watch = plane.watch(on_signal, lambda exc: None)
    try:
        latencies = []
        for epoch in (1, 2, 3):
            arrived.clear()
            sent = time.monotonic()
            plane.publish(ControlState.initial(topology).evolve(epoch=epoch), issuer="t")
            assert arrived.wait(1.0)
            latencies.append(seen[-1][0] - sent)
            assert seen[-1][1].epoch == epoch
        assert max(latencies) < 0.2, latencies
    finally:
        watch.stop()


def test_corrupt_and_forged_files_are_reported_once_and_not_delivered(plane, topology, tmp_path):
    errors: list[Exception] = []
    signals: list[Signal] = []
    plane.publish(ControlState.initial(topology).evolve(), issuer="t")
    watch = plane.watch(signals.append, errors.append)
    try:
        deadline = time.monotonic() + 1
        while not signals and time.monotonic() < deadline:
            time.sleep(0.01)
        bad = tmp_path / "bad.json"         # replaced atomically, as any writer must
        bad.write_text("{not json")
        os.replace(bad, plane.path)
        time.sleep(0.1)
        unsigned = open_control_plane(plane.url, topology, None)
        unsigned.publish(ControlState.initial(topology).evolve(epoch=9), issuer="mallory")
        time.sleep(0.1)
    finally:
        watch.stop()
    assert [s.epoch for s in signals] == [1]
    assert len(errors) == 2, errors
    assert "not JSON" in str(errors[0]) and "unsigned" in str(errors[1])


def test_lease_is_exclusive_renewable_and_expires(tmp_path, topology):
    now = [1000.0]
    plane = open_control_plane((tmp_path / "s.json").as_uri(), topology, None,
                               clock=lambda: now[0])
    assert plane.lease("monitor", "m1", ttl=3)
    assert not plane.lease("monitor", "m2", ttl=3)      # held by m1
    now[0] += 2
    assert plane.lease("monitor", "m1", ttl=3)          # renewed until 1005
    now[0] += 2.5
    assert not plane.lease("monitor", "m2", ttl=3)
    now[0] += 1
    assert plane.lease("monitor", "m2", ttl=3)          # m1's lease expired
    plane.release("monitor", "m1")                      # not m1's any more: no effect
    assert not plane.lease("monitor", "m1", ttl=3)
    plane.release("monitor", "m2")
    assert plane.lease("monitor", "m1", ttl=3)


def test_a_lease_note_outlives_the_lease_until_released(tmp_path, topology):
    """A switch records the step it began in its lease; a resolver or `resil status`
    reads it after the holder died, and a later holder's release drops it."""
    now = [1000.0]
    plane = open_control_plane((tmp_path / "s.json").as_uri(), topology, None,
                               clock=lambda: now[0])
    assert plane.lease_note("lock:db") is None
    assert plane.lease("lock:db", "switch-1", ttl=3, note="fence")
    assert plane.lease("lock:db", "switch-1", ttl=3)        # a plain renewal keeps it
    assert not plane.lease("lock:db", "other", ttl=3, note="mine")   # not held: not noted
    now[0] += 10                                            # switch-1 died
    assert plane.lease_note("lock:db") == LeaseNote("switch-1", "fence", 1000.0)
    assert plane.lease("lock:db", "resolver", ttl=3)        # takes it over, reads the note
    assert plane.lease_note("lock:db") == LeaseNote("switch-1", "fence", 1000.0)
    plane.release("lock:db", "resolver")
    assert plane.lease_note("lock:db") is None
    assert plane.lease("lock:db", "switch-2", ttl=3, note="promote")
    now[0] += NOTE_TTL + 1                                  # never released: it ages out
    assert plane.lease_note("lock:db") is None


def test_a_planted_lease_cannot_stop_failover_beyond_its_cap(tmp_path, topology):
    """A lease with more time left than any monitor could have taken (or none at all)
    was planted, and is taken over; a genuine one is respected."""
    now = [1000.0]
    plane = open_control_plane((tmp_path / "s.json").as_uri(), topology, None,
                               clock=lambda: now[0])
    lease_file = plane._lease_file("monitor")
    lease_file.write_text(json.dumps({"holder": "intruder", "expires": now[0] + 3600}))
    assert plane.lease("monitor", "m1", ttl=3)          # planted for an hour: taken over
    lease_file.write_text(json.dumps({"holder": "other", "expires": now[0] + 6.5}))
    assert not plane.lease("monitor", "m1", ttl=3)      # within the cap: respected


def test_a_heartbeat_dated_in_the_future_is_not_live(tmp_path, topology):
    plane = open_control_plane((tmp_path / "s.json").as_uri(), topology, None)
    now = time.time()
    me = os.getpid()
    plane.report({"id": "h:1", "pid": me, "reported_at": now})
    plane.report({"id": "h:2", "pid": me, "reported_at": now + 10_000})
    plane.report({"id": "h:3", "pid": me, "reported_at": "soon"})
    assert [a["id"] for a in live_agents(plane, 1.0)] == ["h:1"]


def test_key_rotation_accepts_the_previous_key_and_signs_with_the_current(tmp_path, topology):
    url = (tmp_path / "s.json").as_uri()
    old = open_control_plane(url, topology, b"old-key")
    old.publish(ControlState.initial(topology).evolve(), issuer="op")
    assert open_control_plane(url, topology, b"old-key").load().epoch == 1
    with pytest.raises(SignalError, match="forged"):
        open_control_plane(url, topology, b"new-key").load()
    rotating = open_control_plane(url, topology, b"new-key", previous_keys=[b"x", b"old-key"])
    assert rotating.load().epoch == 1                      # signed with a previous key
    rotating.publish(ControlState.initial(topology).evolve(epoch=2), issuer="op")
    assert open_control_plane(url, topology, b"new-key").load().epoch == 2   # current key
    with pytest.raises(SignalError, match="forged"):
        open_control_plane(url, topology, b"old-key").load()


def test_previous_keys_need_a_current_one(write_config, monkeypatch):
    from resil.errors import ConfigError
    monkeypatch.setenv("OLD_KEYS", "a,b")
    path = write_config("""
        unit = "a"
        [control]
        previous_signing_keys_env = "OLD_KEYS"
        [resources.db]
        kind = "mysql"
        endpoints = { a = "127.0.0.1:3306" }
    """)
    with pytest.raises(ConfigError, match="previous_signing_keys_env.*signing_key_env"):
        load_config(path)
    monkeypatch.setenv("CUR_KEY", "c")
    text = path.read_text().replace("[control]\n", '[control]\nsigning_key_env = "CUR_KEY"\n')
    path.write_text(text)
    assert load_config(path).previous_signing_keys == (b"a", b"b")


def test_the_watch_sees_every_way_a_state_arrives_and_wakes_little_for_the_rest(
        plane, topology, tmp_path):
    """Replaced (as resil publishes), written in place, removed and published again: each
    is delivered at once (not at the watch's reconciling look, a second later). Writes of
    the files beside the state (a switch renewing its lease at every step) wake the watch
    at most twice each (measured: 1.6; its events arrive together), never in a loop."""
    from resil.control.file import _FileWatch
    wakes = []
    real = _FileWatch._poll_once

    def counted(self):
        wakes.append(time.monotonic())
        real(self)
    seen: list[int] = []
    arrived = threading.Event()

    def on_signal(signal):
        seen.append(signal.epoch)
        arrived.set()

    def delivered(epoch: int, act) -> float:
        arrived.clear()
        sent = time.monotonic()
        act()
        assert arrived.wait(0.5) and seen[-1] == epoch, seen
        return time.monotonic() - sent
    state = ControlState.initial(topology)
    elsewhere = open_control_plane((tmp_path / "other" / "s.json").as_uri(), topology, b"key")
    elsewhere.publish(state.evolve(epoch=2), issuer="t")
    _FileWatch._poll_once = counted
    watch = plane.watch(on_signal, lambda exc: None)
    try:
        assert delivered(1, lambda: plane.publish(state.evolve(epoch=1), issuer="t")) < 0.2
        written = elsewhere.path.read_bytes()
        assert delivered(2, lambda: plane.path.write_bytes(written)) < 0.2     # in place
        plane.path.unlink()
        time.sleep(0.05)
        assert delivered(3, lambda: plane.publish(state.evolve(epoch=3), issuer="t")) < 0.2
        time.sleep(0.1)
        before = len(wakes)
        for _ in range(20):
            assert plane.lease("switch-db", "t", 10.0)
            time.sleep(0.01)
        time.sleep(0.1)
        assert len(wakes) - before <= 2 * 20 + 2, len(wakes) - before
    finally:
        watch.stop()
        _FileWatch._poll_once = real
