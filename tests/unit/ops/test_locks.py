"""A lock holder's lease: steps noted without waiting, and never back to an older one."""

from __future__ import annotations

import fcntl
import threading
import time

import pytest

from resil.config import load_config
from resil.control import open_control_plane
from resil.ops.locks import HolderLease

CONFIG = """
unit = "a"
[resources.db]
kind = "mysql"
primary = "a"
endpoints = { a = "127.0.0.1:3306", b = "127.0.0.1:3307" }
"""


@pytest.fixture
def plane(tmp_path, write_config):
    topology = load_config(write_config(CONFIG), env={}).topology
    return open_control_plane((tmp_path / "s.json").as_uri(), topology, None)


@pytest.fixture
def lease(plane):
    held = HolderLease(plane, "db", "switch-1")
    held.take()
    yield held
    held.release()


def note(plane) -> str | None:
    found = plane.lease_note("lock:db")
    return found.note if found is not None else None


def wait_for_note(plane, expected: str) -> None:
    deadline = time.monotonic() + 5
    while note(plane) != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert note(plane) == expected


def test_a_noted_step_does_not_wait_for_its_write(plane, lease, tmp_path):
    """While writes are held, the switch must not wait on the control plane for a note:
    with every lease write blocked (the plane's lock taken here), reached() returns at
    once, and the note lands as soon as the plane is free."""
    with open(tmp_path / "s.json.lock", "a") as blocker:
        fcntl.flock(blocker, fcntl.LOCK_EX)
        noting = threading.Thread(target=lease.reached, args=("drain",))
        noting.start()
        noting.join(0.5)
        waited = noting.is_alive()
        assert note(plane) != "drain"       # could not be written yet
    noting.join(5)
    assert not waited, "reached() waited for the control plane"
    wait_for_note(plane, "drain")


def test_notes_never_go_back_to_an_older_step(plane, lease, tmp_path):
    """Notes made while the plane is blocked, then a checked step (alive) waiting behind
    them: the file ends at the checked step, not at a note written after it."""
    with open(tmp_path / "s.json.lock", "a") as blocker:
        fcntl.flock(blocker, fcntl.LOCK_EX)
        lease.reached("drain")
        lease.reached("catch-up")
        checked = threading.Thread(target=lambda: lease.alive("promote"))
        checked.start()
        time.sleep(0.1)
    checked.join(5)
    assert not checked.is_alive()
    wait_for_note(plane, "promote")
    time.sleep(0.7)                         # a renewal since: the note stays
    assert note(plane) == "promote"
    lease.reached("reverse")
    wait_for_note(plane, "reverse")


def test_a_note_before_the_lease_is_taken_is_written_at_once(plane):
    held = HolderLease(plane, "db", "switch-1")
    held.reached("lock")                    # no renewing thread yet: written here
    assert note(plane) == "lock"
    held.release()


def test_the_last_of_many_notes_is_the_one_that_stays(plane, lease):
    """Notes made while the renewing thread is writing earlier ones: none is dropped in
    the hand-over, so the file ends at the last."""
    for i in range(300):
        lease.reached(f"step-{i}")
        if i % 7 == 0:
            time.sleep(0.0005)
    wait_for_note(plane, "step-299")
