"""The Redis control plane, against real Redis servers: publish, watch, heartbeats, leases.

Most tests share the session's Redis primary, each under its own key prefix; the ones
that kill, freeze or reconfigure a server start a private one.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import resil
from resil import context
from resil.config import load_config
from resil.control import open_control_plane
from resil.control.base import NOTE_TTL
from resil.control.redis import RedisControlPlane, parse_url
from resil.errors import ControlPlaneError, SignalError
from resil.state import ControlState, Signal, encode_signal, make_signal
from resil.topology import Topology
from servers import Redis, free_port
from servers.ports import wait_until

CONFIG = """
unit = "a"
[resources.db]
kind = "mysql"
primary = "a"
endpoints = { a = "127.0.0.1:3306", b = "127.0.0.1:3307" }
"""


@pytest.fixture
def topology(write_config: Callable[[str], Path]) -> Topology:
    return load_config(write_config(CONFIG), env={}).topology


@pytest.fixture
def shared(redis_pair: Any) -> Redis:
    """The session's Redis primary (tests keep apart by prefix)."""
    return redis_pair.primary


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Redis]:
    """A Redis of this test's own, free to kill, freeze and restart."""
    server = Redis(tmp_path, "control")
    server.start()
    yield server
    server.destroy()


def url_of(server: Redis, prefix: str, userinfo: str = "") -> str:
    return f"redis://{userinfo}127.0.0.1:{server.port}/0?prefix={prefix}"


@pytest.fixture
def make_plane(topology: Topology) -> Iterator[Callable[..., RedisControlPlane]]:
    """Open planes (closed after the test): ``make_plane(url, key=..., **options)``."""
    planes: list[RedisControlPlane] = []

    def make(url: str, key: bytes | None = b"key", **options: Any) -> RedisControlPlane:
        plane = open_control_plane(url, topology, key, **options)
        assert isinstance(plane, RedisControlPlane)
        planes.append(plane)
        return plane
    yield make
    for plane in planes:
        plane.close()


@pytest.fixture
def plane(shared: Redis, make_plane: Callable[..., RedisControlPlane]) -> RedisControlPlane:
    return make_plane(url_of(shared, f"t{uuid.uuid4().hex[:10]}"), poll_interval=0.05)


def eventually(condition: Callable[[], object], timeout: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.005)
    return bool(condition())


class Recorder:
    """Callbacks for a watch that remember what arrived, and when."""

    def __init__(self) -> None:
        self.signals: list[tuple[float, Signal]] = []
        self.errors: list[Exception] = []
        self.arrived = threading.Event()

    def on_signal(self, signal: Signal) -> None:
        self.signals.append((time.monotonic(), signal))
        self.arrived.set()

    def on_error(self, exc: Exception) -> None:
        self.errors.append(exc)

    def epochs(self) -> list[int]:
        return [s.epoch for _, s in self.signals]

    def wait_for_epoch(self, epoch: int, timeout: float) -> float | None:
        """When a signal of ``epoch`` arrived (monotonic), or None."""
        eventually(lambda: epoch in self.epochs(), timeout)
        return next((t for t, s in self.signals if s.epoch == epoch), None)


def state(topology: Topology, epoch: int, **primaries: str) -> ControlState:
    return ControlState.initial(topology).evolve(epoch=epoch, primaries=primaries or None)


# --------------------------------------------------------------------------- URLs

