"""HTTP routing under load, against real servers in two units (issue: same-unit routing).

The agent runs in this process, in unit ``a``; eight client threads call the http
resource ``products`` by name with requests. What must hold, measured on every call:

- while both units are healthy, every call stays in unit ``a``;
- when unit ``a``'s servers are killed mid-load, no GET fails (each failed attempt is
  retried in unit ``b``), POSTs without an ``Idempotency-Key`` are not retried and fail
  with requests' own ``ConnectionError``, POSTs with one never fail, and the dead
  endpoints are ejected; when they come back, half-open probes return traffic to them;
- ``resil traffic cut a`` moves every call to unit ``b`` within a second, and ``resil
  traffic restore a`` brings them back.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import resil
from resil import counters, registry
from servers.web import HttpUnits

RESIL = str(Path(sys.executable).parent / "resil")


@dataclass
class Call:
    started: float
    ended: float
    kind: str           # GET, POST, POST+key
    unit: str | None
    error: BaseException | None


class Load:
    """Client threads calling ``http://products/...`` until stopped; every call recorded."""

    def __init__(self, threads: int = 8) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, n: int) -> None:
        import requests
        kinds = ("GET", "GET", "POST", "POST+key")
        session = requests.Session()
        i = 0
        while not self._stop.is_set():
            kind = kinds[(n + i) % len(kinds)]
            i += 1
            started = time.monotonic()
            unit, error = None, None
            try:
                if kind == "GET":
                    answer = session.get("http://products/items", timeout=5)
                else:
                    headers = {"Idempotency-Key": f"{n}-{i}"} if kind == "POST+key" else {}
                    answer = session.post("http://products/orders", data=b"{}", timeout=5,
                                          headers=headers)
                unit = answer.json()["unit"]
            except Exception as exc:
                error = exc
            with self._lock:
                self.calls.append(Call(started, time.monotonic(), kind, unit, error))
            time.sleep(0.002)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def between(self, start: float, end: float) -> list[Call]:
        """Calls that started in [start, end)."""
        with self._lock:
            return [c for c in self.calls if start <= c.started < end]


@pytest.fixture
def units() -> Iterator[HttpUnits]:
    with HttpUnits() as running:
        yield running


@pytest.fixture
def config(write_config, tmp_path, units) -> Path:
    path = write_config(
        f'unit = "a"\n[control]\nurl = "{(tmp_path / "state.json").as_uri()}"\n'
        '[admin]\nlisten = "off"\n'
        + units.toml("products", "eject_time = 1.0\n"))
    resil.start(path)
    return path


def test_killing_the_own_unit_mid_load(config, units):
    with Load() as load:
        time.sleep(1.0)
        killed = time.monotonic()
        units.kill("a")
        time.sleep(2.0)
        restarted = time.monotonic()
        units.start("a")
        time.sleep(2.5)
        end = time.monotonic()

    healthy = [c for c in load.between(0, killed) if c.ended < killed]
    assert len(healthy) > 100
    assert {c.unit for c in healthy} == {"a"}, "100 % of calls stay in the own unit"

    outage = load.between(killed, restarted)
    gets = [c for c in outage if c.kind == "GET"]
    assert gets and not [c.error for c in gets if c.error], "no GET fails"
    keyed = [c for c in outage if c.kind == "POST+key"]
    assert keyed and not [c.error for c in keyed if c.error]
    import requests
    failed_posts = [c.error for c in outage if c.kind == "POST" and c.error]
    assert all(type(e) is requests.ConnectionError for e in failed_posts), failed_posts
    assert counters.stats().get("http_retries:products", 0) >= 1
    ejected = sum(v for k, v in counters.stats().items() if k.startswith("http_ejections:"))
    assert ejected >= 2, "both dead endpoints are ejected"
    later = load.between(killed + 0.5, restarted)
    assert {c.unit for c in later} == {"b"}, "ejected endpoints get no calls"

    back = load.between(end - 1.0, end)
    assert back and {c.unit for c in back} == {"a"}, "after the probes, traffic returns"
    snapshot = registry.router().health_snapshot()["products"]
    assert all(h["state"] == "healthy" for h in snapshot.values())
    print(f"\n{len(load.calls)} calls; during the outage: {len(gets)} GETs (0 failed), "
          f"{len(failed_posts)} un-keyed POSTs failed, {ejected} ejections")


def test_a_traffic_cut_moves_calls_within_a_second(config, units):
    def traffic(*args: str) -> None:
        subprocess.run([RESIL, "traffic", *args, "--config", str(config)], check=True,
                       capture_output=True, timeout=30)

    with Load(threads=4) as load:
        time.sleep(0.5)
        cut = time.monotonic()
        traffic("cut", "a")
        published = time.monotonic()
        time.sleep(1.5)
        restore = time.monotonic()
        traffic("restore", "a")
        restored = time.monotonic()
        time.sleep(1.5)
        end = time.monotonic()

    assert {c.unit for c in load.between(0, cut)} == {"a"}
    assert {c.unit for c in load.between(cut + 1.0, restore)} == {"b"}
    assert {c.unit for c in load.between(restore + 1.0, end)} == {"a"}
    assert not [c for c in load.calls if c.error], "a cut fails no call"
    last_a = max(c.ended for c in load.between(cut, restore) if c.unit == "a")
    first_a = min(c.started for c in load.between(restore, end) if c.unit == "a")
    assert last_a - published < 1.0 and first_a - restored < 1.0
    print(f"\nlast call to the cut unit ended {last_a - published:+.3f} s after `resil "
          f"traffic cut` returned; first call back {first_a - restored:+.3f} s after "
          "`restore` returned")
