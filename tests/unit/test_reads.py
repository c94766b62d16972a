"""The replica lag estimate and the GTID bookkeeping of same-unit reads."""

from __future__ import annotations

import pytest

from resil import reads
from resil.integrations._pymysql_reads import Local, last_gtid, noted, noted_gtid
from resil.reads import ReplicaLag, covers, parse_gtids


def test_a_position_is_the_newest_sequence_number_per_domain():
    assert parse_gtids("0-1-100,1-2-7") == {0: 100, 1: 7}
    assert parse_gtids("0-1-100,\n0-2-90") == {0: 100}
    assert parse_gtids("") == parse_gtids(None) == {}
    assert parse_gtids("garbage,0-x-1,2-1-5") == {2: 5}


def test_covers_needs_every_domain():
    assert covers({0: 10, 1: 3}, {0: 10})
    assert not covers({0: 9}, {0: 10})
    assert not covers({0: 10}, {0: 10, 1: 1})
    assert covers({}, {})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lag_is_zero_when_the_replica_has_the_newest_primary_sample():
    clock = Clock()
    lag = ReplicaLag(history=10, clock=clock)
    lag.primary({0: 5}, clock.now)
    lag.replica({0: 5}, clock.now)
    assert lag.lag() == 0.0


def test_lag_is_the_age_of_the_newest_sample_the_replica_covers():
    clock = Clock()
    lag = ReplicaLag(history=10, clock=clock)
    for seq in range(1, 6):                 # the primary writes, sampled every 0.25 s
        lag.primary({0: seq * 10}, clock.now)
        clock.now += 0.25
    lag.replica({0: 25}, clock.now)         # has the sample of seq 20, not of 30
    assert lag.lag() == pytest.approx(1.0)  # sampled at 100.25, now 101.25


def test_a_replica_behind_everything_kept_is_infinitely_behind():
    clock = Clock()
    lag = ReplicaLag(history=1, clock=clock)
    for _ in range(10):
        lag.primary({0: int(clock.now * 10)}, clock.now)
        clock.now += 0.25
    lag.replica({0: 1}, clock.now)
    assert lag.lag() == float("inf")


def test_the_lag_is_unknown_when_not_replicating_failed_or_not_fresh():
    clock = Clock()
    lag = ReplicaLag(history=10, clock=clock)
    lag.primary({0: 1}, clock.now)
    lag.replica(None, clock.now)
    assert lag.lag() is None
    lag.replica({0: 1}, clock.now)
    assert lag.lag() == 0
    lag.failed()
    assert lag.lag() is None
    lag.replica({0: 1}, clock.now)
    clock.now += reads.FRESH_FOR + 0.1
    assert lag.lag() is None


def test_history_keeps_one_sample_older_than_its_length():
    clock = Clock()
    lag = ReplicaLag(history=1, clock=clock)
    for seq in range(20):
        lag.primary({0: seq}, clock.now)
        clock.now += 0.25
    assert len(lag._samples) <= 6


# --------------------------------------------------------------------------- OK packets

def _lenenc(data: bytes) -> bytes:
    assert len(data) < 251
    return bytes([len(data)]) + data


def _ok_rest(info: bytes, variables: dict[bytes, bytes]) -> bytes:
    state = b"".join(b"\x00" + _lenenc(_lenenc(k) + _lenenc(v)) for k, v in variables.items())
    return _lenenc(info) + _lenenc(state)


def test_last_gtid_is_read_from_the_session_state_of_an_ok_packet():
    # As MariaDB 10.11 sent it after an INSERT (captured).
    assert last_gtid(b"\x00\x12\x00\x10\tlast_gtid\x050-1-9") == "0-1-9"
    assert last_gtid(_ok_rest(b"Rows matched: 1", {b"autocommit": b"ON",
                                                   b"last_gtid": b"3-7-1234"})) == "3-7-1234"
    assert last_gtid(_ok_rest(b"", {b"autocommit": b"OFF"})) is None


@pytest.mark.parametrize("broken", [b"", b"\x00", b"\x00\x30\x00", b"\xfb", b"\x00\x05\x00\x09"])
def test_a_malformed_ok_packet_gives_no_gtid_and_no_error(broken):
    assert last_gtid(broken) is None


