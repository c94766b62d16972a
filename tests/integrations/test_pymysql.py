"""pymysql under the agent, against a real MariaDB primary and replica."""

from __future__ import annotations

import logging
import time

import pymysql
import pytest

import resil
from resil import counters
from resil.integrations.pymysql import PyMySQLIntegration
from resil.topology import Topology


def server_id(**kw) -> int:
    conn = pymysql.connect(user="app", password="apppw", connect_timeout=5, **kw)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@server_id")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def wait_for(condition, timeout=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_alias_lands_on_the_primary(pair_config, mariadb_pair):
    resil.start(pair_config)
    assert server_id(host="orders-db") == 1                   # alias, default port
    assert server_id(host="mysql.internal", port=3306) == 1   # alias with port
    # The replica's own endpoint is an address of the resource too: it goes to the primary.
    assert server_id(host="127.0.0.1", port=mariadb_pair.replica.port) == 1


@pytest.mark.parametrize("driver", ["pymysql", "mysqlclient"])
def test_a_connect_that_reaches_the_primary_withdraws_what_a_failed_one_said(
        pair_config, mariadb_pair, driver):
    """An agent that noted the primary unreachable (a witness for `resil monitor`) says
    it no longer is after its next successful connect there; other resources' notes and
    another endpoint's stay."""
    agent = resil.start(pair_config)
    primary = f"127.0.0.1:{mariadb_pair.primary.port}"
    agent.unreachable("orders-db", primary)
    agent.unreachable("cache", "127.0.0.1:1")
    if driver == "pymysql":
        server_id(host="orders-db")
    else:
        import MySQLdb
        MySQLdb.connect(host="orders-db", user="app", password="apppw").close()
    assert "orders-db" not in agent.noted_unreachable
    assert "cache" in agent.noted_unreachable
    agent.unreachable("orders-db", "127.0.0.1:2")
    server_id(host="orders-db")
    assert agent.noted_unreachable["orders-db"][0] == "127.0.0.1:2"


def test_unmatched_address_is_untouched(pair_config, mariadb_pair):
    resil.start(pair_config)
    # "localhost:<replica port>" is not an endpoint or alias: the app gets what it asked for.
    assert server_id(host="localhost", port=mariadb_pair.replica.port) == 2


def test_new_and_reconnecting_connections_follow_a_published_primary(pair_config, publish):
    resil.start(pair_config)
    kept = pymysql.connect(host="orders-db", user="app", password="apppw")
    assert kept.get_server_info() and server_id(host="orders-db") == 1
    publish(orders_db="b")
    assert wait_for(lambda: server_id(host="orders-db") == 2)
    kept.close()
    kept.connect()              # a reconnect (what ping(reconnect=True) does) is routed again
    with kept.cursor() as cur:
        cur.execute("SELECT @@server_id")
        assert cur.fetchone()[0] == 2
    kept.close()
    publish(orders_db="a")
    assert wait_for(lambda: server_id(host="orders-db") == 1)


def test_fault_in_resil_leaves_the_call_working(pair_config, mariadb_pair, monkeypatch, caplog):
    resil.start(pair_config)
    def broken(self, *args):
        raise RuntimeError("injected fault")
    monkeypatch.setattr(Topology, "match", broken)
    with caplog.at_level(logging.ERROR, logger="resil"):
        # The app's own call proceeds unpatched (to the address it gave) — twice.
        assert server_id(host="127.0.0.1", port=mariadb_pair.replica.port) == 2
        assert server_id(host="127.0.0.1", port=mariadb_pair.primary.port) == 1
    assert counters.faults() == {"pymysql.connect": 2}
    logged = [r for r in caplog.records if "internal fault" in r.getMessage()]
    assert len(logged) == 1 and "injected fault" in caplog.text