def test_url_forms() -> None:
    plain = parse_url("redis://app:s%40cret@cache.internal:6380/2?prefix=ha")
    assert (plain.hosts, plain.db, plain.prefix, plain.username, plain.password) == \
        ((("cache.internal", 6380),), 2, "ha", "app", "s@cret")
    assert plain.safe == "redis://app:***@cache.internal:6380/2?prefix=ha"
    assert parse_url("redis://:pw@h").password == "pw" and parse_url("redis://h").hosts == \
        (("h", 6379),)
    tls = parse_url("rediss://h:6390/0?ssl_cert_reqs=none")
    assert tls.scheme == "rediss" and tls.ssl_cert_reqs == "none"
    sentinel = parse_url("redis+sentinel://pw@s1:26380,s2,[::1]:26381/mymaster/3"
                         "?sentinel_password=sp")
    assert sentinel.hosts == (("s1", 26380), ("s2", 26379), ("::1", 26381))
    assert (sentinel.service, sentinel.db, sentinel.password, sentinel.username,
            sentinel.sentinel_password, sentinel.prefix) == ("mymaster", 3, "pw", None, "sp",
                                                            "resil")
    assert "pw" not in sentinel.safe and "sp" not in sentinel.safe
    for bad, words in [("redis://h/x", "not a number"), ("redis://h:99999/0", "not a TCP port"),
                       ("redis://h1,h2/0", "several hosts"), ("redis://h/0?pool=3", "unknown"),
                       ("redis+sentinel://pw@s1:1/", "no master name"),
                       ("redis://u:pw@h/0?prefix=", "prefix")]:
        with pytest.raises(ControlPlaneError, match=words) as caught:
            parse_url(bad)
        assert ":pw@" not in str(caught.value)


def test_unreachable_redis_fails_fast_without_showing_the_password(
        make_plane: Callable[..., RedisControlPlane]) -> None:
    port = free_port()
    plane = make_plane(f"redis://app:s3cret@127.0.0.1:{port}/0")
    assert "s3cret" not in plane.url
    started = time.monotonic()
    with pytest.raises(ControlPlaneError, match=f"127.0.0.1:{port}") as caught:
        plane.load()
    assert time.monotonic() - started < 1.5
    assert "s3cret" not in str(caught.value) and "app:***@" in str(caught.value)


def test_password_and_user(private: Redis, make_plane: Callable[..., RedisControlPlane],
                           topology: Topology) -> None:
    admin = private.client()
    admin.config_set("requirepass", "pw")
    try:
        for userinfo in (":pw@", "default:pw@"):
            plane = make_plane(url_of(private, f"p{len(userinfo)}", userinfo))
            plane.publish(state(topology, 1), issuer="t")
            assert plane.load().epoch == 1      # type: ignore[union-attr]
        wrong = make_plane(url_of(private, "p", ":nope@"))
        with pytest.raises(ControlPlaneError) as caught:
            wrong.load()
        assert "nope" not in str(caught.value)
    finally:
        private.client(password="pw").config_set("requirepass", "")


# --------------------------------------------------------------------------- publish

def test_missing_key_loads_nothing(plane: RedisControlPlane) -> None:
    assert plane.load() is None


def test_publish_then_load(plane: RedisControlPlane, shared: Redis, topology: Topology) -> None:
    published = plane.publish(state(topology, 1, db="b"), issuer="t")
    loaded = plane.load()
    assert loaded is not None and loaded.epoch == 1 and loaded.state.primaries["db"] == "b"
    assert loaded.signature and loaded == published
    stored = shared.client(decode_responses=False).get(f"{plane.prefix}:state")
    assert stored == encode_signal(published)       # exactly the encoded signal


def test_publish_refuses_stale_epoch(plane: RedisControlPlane, topology: Topology) -> None:
    plane.publish(state(topology, 3), issuer="t")
    with pytest.raises(SignalError, match="stale publish refused"):
        plane.publish(state(topology, 3), issuer="t")
    with pytest.raises(SignalError, match="stale publish refused"):
        plane.publish(state(topology, 2), issuer="t")
    assert plane.load().epoch == 3      # type: ignore[union-attr]