def test_a_connection_keeps_the_newest_gtid_per_domain():
    local = Local()
    noted_gtid(local, "0-1-10")
    noted_gtid(local, "0-2-8")              # older in its domain: kept out
    noted_gtid(local, "1-2-3")
    assert local.gtid == {0: 10, 1: 3}
    assert local.gtid_text == {0: "0-1-10", 1: "1-2-3"}
    noted(local, _ok_rest(b"", {b"last_gtid": b"0-2-11"}))
    assert local.gtid_text[0] == "0-2-11"


# --------------------------------------------------------------------------- the watch

def _watch(probe, clock, max_lag=1.0):
    from types import MappingProxyType

    from resil.state import ControlState
    from resil.topology import Endpoint, Resource, Topology
    endpoints = {u: (Endpoint("db", u, "127.0.0.1", port),) for u, port in (("a", 1), ("b", 2))}
    resource = Resource("db", "mysql", MappingProxyType(endpoints), primary="a",
                        reads="local", max_lag=max_lag)
    topology = Topology("b", ("a", "b"), MappingProxyType({"db": resource}))
    state = ControlState.initial(topology)
    return reads.ReplicaWatch(resource, lambda: state, probe, clock=clock)


def test_a_primary_that_stops_answering_leaves_reads_local_for_max_lag_only():
    clock = Clock()
    primary_up = [True]
    position = {0: 1}

    def probe(endpoint):
        if endpoint is not None:            # the primary
            if not primary_up[0]:
                raise OSError("refused")
            return dict(position)
        return dict(position)               # the replica has everything

    watch = _watch(probe, clock)
    watch._pid = __import__("os").getpid()  # no thread: samples are taken by hand
    for _ in range(4):
        position[0] += 1
        watch.sample()
        clock.now += 0.25
    assert watch.usable()
    primary_up[0] = False
    watch.sample()
    assert watch.usable()                   # 0.25 s since the primary was last seen
    for _ in range(4):
        clock.now += 0.25
        watch.sample()
    assert not watch.usable()               # 1.25 s: beyond max_lag


def test_a_replica_that_stops_answering_or_replicating_is_not_usable():
    clock = Clock()
    replica = [{0: 5}]

    def probe(endpoint):
        if endpoint is not None:
            return {0: 5}
        if replica[0] == "down":
            raise OSError("timed out")
        return replica[0]

    watch = _watch(probe, clock)
    watch._pid = __import__("os").getpid()
    watch.sample()
    assert watch.usable()
    replica[0] = None                       # Slave_running is OFF
    watch.sample()
    assert not watch.usable()
    replica[0] = {0: 5}
    watch.sample()
    assert watch.usable()
    replica[0] = "down"
    watch.sample()
    assert not watch.usable()


def test_a_kick_samples_again_before_the_interval_but_not_more_often_than_the_gap():
    import time as _time
    calls: list[float] = []

    def probe(endpoint):
        if endpoint is not None:
            calls.append(_time.monotonic())
        return {0: 1}

    watch = _watch(probe, _time.monotonic)
    try:
        watch.lag()                             # starts the thread
        assert wait_until(lambda: len(calls) >= 1)
        first = len(calls)
        began = _time.monotonic()
        while _time.monotonic() - began < 0.2:  # kicked all the time for 0.2 s
            watch.kick()
            _time.sleep(0.005)
        kicked = len(calls) - first
        # Without kicks: at most one more sample in 0.2 s (every 0.25 s); with them, about
        # one per KICK_GAP (20 ms), never more.
        assert 3 <= kicked <= 0.2 / reads.KICK_GAP + 2, kicked
        gaps = [b - a for a, b in zip(calls[first:], calls[first + 1:], strict=False)]
        assert min(gaps) >= reads.KICK_GAP * 0.9, gaps
    finally:
        watch.stop()


def wait_until(condition, timeout=2.0):
    import time as _time
    deadline = _time.monotonic() + timeout
    while _time.monotonic() < deadline:
        if condition():
            return True
        _time.sleep(0.01)
    return condition()
