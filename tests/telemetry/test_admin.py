"""The admin endpoint: /healthz, /readyz (a unit cut flips it), /state and /metrics."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import urllib.error
import urllib.request

import pymysql
import pytest
from prometheus_client.parser import text_string_to_metric_families

import resil
from resil.config import load_config
from resil.control import open_control_plane
from resil.state import ControlState, Lock


def get(address: tuple[str, int], path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{address[0]}:{address[1]}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metrics(address: tuple[str, int]) -> dict[tuple[str, tuple], float]:
    status, text = get(address, "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_health_readiness_state_and_metrics(pair_config, mariadb_pair):
    agent = resil.start(pair_config)
    address = agent.admin.address
    assert address[0] == "127.0.0.1" and address[1] > 0       # port 0: any free port
    status, body = get(address, "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert get(address, "/readyz")[0] == 200
    assert get(address, "/nope")[0] == 404
    status, body = get(address, "/livez")
    assert status == 200 and json.loads(body)["status"] == "ok"
    # HEAD, as load balancers and probes send it: the status and headers, no body.
    import http.client
    for path, code in (("/readyz", 200), ("/livez", 200), ("/nope", 404)):
        conn = http.client.HTTPConnection(*address, timeout=5)
        conn.request("HEAD", path)
        answer = conn.getresponse()
        assert answer.status == code and answer.read() == b""
        assert int(answer.getheader("Content-Length")) > 0
        conn.close()
    conn = http.client.HTTPConnection(*address, timeout=5)
    conn.request("POST", "/readyz")
    answer = conn.getresponse()
    assert answer.status == 405 and answer.getheader("Allow") == "GET, HEAD"
    conn.close()

    config = load_config(pair_config, env={})
    plane = open_control_plane(config.control_url, config.topology, None)
    conn = pymysql.connect(host="orders-db", user="app", password="apppw")
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
    plane.publish(ControlState.initial(config.topology).evolve(
        weights={"a": 0.0, "b": 1.0}, primaries={"orders-db": "b", "cache": "a"},
        locks={"cache": Lock("op", 1.0, "switch")}), issuer="op")
    deadline = time.monotonic() + 2
    while get(address, "/readyz")[0] != 503:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    status, body = get(address, "/readyz")
    assert json.loads(body) == {"ready": False, "reasons": ["unit a is cut (weight 0 at epoch 1)"]}

    state = json.loads(get(address, "/state")[1])
    assert state["unit"] == "a" and state["epoch"] == 1 and state["ready"] is False
    assert state["resources"]["orders-db"]["primary"] == {
        "unit": "b", "endpoint": f"127.0.0.1:{mariadb_pair.replica.port}"}
    assert state["resources"]["cache"]["lock"]["holder"] == "op"

    m = metrics(address)
    assert m[("resil_applied_epoch", ())] == 1
    assert m[("resil_ready", ())] == 0
    assert m[("resil_unit_weight", (("unit", "a"),))] == 0
    assert m[("resil_resource_locked", (("resource", "cache"),))] == 1
    assert m[("resil_resource_locked", (("resource", "orders-db"),))] == 0
    assert m[("resil_primary_info", (("resource", "orders-db"), ("unit", "b")))] == 1
    assert not [k for k in m if k[0] == "resil_faults_total"]     # no fault caught
    with conn.cursor() as cur:                   # at its next statement: moved to unit b
        cur.execute("SELECT @@server_id")
        assert cur.fetchone() == (2,)

    plane.publish(ControlState.initial(config.topology).evolve(epoch=2), issuer="op")
    deadline = time.monotonic() + 2
    while get(address, "/readyz")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with conn.cursor() as cur:                   # the connection moves back to unit a
        cur.execute("SELECT @@server_id")
        assert cur.fetchone() == (1,)
    m = metrics(address)
    assert m[("resil_ready", ())] == 1
    assert m[("resil_events_total", (("event", "mysql_connections_moved"),))] == 2
    assert m[("resil_events_total", (("event", "signals_applied"),))] == 2
    assert m[("resil_events_total", (("event", "primary_changes"),))] == 2   # a→b→a
    assert m[("resil_events_total", (("event", "locks_seen"),))] == 1
    assert m[("resil_process_resident_memory_bytes", ())] > 10_000_000
    assert m[("resil_process_cpu_seconds_total", ())] > 0
    resil.stop()
    assert agent.admin is None


def test_a_port_another_agent_serves_is_left_to_it_quietly(pair_config, caplog):
    """uvicorn --workers, a reloader, a management command beside the server: the agent
    that holds the port serves it; the others say so at INFO, not as an error."""
    from resil.telemetry.admin import AdminServer
    agent = resil.start(pair_config)
    host, port = agent.admin.address
    second = AdminServer(agent, host, port)
    with caplog.at_level(logging.INFO, logger="resil"):
        assert second.start() is False
    assert f"is served by another agent (pid {os.getpid()})" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert get(agent.admin.address, "/healthz")[0] == 200     # the owner still serves


def test_a_taken_port_is_a_clear_error_and_the_app_runs(pair_config, caplog):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    text = pair_config.read_text().replace('listen = "127.0.0.1:0"',
                                           f'listen = "127.0.0.1:{port}"')
    pair_config.write_text(text)
    try:
        with caplog.at_level(logging.ERROR, logger="resil"):
            agent = resil.start(pair_config)
        assert agent is not None and agent.admin is None
        assert f"cannot listen on 127.0.0.1:{port}" in caplog.text
        assert 'or to "off"' in caplog.text
        conn = pymysql.connect(host="orders-db", user="app", password="apppw")
        conn.ping()                              # the application works regardless
    finally:
        taken.close()


def test_traffic_cut_and_restore_flip_readiness(pair_config):
    import subprocess
    import sys
    from pathlib import Path
    resil_cmd = str(Path(sys.executable).parent / "resil")
    agent = resil.start(pair_config)
    address = agent.admin.address
    assert get(address, "/readyz")[0] == 200

    def traffic(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([resil_cmd, "traffic", *args, "--config", str(pair_config)],
                              capture_output=True, text=True, timeout=30)

    out = traffic("cut", "a")
    assert out.returncode == 0 and "unit a cut" in out.stdout
    deadline = time.monotonic() + 2
    while get(address, "/readyz")[0] != 503:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert "weight" in traffic("cut", "a").stdout            # already cut: no new epoch
    out = traffic("restore", "a")
    assert out.returncode == 0 and "restored" in out.stdout
    deadline = time.monotonic() + 2
    while get(address, "/readyz")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert traffic("cut", "nowhere").returncode == 2
    # The last unit with traffic is cut only with --yes: it is a total outage.
    assert traffic("cut", "b").returncode == 0
    out = traffic("cut", "a")
    assert out.returncode == 2 and "last unit with traffic" in out.stderr, out.stderr
    assert get(address, "/readyz")[0] == 200                 # nothing published
    assert traffic("cut", "a", "--yes").returncode == 0
    deadline = time.monotonic() + 2
    while get(address, "/readyz")[0] != 503:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    traffic("restore", "a")
    traffic("restore", "b")


def test_readiness_can_require_reachable_primaries(pair_config):
    from servers.ports import free_port
    dead = free_port()                          # nothing listens there
    pair_config.write_text(pair_config.read_text().replace(
        'listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\nready_requires_primary = true')
        + f'\n[resources.ghost]\nkind = "redis"\nendpoints = {{ a = "127.0.0.1:{dead}" }}\n')
    agent = resil.start(pair_config)
    status, body = get(agent.admin.address, "/readyz")
    assert status == 503
    assert json.loads(body)["reasons"] == [
        f"ghost: primary 127.0.0.1:{dead} unreachable (Connection refused)"]
    state = json.loads(get(agent.admin.address, "/state")[1])
    assert state["resources"]["ghost"]["health"] == {
        f"127.0.0.1:{dead}": {"unit": "a", "connect_failures": 0}}


def test_http_routing_metrics_and_state(write_config, tmp_path):
    import requests

    from servers.web import HttpUnits
    with HttpUnits(per_unit=1) as units:
        agent = resil.start(write_config(
            f'unit = "a"\n[control]\nurl = "{(tmp_path / "s.json").as_uri()}"\n'
            '[admin]\nlisten = "127.0.0.1:0"\n'
            + units.toml("products", "eject_after = 1\neject_time = 60\n")))
        for _ in range(3):
            assert requests.get("http://products/x", timeout=5).json()["unit"] == "a"
        units.kill("a")
        try:
            for _ in range(4):
                assert requests.get("http://products/x", timeout=5).json()["unit"] == "b"
        finally:
            units.start("a")
        found = metrics(agent.admin.address)
        dead = f"http://127.0.0.1:{units.servers['a'][0].port}"
        live = f"http://127.0.0.1:{units.servers['b'][0].port}"
        assert found[("resil_http_calls_total",
                      (("endpoint_unit", "a"), ("resource", "products")))] == 4
        assert found[("resil_http_calls_total",
                      (("endpoint_unit", "b"), ("resource", "products")))] == 4
        assert found[("resil_http_retries_total", (("resource", "products"),))] == 1
        assert found[("resil_http_ejections_total",
                      (("endpoint", dead), ("resource", "products")))] == 1
        assert found[("resil_http_endpoint_unhealthy",
                      (("endpoint", dead), ("resource", "products"), ("unit", "a")))] == 1
        assert found[("resil_http_endpoint_unhealthy",
                      (("endpoint", live), ("resource", "products"), ("unit", "b")))] == 0
        status, body = get(agent.admin.address, "/state")
        health = json.loads(body)["resources"]["products"]["health"]
        assert health[dead]["state"] == "ejected" and health[dead]["ejections"] == 1
        assert 59 < health[dead]["ejected_for_s"] <= 60
        assert health[live]["state"] == "healthy"


def test_bad_and_stalled_clients_leave_the_endpoint_serving(write_config, tmp_path):
    """A client that connects and says nothing, one that sends garbage, one that sends an
    endless header and one that hangs up mid-request: the endpoint keeps answering the
    others at once, and stops promptly with the agent."""
    import threading
    agent = resil.start(write_config(
        f'unit = "a"\n[control]\nurl = "{(tmp_path / "s.json").as_uri()}"\n'
        '[admin]\nlisten = "127.0.0.1:0"\n'
        '[resources.api]\nkind = "http"\nendpoints = { a = ["http://127.0.0.1:1"] }\n'))
    address = agent.admin.address
    silent = socket.create_connection(address, timeout=5)          # says nothing
    garbage = socket.create_connection(address, timeout=5)
    garbage.sendall(b"\x00\xff\r\n\r\n")
    endless = socket.create_connection(address, timeout=5)
    endless.sendall(b"GET /healthz HTTP/1.0\r\n" + b"X: " + b"y" * 20000)
    rude = socket.create_connection(address, timeout=5)
    rude.sendall(b"GET /hea")
    rude.close()
    try:
        started = time.monotonic()
        for _ in range(20):
            status, body = get(address, "/healthz")
            assert status == 200 and json.loads(body)["status"] == "ok"
        assert time.monotonic() - started < 5    # not queued behind the silent client
        assert garbage.recv(4096) == b""          # no request line: closed, no answer
        reply = b""
        while chunk := endless.recv(4096):       # an oversized head still gets one answer
            reply += chunk
        assert reply.startswith(b"HTTP/1.0 200 OK\r\n")
        status, body = get(address, "/healthz")
        assert status == 200
    finally:
        silent.close()
        garbage.close()
        endless.close()
    resil.stop()
    assert not [t for t in threading.enumerate() if t.name == "resil-admin"]
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=1).close()
