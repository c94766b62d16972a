"""One agent's control-plane reads do not grow with the fleet: an agent serving the admin
endpoint (the one that works out scale figures) beside 20 and then 2,000 simulated
instances, on a real Redis control plane, scraped as Prometheus would. The keys Redis
looks up for it are counted (``keyspace_hits + misses``, less the simulated fleet's)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import resil
from resil.config import load_config
from resil.telemetry.metrics import prometheus_text

CONFIG = """
unit = "a"
[control]
url = "redis://127.0.0.1:{port}/0?prefix={prefix}"
heartbeat_interval = 0.2
[admin]
listen = "127.0.0.1:0"
[resources.db]
kind = "mysql"
primary = "a"
endpoints = {{ a = "10.0.0.1:3306", b = "10.0.0.2:3306" }}
aliases = ["db"]
"""


def lookups(client: Any) -> int:
    stats = client.info("stats")
    return int(stats["keyspace_hits"]) + int(stats["keyspace_misses"])


@pytest.mark.adversarial
def test_an_agents_reads_do_not_grow_with_the_fleet(
        redis_pair: Any, write_config: Callable[[str], Path]) -> None:
    server = redis_pair.primary
    client = server.client()
    per_second = {}
    for size in (20, 2000):
        prefix = f"cost{uuid.uuid4().hex[:8]}"
        config = load_config(write_config(CONFIG.format(port=server.port, prefix=prefix)),
                             env={})
        agent = resil.start(config)
        assert agent is not None and agent.plane is not None
        try:
            agent.router.primary_endpoint("mysql", "db", 3306)   # watch and heartbeats
            now = time.time()
            for i in range(size):        # the simulated fleet: written once, live 10 s
                agent.plane.report({"id": f"sim:{i}", "unit": "ab"[i % 2], "epoch": 0,
                                    "started_at": now, "reported_at": now,
                                    "utilization": 0.5})
            time.sleep(0.5)
            before, began = lookups(client), time.monotonic()
            for _ in range(10):          # 2 s: 10 heartbeats and 10 scrapes
                prometheus_text(agent)
                time.sleep(0.2)
            per_second[size] = (lookups(client) - before) / (time.monotonic() - began)
        finally:
            resil.stop()
    print(f"keys read per second: {per_second}")
    # Before, each heartbeat and each scrape read every agent's heartbeat: ×100 here.
    assert per_second[2000] <= 2 * per_second[20] + 5, per_second
