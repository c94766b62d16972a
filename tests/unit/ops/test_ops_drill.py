"""The parts of `resil drill` that need no database: measurements, locality, lease."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time

import pytest

from resil.config import load_config
from resil.control import open_control_plane
from resil.ops.drill import Drill, Report, longest_gap
from resil.ops.local import _proc_address, listening_pids, local_addresses
from resil.ops.monitor import LEASE
from resil.ops.probe import Ack, ClientError, DrillInputError
from resil.topology import Endpoint

A = Endpoint("db", "a", "127.0.0.1", 3306)
B = Endpoint("db", "b", "127.0.0.1", 3307)


def test_proc_net_addresses_are_decoded():
    assert _proc_address("0100007F") == ipaddress.ip_address("127.0.0.1")
    assert _proc_address("00000000") == ipaddress.ip_address("0.0.0.0")
    assert _proc_address("00000000000000000000000001000000") == ipaddress.ip_address("::1")
    assert _proc_address("0000000000000000FFFF00000100007F") == \
        ipaddress.ip_address("::ffff:127.0.0.1")


def test_longest_gap_between_acknowledgements():
    acks = [Ack(1, 0.0, 0.01), Ack(2, 0.02, 0.03), Ack(3, 0.04, 0.53), Ack(4, 0.54, 0.55)]
    assert longest_gap(acks) == pytest.approx(0.5)
    assert longest_gap(acks[:1]) is None


def test_report_rpo_and_errors():
    report = Report("kill", "db", "mysql", "run1", A, 3, new_primary=B, epoch_after=5,
                    zero=10.0)
    report.acks = [Ack(1, 9.0, 9.1), Ack(2, 9.2, 9.3), Ack(3, 9.4, 9.6), Ack(4, 11, 11.2)]
    report.lost = report.acks[1:3]
    report.errors = [ClientError(10.1, "OperationalError", "gone"),
                     ClientError(10.9, "OperationalError", "refused")]
    report.rto_s = 1.2
    data = report.to_dict()
    assert data["rpo"] == {"lost_writes": 2, "lost_window_s": 0.3, "lost_seqs": [2, 3]}
    assert data["client_errors"]["count"] == 2
    assert data["client_errors"]["window_s"] == 0.8
    assert data["client_errors"]["first"][0] == {"at_s": 0.1, "type": "OperationalError",
                                                 "message": "gone"}
    assert data["new_primary"] == {"unit": "b", "endpoint": "127.0.0.1:3307"}
    assert data["epoch"] == {"before": 3, "after": 5} and data["ok"]
    assert report.exit_code == 0
    assert "RTO 1.200 s; RPO 2 lost write(s) over 0.3 s; 2 client error(s)" in report.summary()
    report.problem = "no recovery"
    assert report.exit_code == 1 and report.to_dict()["ok"] is False


def test_only_addresses_of_this_host_are_local():
    assert local_addresses("127.0.0.1") == [ipaddress.ip_address("127.0.0.1")]
    assert all(a.is_loopback for a in local_addresses("localhost"))
    with pytest.raises(DrillInputError, match="10.255.255.1 is not an address of this host"):
        local_addresses("10.255.255.1")
    with pytest.raises(DrillInputError, match="does not resolve"):
        local_addresses("no-such-host.invalid")


def test_the_listening_process_is_found_by_its_socket():
    server = subprocess.Popen([sys.executable, "-c", (
        "import socket, sys, time\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
        "print(s.getsockname()[1], flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        inodes, pids = listening_pids(port, local_addresses("127.0.0.1"))
        assert len(inodes) == 1 and pids == [server.pid]
    finally:
        server.kill()
        server.wait()
    deadline = time.monotonic() + 5
    while listening_pids(port, local_addresses("127.0.0.1"))[0]:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_an_external_monitor_holding_the_lease_is_left_to_act(write_config, tmp_path):
    path = write_config(f"""
        unit = "a"
        [control]
        url = "{(tmp_path / 'state.json').as_uri()}"
        [resources.db]
        kind = "mysql"
        primary = "a"
        endpoints = {{ a = "127.0.0.1:3306", b = "127.0.0.1:3307" }}
        """)
    config = load_config(path, env={})
    plane = open_control_plane(config.control_url, config.topology, None)
    drill = Drill(config, "db", out=lambda line: None)
    report = Report("kill", "db", "mysql", "r", A, 0)
    assert plane.lease(LEASE, "someone@elsewhere:1", 30)
    with drill._monitoring(config.resources["db"], plane, report):
        pass
    assert report.details["monitor"] == "external"
    plane.release(LEASE, "someone@elsewhere:1")
    with drill._monitoring(config.resources["db"], plane, report):
        assert not plane.lease(LEASE, "someone@elsewhere:1", 30)    # ours now
    assert report.details["monitor"] == "in-process"
    assert plane.lease(LEASE, "someone@elsewhere:1", 30)             # released after


def test_unknown_and_http_resources_are_bad_input(write_config, tmp_path):
    path = write_config(f"""
        unit = "a"
        [control]
        url = "{(tmp_path / 'state.json').as_uri()}"
        [resources.api]
        kind = "http"
        endpoints = {{ a = ["http://127.0.0.1:8000"] }}
        """)
    config = load_config(path, env={})
    with pytest.raises(DrillInputError, match="unknown resource 'nope' \\(known: api\\)"):
        Drill(config, "nope").kill()
    with pytest.raises(DrillInputError, match="api is an http resource"):
        Drill(config, "api").switch("a")