def test_a_fault_in_resil_leaves_a_mysqlclient_connect_working(pair_config, mariadb_pair,
                                                              monkeypatch):
    import MySQLdb
    resil.start(pair_config)
    def broken(self, *args):
        raise RuntimeError("injected fault")
    monkeypatch.setattr(Topology, "match", broken)
    conn = MySQLdb.connect(host="127.0.0.1", port=mariadb_pair.replica.port, user="app",
                           password="apppw")
    try:
        cur = conn.cursor()
        cur.execute("SELECT @@server_id")
        assert cur.fetchone()[0] == 2       # unrouted: where the application pointed it
    finally:
        conn.close()
    assert counters.faults() == {"mysqlclient.connect": 1}


def test_driver_errors_pass_through_untouched(pair_config):
    resil.start(pair_config)
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql.connect(host="orders-db", user="app", password="wrong")
    assert info.value.args[0] == 1045       # access denied, from the server itself


def test_stop_restores_the_original_and_instrument_is_idempotent(pair_config):
    original = pymysql.connections.Connection.connect
    agent = resil.start(pair_config)
    integration = next(i for i in agent.integrations if i.name == "pymysql")
    wrapped = pymysql.connections.Connection.__dict__["connect"]
    assert wrapped is not original
    integration.instrument()
    assert pymysql.connections.Connection.__dict__["connect"] is wrapped   # not wrapped twice
    resil.stop()
    assert pymysql.connections.Connection.__dict__["connect"] is original
    integration.uninstrument()                                             # idempotent
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(host="orders-db", user="app", password="apppw", connect_timeout=2)


def test_version_outside_the_range_is_a_logged_skip(caplog):
    class Future(PyMySQLIntegration):
        supported = ((0,), (0, 1))
    original = pymysql.connections.Connection.__dict__["connect"]
    integration = Future()
    with caplog.at_level(logging.WARNING, logger="resil"):
        integration.instrument()
    try:
        assert pymysql.connections.Connection.__dict__["connect"] is original
        assert "outside the supported range" in caplog.text
    finally:
        integration.uninstrument()


def test_disabled_integration_is_not_installed(pair_config, monkeypatch):
    monkeypatch.setenv("RESIL_DISABLED_INTEGRATIONS", "pymysql")
    agent = resil.start(pair_config)
    assert {i.name for i in agent.integrations} == {
        "redis", "flask", "django", "requests", "urllib3", "httpx", "urllib", "starlette",
        "aiomysql", "mysqlclient", "asyncmy"}
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(host="orders-db", user="app", password="apppw", connect_timeout=2)


def test_timeouts_are_bounded_for_routed_connections(pair_config, mariadb_pair):
    resil.start(pair_config)
    routed = pymysql.connect(host="orders-db", user="app", password="apppw")
    assert routed.connect_timeout == 5.0                      # capped from pymysql's 10
    assert routed._read_timeout == routed._write_timeout == 30.0  # none set: bounded
    mine = pymysql.connect(host="orders-db", user="app", password="apppw",
                           connect_timeout=2, read_timeout=7)
    assert (mine.connect_timeout, mine._read_timeout) == (2, 7)   # the app's own stay
    other = pymysql.connect(host="localhost", port=mariadb_pair.replica.port, user="app",
                            password="apppw")
    assert other._read_timeout is None                        # not a resource: untouched


def test_fault_after_a_successful_statement_never_fails_or_replays_it(
        pair_config, mysql_db, monkeypatch):
    """resil's bookkeeping after the statement ran (noting an open transaction) is
    guarded: a fault there is counted, and the application gets the statement's result —
    not an error, and not a second execution."""
    import resil.integrations.pymysql as integration
    resil.start(pair_config)
    conn = pymysql.connect(host="orders-db", user="app", password="apppw", database=mysql_db,
                           autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY)")
        conn.autocommit(False)              # with autocommit off, every statement is noted
        def broken(record, sql):
            raise RuntimeError("injected fault")
        monkeypatch.setattr(integration, "note", broken)
        with conn.cursor() as cur:
            assert cur.execute("INSERT INTO t () VALUES ()") == 1   # the statement's result
        monkeypatch.undo()
        conn.commit()
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM t")
            assert cur.fetchone()[0] == 1                           # it ran exactly once
    finally:
        conn.close()        # an open transaction would block the database's drop
    assert counters.faults() == {"pymysql.note": 1}
    assert "mysql_replay" not in counters.stats()


