"""Spare connections (resil.integrations._spare): opened in turn by one thread per
process, after what they wait for; handed over once; closed unless taken."""

from __future__ import annotations

import threading
import time

from resil import counters
from resil.integrations import _spare
from resil.integrations._spare import Spare


def openers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "resil-spares"]


def test_spares_open_in_turn_after_the_wait_and_are_handed_over_once():
    order: list[str] = []
    closed: list[str] = []

    def opener(name: str):
        def open_(conn: list[str]) -> None:
            order.append(f"open {name} in {threading.current_thread().name}")
        return open_

    mark = threading.Event()
    first = Spare(["a"], opener("a"), lambda c: closed.append(c[0]), "test_spare_failures",
                  after=lambda: order.append("after") or mark.wait(2))
    second = Spare(["b"], opener("b"), lambda c: closed.append(c[0]), "test_spare_failures")
    time.sleep(0.1)
    assert order == ["after"]                   # the first waits; the second is in line
    mark.set()
    assert first.take() == ["a"] and second.take() == ["b"]
    assert order == ["after", "open a in resil-spares", "open b in resil-spares"]
    assert first.take() is None                 # handed over once
    first.drop()
    assert closed == []                         # taken: the caller's to close
    fourth = Spare(["d"], opener("d"), lambda c: closed.append(c[0]), "test_spare_failures")
    assert fourth.take() == ["d"]
    fifth = Spare(["e"], opener("e"), lambda c: closed.append(c[0]), "test_spare_failures")
    time.sleep(0.1)
    fifth.drop()                                # ready, not taken: closed
    assert closed == ["e"]


def test_a_failed_or_late_spare_is_given_up_and_counted():
    before = counters.stats().get("test_spare_failures", 0)

    def refuse(conn: object) -> None:
        raise OSError("refused")
    failed = Spare([], refuse, lambda c: None, "test_spare_failures")
    assert failed.take() is None
    assert counters.stats().get("test_spare_failures", 0) == before + 1
    blocker = threading.Event()
    slow = Spare([], lambda c: blocker.wait(_spare.CONNECT_TIMEOUT + 0.5), lambda c: None,
                 "test_spare_failures")
    late = Spare([], lambda c: None, lambda c: None, "test_spare_failures")
    assert slow.take() is None                  # its handshake outlasted its bound
    assert late.take() is None                  # its bound passed while in line
    blocker.set()
    deadline = time.monotonic() + 2
    while counters.stats().get("test_spare_failures", 0) < before + 2 \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    assert counters.stats().get("test_spare_failures", 0) == before + 2   # the late one


def test_the_opener_ends_when_idle_and_with_stop():
    Spare([], lambda c: None, lambda c: None, "test_spare_failures").take()
    assert len(openers()) == 1
    deadline = time.monotonic() + _spare._Opener.IDLE + 2
    while openers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert openers() == []                      # idle: ended
    assert Spare([], lambda c: None, lambda c: None, "test_spare_failures").take() == []
    _spare.stop()
    assert openers() == []
