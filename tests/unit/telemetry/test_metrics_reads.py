"""What one ``/metrics`` scrape reads of the control plane: the workers' heartbeats and
the fleet's sums, never the whole fleet (it used to read every heartbeat five times)."""

from __future__ import annotations

import threading
import time

import resil
from resil.telemetry.admin import state_document
from resil.telemetry.metrics import prometheus_text

CONFIG = """
unit = "a"
[control]
url = "{url}"
[admin]
listen = "127.0.0.1:0"
[resources.db]
kind = "mysql"
primary = "a"
endpoints = {{ a = "10.0.0.1:3306", b = "10.0.0.2:3306" }}
[resources.products]
kind = "http"
endpoints = {{ a = ["http://10.0.0.3:8000"], b = ["http://10.0.0.4:8000"] }}
"""


def test_a_scrape_reads_its_workers_and_the_fleet_sums_once(write_config, tmp_path,
                                                            monkeypatch):
    agent = resil.start(write_config(CONFIG.format(url=(tmp_path / "state.json").as_uri())))
    assert agent is not None and agent.plane is not None and agent.sampler is not None
    agent.plane.report({"id": "other:1", "pid": 1, "ppid": 0, "reported_at": time.time(),
                        "utilization": 0.9, "unit": "b"})
    agent.plane.report(agent.heartbeat())
    reads: list[str] = []
    inside = []
    me = threading.get_ident()      # the heartbeat thread reads too: count only ours
    for name in ("agents", "children", "fleet_load", "agent_ids", "heartbeats",
                 "get_document"):
        original = getattr(agent.plane, name)

        def counted(*args, _name=name, _original=original):
            if threading.get_ident() != me or inside:   # the file plane's own use of agents()
                return _original(*args)
            reads.append(_name)
            inside.append(_name)
            try:
                return _original(*args)
            finally:
                inside.pop()
        monkeypatch.setattr(agent.plane, name, counted)
    text = prometheus_text(agent)
    # The scaling recommendation: one small document, whatever the fleet's size.
    assert sorted(reads) == ["children", "fleet_load", "get_document"]
    assert "resil_scale_instances 2" in text          # the other instance was seen
    assert 'resil_scale_unit_instances{service="default",unit="b"} 1' in text
    reads.clear()
    prometheus_text(agent)
    assert sorted(reads) == ["children", "fleet_load"]  # the document is reused for 5 s
    reads.clear()
    state_document(agent)
    assert reads == []                                # /state needs no heartbeat at all