def test_a_write_in_flight_on_a_demoted_primary_gets_an_error_not_a_late_ok(
        pair_config, publish, mariadb_pair):
    """A frozen primary completes the statements it holds when it thaws and answers OK,
    for writes that exist only there. Here the write waits on a row lock instead (same
    thing from the client: sent, no reply); the primary moves away meanwhile: the
    application gets an error at once, not an OK 3 s later."""
    import threading

    from resil import context
    mariadb_pair.primary.root_sql("CREATE TABLE IF NOT EXISTS app.inflight (id INT PRIMARY "
                                  "KEY, v INT); REPLACE INTO app.inflight VALUES (1, 0)")
    resil.start(pair_config)
    with context.bypass():
        locker = mariadb_pair.primary.connect()
    with locker.cursor() as cur:
        cur.execute("SELECT * FROM inflight WHERE id = 1 FOR UPDATE")   # holds the row
    app = pymysql.connect(host="orders-db", user="app", password="apppw", database="app",
                          autocommit=True)
    outcome: list[object] = []

    def write() -> None:
        began = time.monotonic()
        try:
            with app.cursor() as cur:
                cur.execute("UPDATE inflight SET v = v + 1 WHERE id = 1")
            outcome.append(("ok", time.monotonic() - began))
        except Exception as exc:
            outcome.append((exc, time.monotonic() - began))

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.3)                             # the UPDATE is in flight, waiting
    before = counters.stats().get("statements_abandoned", 0)
    publish(orders_db="b")
    writer.join(5)
    locker.rollback()
    locker.close()
    result, waited = outcome[0]
    assert isinstance(result, pymysql.err.OperationalError), outcome
    assert result.args[0] in (2013, 2006) and waited < 2.0, outcome
    assert counters.stats().get("statements_abandoned", 0) == before + 1


