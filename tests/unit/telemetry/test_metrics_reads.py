"""One ``/metrics`` scrape reads the control plane once (it used to read it five times)."""

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


def test_a_scrape_reads_the_heartbeats_once(write_config, tmp_path, monkeypatch):
    agent = resil.start(write_config(CONFIG.format(url=(tmp_path / "state.json").as_uri())))
    assert agent is not None and agent.plane is not None and agent.sampler is not None
    agent.plane.report({"id": "other:1", "pid": 1, "ppid": 0, "reported_at": time.time(),
                        "utilization": 0.9, "unit": "b"})
    reads = []
    original = agent.plane.agents
    me = threading.get_ident()      # the heartbeat thread reads too: count only ours

    def counted():
        if threading.get_ident() == me:
            reads.append(1)
        return original()
    monkeypatch.setattr(agent.plane, "agents", counted)
    text = prometheus_text(agent)
    assert len(reads) == 1
    assert "resil_scale_instances 2" in text          # the other instance was seen
    reads.clear()
    state_document(agent)
    assert reads == []                                # /state needs no heartbeat at all