def test_concurrent_publishers_never_share_an_epoch(
        plane: RedisControlPlane, topology: Topology,
        make_plane: Callable[..., RedisControlPlane]) -> None:
    """Four publishers (each its own connections) publish epochs 1..20: each wins once."""
    wins: list[int] = []
    planes = [make_plane(plane.target.safe) for _ in range(4)]

    def publisher(mine: RedisControlPlane) -> None:
        for epoch in range(1, 21):
            try:
                mine.publish(state(topology, epoch), issuer="t")
                wins.append(epoch)
            except SignalError:
                pass
    threads = [threading.Thread(target=publisher, args=(p,)) for p in planes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == sorted(set(wins)) and wins
    assert plane.load().epoch == 20     # type: ignore[union-attr]


def test_a_corrupt_or_forged_stored_value_may_be_replaced(
        plane: RedisControlPlane, shared: Redis, topology: Topology) -> None:
    client = shared.client()
    forged = make_signal(state(topology, 99), issuer="m", issued_at=1, key=b"guess")
    for bad in (b"{not json", encode_signal(forged)):
        client.set(f"{plane.prefix}:state", bad)
        with pytest.raises(SignalError):
            plane.load()
        plane.publish(state(topology, 1), issuer="t")
        assert plane.load().epoch == 1      # type: ignore[union-attr]


# --------------------------------------------------------------------------- watch

def test_watch_delivers_changes_within_200ms_by_pubsub(
        shared: Redis, make_plane: Callable[..., RedisControlPlane], topology: Topology) -> None:
    # A poll every 10 s: anything faster than that came by pub/sub.
    plane = make_plane(url_of(shared, f"t{uuid.uuid4().hex[:10]}"), poll_interval=10)
    plane.publish(state(topology, 1), issuer="t")
    seen = Recorder()
    watch = plane.watch(seen.on_signal, seen.on_error)
    try:
        assert seen.wait_for_epoch(1, 2.0) is not None      # subscribed and caught up
        latencies = []
        for epoch in (2, 3, 4):
            sent = time.monotonic()
            plane.publish(state(topology, epoch), issuer="t")
            arrived = seen.wait_for_epoch(epoch, 1.0)
            assert arrived is not None, seen.epochs()
            latencies.append(arrived - sent)
        assert max(latencies) < 0.2, latencies
        assert not seen.errors
    finally:
        watch.stop()


def test_reconciling_poll_delivers_what_pubsub_missed(
        shared: Redis, make_plane: Callable[..., RedisControlPlane], topology: Topology) -> None:
    poll = 0.3
    plane = make_plane(url_of(shared, f"t{uuid.uuid4().hex[:10]}"), poll_interval=poll)
    plane.publish(state(topology, 1), issuer="t")
    seen = Recorder()
    watch = plane.watch(seen.on_signal, seen.on_error)
    try:
        assert seen.wait_for_epoch(1, 2.0) is not None
        # Written straight into the key: no PUBLISH, so only the poll can find it.
        signal = make_signal(state(topology, 2, db="b"), issuer="t", issued_at=1, key=b"key")
        sent = time.monotonic()
        shared.client().set(f"{plane.prefix}:state", encode_signal(signal))
        arrived = seen.wait_for_epoch(2, poll + 0.5)
        assert arrived is not None and arrived - sent < poll + 0.15, seen.epochs()
        assert seen.signals[-1][1].state.primaries["db"] == "b"
    finally:
        watch.stop()


def test_forged_and_unsigned_signals_are_reported_once_and_not_delivered(
        plane: RedisControlPlane, shared: Redis, topology: Topology) -> None:
    client = shared.client(decode_responses=False)
    plane.publish(state(topology, 1), issuer="t")
    seen = Recorder()
    watch = plane.watch(seen.on_signal, seen.on_error)
    try:
        assert seen.wait_for_epoch(1, 2.0) is not None
        evil = state(topology, 9, db="b")
        forged = encode_signal(make_signal(evil, issuer="m", issued_at=1, key=b"guess"))
        unsigned = encode_signal(make_signal(evil, issuer="m", issued_at=1, key=None))
        client.set(f"{plane.prefix}:state", forged)     # seen by the poll, many times
        assert eventually(lambda: len(seen.errors) == 1)
        time.sleep(0.2)                                 # four more polls: no new report
        client.publish(f"{plane.prefix}:signals", unsigned)     # a message only
        assert eventually(lambda: len(seen.errors) >= 2)
        time.sleep(0.2)
        with pytest.raises(SignalError, match="forged"):
            plane.load()
    finally:
        watch.stop()
    assert seen.epochs() == [1]
    assert len(seen.errors) == 3, seen.errors   # forged, unsigned, forged again (key re-read)
    assert "forged" in str(seen.errors[0]) and "unsigned" in str(seen.errors[1])
    assert all(isinstance(e, SignalError) for e in seen.errors)


def test_watch_survives_redis_dying_and_catches_up(
        private: Redis, make_plane: Callable[..., RedisControlPlane], topology: Topology) -> None:
    plane = make_plane(url_of(private, "kill"), poll_interval=0.2)
    plane.publish(state(topology, 1), issuer="t")
    seen = Recorder()
    watch = plane.watch(seen.on_signal, seen.on_error)
    try:
        assert seen.wait_for_epoch(1, 2.0) is not None
        private.kill()
        assert eventually(lambda: seen.errors, 2.0)
        time.sleep(1.0)                         # several reconnect attempts fail meanwhile
        assert len(seen.errors) == 1, seen.errors
        assert isinstance(seen.errors[0], ControlPlaneError)
        with pytest.raises(ControlPlaneError, match="cannot read"):
            plane.load()
        for call in (lambda: plane.publish(state(topology, 5), issuer="t"),
                     lambda: plane.report({"id": "x"}), plane.agents,
                     lambda: plane.lease("monitor", "me", 1)):
            with pytest.raises(ControlPlaneError):
                call()
        plane.retire("x")                       # best effort: it expires by itself
        plane.release("monitor", "me")
        private.start()                         # same port, empty (no persistence)
        plane.publish(state(topology, 2, db="b"), issuer="t")
        assert seen.wait_for_epoch(2, 4.0) is not None, seen.epochs()
        assert len(seen.errors) == 1
    finally:
        started = time.monotonic()
        watch.stop()
        stopped_in = time.monotonic() - started
    assert stopped_in < 1.0
    assert not any(t.name == "resil-control-watch" for t in threading.enumerate())


def test_stop_is_prompt_with_redis_frozen(
        private: Redis, make_plane: Callable[..., RedisControlPlane]) -> None:
    plane = make_plane(url_of(private, "freeze"), poll_interval=0.05)
    seen = Recorder()
    watch = plane.watch(seen.on_signal, seen.on_error)
    time.sleep(0.2)
    private.freeze()
    try:
        time.sleep(0.3)                         # a poll is now blocked on the frozen server
        started = time.monotonic()
        watch.stop()
        assert time.monotonic() - started < 1.3
    finally:
        private.thaw()


# --------------------------------------------------------------------------- agents

def test_heartbeats_report_list_retire_and_expire(
        shared: Redis, make_plane: Callable[..., RedisControlPlane]) -> None:
    tag = uuid.uuid4().hex[:8]
    # A glob character in the prefix must not match the neighbour's keys.
    plane = make_plane(url_of(shared, f"{tag}*x"), agent_ttl=0.4)
    neighbour = make_plane(url_of(shared, f"{tag}yyx"))
    neighbour.report({"id": "other:1", "started_at": 0.0})
    plane.report({"id": "h1:10", "started_at": 20.0, "epoch": 3})
    plane.report({"id": "h2:20", "started_at": 10.0, "epoch": 3})
    assert [a["id"] for a in plane.agents()] == ["h2:20", "h1:10"]     # oldest first
    assert plane.agents()[1]["epoch"] == 3
    plane.retire("h2:20")
    plane.retire("never-reported")
    assert [a["id"] for a in plane.agents()] == ["h1:10"]
    ttl = shared.client().pttl(f"{tag}*x:agents:h1:10")
    assert 0 < ttl <= 400
    assert eventually(lambda: plane.agents() == [], 1.0)                # expired by TTL
    assert [a["id"] for a in neighbour.agents()] == ["other:1"]


# --------------------------------------------------------------------------- leases

def test_lease_one_holder_renew_expiry_release(plane: RedisControlPlane) -> None:
    assert plane.lease("monitor", "alice", 0.6)
    assert not plane.lease("monitor", "bob", 0.6)
    time.sleep(0.35)
    assert plane.lease("monitor", "alice", 0.6)         # renewed: lives 0.6 s from now
    time.sleep(0.35)
    assert not plane.lease("monitor", "bob", 0.6)       # would have expired without renewal
    assert eventually(lambda: plane.lease("monitor", "bob", 0.6), 1.0)   # alice stopped
    assert not plane.lease("monitor", "alice", 0.6)
    plane.release("monitor", "alice")                   # not hers: nothing happens
    assert not plane.lease("monitor", "alice", 5)
    plane.release("monitor", "bob")
    assert plane.lease("monitor", "alice", 5)
    assert plane.lease("other", "bob", 5)               # leases are independent


def test_a_lease_note_outlives_the_lease_until_released(plane: RedisControlPlane,
                                                       shared: Redis) -> None:
    assert plane.lease_note("lock:db") is None
    assert plane.lease("lock:db", "switch-1", 0.3, note="fence")
    assert plane.lease("lock:db", "switch-1", 0.3)          # a plain renewal keeps it
    assert not plane.lease("lock:db", "other", 0.3, note="mine")    # not held: not noted
    assert eventually(lambda: plane.lease_holder("lock:db") is None, 1.0)   # it died
    note = plane.lease_note("lock:db")
    assert note is not None and (note.holder, note.note) == ("switch-1", "fence")
    assert plane.lease("lock:db", "resolver", 0.3)          # takes it over, reads the note
    assert plane.lease_note("lock:db") == note
    plane.release("lock:db", "resolver")
    assert plane.lease_note("lock:db") is None
    assert plane.lease("lock:db", "switch-2", 0.3, note="promote")
    ttl = shared.client().pttl(f"{plane.lease_key('lock:db')}:note")
    assert NOTE_TTL * 1000 - 5_000 < ttl <= NOTE_TTL * 1000   # never released: it ages out


def test_a_planted_lease_is_taken_over_a_genuine_one_is_not(plane: RedisControlPlane,
                                                             shared: Redis) -> None:
    client = shared.client()
    key = plane.lease_key("monitor")
    client.set(key, "intruder")                          # no expiry at all
    assert plane.lease("monitor", "m1", 1.0)
    client.set(key, "intruder", px=3_600_000)            # an hour: no monitor asks that
    assert plane.lease("monitor", "m1", 1.0)
    assert client.get(key) == b"m1" or client.get(key) == "m1"
    client.set(key, "other", px=2_500)                   # within the cap: genuine
    assert not plane.lease("monitor", "m1", 1.0)


def test_concurrent_lease_takers_one_wins(plane: RedisControlPlane,
                                          make_plane: Callable[..., RedisControlPlane]) -> None:
    planes = [make_plane(plane.target.safe) for _ in range(8)]
    results: dict[str, bool] = {}
    barrier = threading.Barrier(len(planes))

    def take(i: int) -> None:
        barrier.wait()
        results[f"h{i}"] = planes[i].lease("race", f"h{i}", 5)
    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(planes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results.values()) == 1, results


# --------------------------------------------------------------------------- sentinel

@pytest.fixture
def sentinel(private: Redis, tmp_path: Path) -> Iterator[int]:
    """A Sentinel monitoring ``private`` as ``mymaster``; yields its port."""
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(textwrap.dedent(f"""\
        port {port}
        bind 127.0.0.1
        dir {tmp_path}
        sentinel monitor mymaster 127.0.0.1 {private.port} 1
        """))
    proc = subprocess.Popen(["redis-server", str(conf), "--sentinel"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    client = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)

    def knows_master() -> bool:
        try:
            return client.sentinel_get_master_addr_by_name("mymaster") is not None
        except redis.RedisError:
            return False
    try:
        assert wait_until(knows_master, 10), "sentinel did not come up"
        yield port
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def test_sentinel_url(sentinel: int, private: Redis,
                      make_plane: Callable[..., RedisControlPlane], topology: Topology) -> None:
    plane = make_plane(f"redis+sentinel://127.0.0.1:{sentinel}/mymaster/0?prefix=s",
                       poll_interval=0.05)
    seen = Recorder()
    watch = plane.watch(seen.on_signal, seen.on_error)
    try:
        plane.publish(state(topology, 1, db="b"), issuer="t")
        assert seen.wait_for_epoch(1, 2.0) is not None
    finally:
        watch.stop()
    assert private.client(decode_responses=False).get("s:state") == \
        encode_signal(plane.load())     # type: ignore[arg-type]


# --------------------------------------------------------------------------- agent

AGENT_CONFIG = """
unit = "a"
[control]
url = "{url}"
poll_interval = 0.2
heartbeat_interval = 0.1
[resources.db]
kind = "mysql"
primary = "a"
endpoints = {{ a = "10.0.0.1:3306", b = "10.0.0.2:3306" }}
aliases = ["db"]
[resources.cache]
kind = "redis"
primary = "b"
endpoints = {{ a = "127.0.0.1:{control_port}", b = "127.0.0.1:{dead_port}" }}
"""


def test_agent_follows_the_redis_plane_and_keeps_its_state_while_redis_is_down(
        private: Redis, write_config: Callable[[str], Path], caplog: pytest.LogCaptureFixture,
        ) -> None:
    """The agent applies published changes and keeps its last state through an outage.

    The control Redis is also the unit-a endpoint of a redis resource whose primary is
    a dead port: an application client is routed away from it, the control plane's own
    connections (in ``context.bypass()``) are not.
    """
    url = url_of(private, "agent")
    config = load_config(write_config(AGENT_CONFIG.format(
        url=url, control_port=private.port, dead_port=free_port())), env={})
    plane = open_control_plane(url, config.topology, None)
    try:
        agent = resil.start(config)
        assert agent is not None

        def primary() -> str:
            return agent.router.primary_endpoint("mysql", "db", 3306).host  # type: ignore
        assert primary() == "10.0.0.1"                  # starts the watch and heartbeats
        plane.publish(ControlState.initial(config.topology).evolve(
            epoch=5, primaries={"db": "b", "cache": "b"}), issuer="op")
        assert eventually(lambda: primary() == "10.0.0.2", 1.0)
        assert agent.state.epoch == 5
        assert eventually(lambda: [a["id"] for a in plane.agents()] == [agent.id], 1.0)
        app = redis.Redis(host="127.0.0.1", port=private.port, socket_connect_timeout=0.5,
                          retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0))
        with pytest.raises(redis.ConnectionError):
            app.ping()                                  # routed to the dead unit-b primary
        with caplog.at_level(logging.WARNING, logger="resil"):
            private.kill()
            assert eventually(lambda: "control plane error" in caplog.text, 2.0)
            time.sleep(0.5)                             # the watch retries meanwhile
            agent.refresh()                             # a failed read changes nothing
        assert agent.state.epoch == 5 and primary() == "10.0.0.2"
        reports = [r for r in caplog.records if "cannot watch" in r.getMessage()]
        assert len(reports) == 1, [r.getMessage() for r in reports]     # once per outage
        with context.bypass():     # its PING would be routed to the dead port otherwise
            private.start()                             # back, empty
        plane.publish(ControlState.initial(config.topology).evolve(
            epoch=6, primaries={"db": "a", "cache": "b"}), issuer="op")
        assert eventually(lambda: agent.state.epoch == 6, 4.0)
        assert primary() == "10.0.0.1"
        assert eventually(lambda: [a["id"] for a in plane.agents()] == [agent.id], 1.0)
        resil.stop()
        assert plane.agents() == []                     # retired
        assert not any(t.name == "resil-control-watch" for t in threading.enumerate())
    finally:
        resil.stop()
        plane.close()


def test_a_store_without_an_append_only_file_is_warned_about(
        private: Redis, make_plane: Callable[..., RedisControlPlane], write_config: Any,
        tmp_path: Path) -> None:
    plane = make_plane(url_of(private, "dur"))
    private.client().config_set("appendonly", "no")
    assert "appendonly" in (plane.durability() or "")
    config = write_config(f"""
        unit = "a"
        [control]
        url = "{url_of(private, 'dur')}"
        [resources.db]
        kind = "mysql"
        endpoints = {{ a = "127.0.0.1:3306" }}
    """, name="dur.toml")
    command_path = str(Path(sys.executable).parent / "resil")
    for command in (["config", "check", str(config)], ["status", "--config", str(config)]):
        out = subprocess.run([command_path, *command], capture_output=True, text=True, timeout=30)
        assert "warning:" in out.stdout and "appendonly yes" in out.stdout, out.stdout
    private.client().config_set("appendonly", "yes")
    assert plane.durability() is None