def test_results_left_unread_are_not_taken_for_a_closed_connection(pair_config):
    """Before a statement, resil asks whether the server closed the idle connection
    (something to read). Rows of an unbuffered cursor the application left unread are
    something to read too: PyMySQL drains them, and the connection — with its session
    state — must be kept, not replaced."""
    resil.start(pair_config)
    counters.reset()
    conn = pymysql.connect(host="orders-db", user="app", password="apppw", database="app",
                           autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SET @kept = 5")
        stream = conn.cursor(pymysql.cursors.SSCursor)
        stream.execute("SELECT seq FROM seq_1_to_200000")
        assert stream.fetchone() == (1,)           # the rest is left unread on purpose
        with conn.cursor() as cur:
            cur.execute("SELECT @kept")
            assert cur.fetchone() == (5,)
    finally:
        conn.close()
    assert "mysql_dead_connections_replaced" not in counters.stats()


def test_a_spare_is_waited_for_only_within_its_bound(pair_config, mariadb_pair):
    """The spare a held write opens to a switch's target connects in its own thread. At
    the publish a handshake still under way is waited for, but no longer than its bound
    from its start (a target that accepts and never answers): then the statement
    connects as before, and the spare is closed. One ready but not taken is closed."""
    import socket
    import threading

    from resil.integrations.pymysql import SPARE_CONNECT_TIMEOUT, _spare_to
    from resil.topology import Endpoint
    resil.start(pair_config)
    conn = pymysql.connect(host="orders-db", user="app", password="apppw", database="app",
                           autocommit=True)
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(8)                                   # accepts, never greets
    failures = counters.stats().get("mysql_spare_failures", 0)
    try:
        started = time.monotonic()
        spare = _spare_to(conn, Endpoint("orders-db", "b", "127.0.0.1", hole.getsockname()[1]))
        time.sleep(0.3)
        assert spare.take() is None                  # never answered: given up
        assert SPARE_CONNECT_TIMEOUT - 0.05 <= time.monotonic() - started \
            <= SPARE_CONNECT_TIMEOUT + 0.5
        assert wait_for(lambda: counters.stats().get("mysql_spare_failures", 0)
                        == failures + 1, timeout=2)
    finally:
        hole.close()
    replica = mariadb_pair.replica
    ready = _spare_to(conn, Endpoint("orders-db", "b", "127.0.0.1", replica.port))
    assert wait_for(lambda: ready.ready, timeout=5)
    thread_id = ready.conn.thread_id()
    ready.drop()                                     # not taken: closed on the server
    assert wait_for(lambda: thread_id not in {r[0] for r in replica.root_sql(
        "SELECT ID FROM information_schema.PROCESSLIST")}, timeout=5)
    assert len([t for t in threading.enumerate() if t.name.startswith("resil-spare")]) <= 1
    with conn.cursor() as cur:                       # the held connection is untouched
        cur.execute("SELECT @@server_id")
        assert cur.fetchone() == (1,)


def test_a_held_write_that_wakes_to_move_is_not_cut_as_in_flight(
        pair_config, mariadb_pair, monkeypatch, caplog):
    """A write held by a lock wakes on the state that moves the primary; the agent that
    applies that state cuts what is still in flight on the old primary. The woken write
    has sent nothing there: it moves and succeeds, and is neither cut nor counted (nor
    logged as a statement whose outcome is unknown). The worst interleaving is forced:
    the agent's abandon runs after the write decided to move and before it moved."""
    import threading

    from resil.config import load_config
    from resil.control import open_control_plane
    from resil.integrations import pymysql as integration
    from resil.state import ControlState, Lock, issuer
    mariadb_pair.primary.root_sql("CREATE TABLE IF NOT EXISTS app.held (id INT "
                                  "AUTO_INCREMENT PRIMARY KEY, v INT)")
    assert wait_for(lambda: bool(mariadb_pair.replica.root_sql(
        "SHOW TABLES FROM app LIKE 'held'")), timeout=5)
    agent = resil.start(pair_config)
    config = load_config(pair_config, env={})
    plane = open_control_plane(config.control_url, config.topology, config.signing_key)
    signal = plane.load()
    base = signal.state if signal else ControlState.initial(config.topology)
    app = pymysql.connect(host="orders-db", user="app", password="apppw", database="app",
                          autocommit=True)
    with app.cursor() as cur:
        cur.execute("SELECT 1")
    before = agent.state
    plane.publish(base.evolve(epoch=base.epoch + 1, locks={"orders-db": Lock(
        "test", time.time(), "switch to b")}), issuer=issuer())
    assert wait_for(lambda: "orders-db" in agent.state.locks)
    decided = integration._boundary

    def boundary(*args):
        found = decided(*args)
        if found is integration.Boundary.MOVE:
            agent._abandon(["orders-db"], before)      # the applying agent, right now
        return found
    monkeypatch.setattr(integration, "_boundary", boundary)
    outcome: list[object] = []

    def write() -> None:
        try:
            with app.cursor() as cur:
                cur.execute("INSERT INTO held (v) VALUES (1)")
            outcome.append("ok")
        except Exception as exc:
            outcome.append(exc)
    writer = threading.Thread(target=write)
    with caplog.at_level(logging.WARNING, logger="resil"):
        writer.start()
        time.sleep(0.3)                                 # held by the lock
        assert not outcome
        plane.publish(base.evolve(epoch=base.epoch + 2, primaries={
            **base.primaries, "orders-db": "b"}, locks={}), issuer=issuer())
        writer.join(10)
    # b is the pair's read-only replica (nothing was promoted here): the moved write
    # reaches it and is refused there. What matters is that it got there, not a cut.
    assert len(outcome) == 1 and isinstance(outcome[0], pymysql.err.OperationalError)
    assert outcome[0].args[0] == 1290, outcome
    assert counters.stats().get("statements_abandoned", 0) == 0
    assert "outcome unknown" not in caplog.text
    assert app.port == mariadb_pair.replica.port      # it moved, as the same object
    app.close()
