"""`make demo`: examples/demo/run.py in its short mode (--quick), end to end.

Two units on loopback (MariaDB and Redis pairs, the Django product service and the Flask
storefront under resil-run in each), shoppers through a planned switch, a traffic cut and
restore, and a kill -9 of the primary database with resil monitor failing over. The demo's
own table must show 0 lost orders, 0 errors in the planned steps and an RTO; the timeline
must be a PNG; nothing it started may survive it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the demo extra: pip install -e '.[demo]' "
                    "(make demo installs it)")

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "run.py"


def row(output: str, step: str) -> list[str]:
    """The cells of the results table's row for ``step``."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == step:
            return cells
    raise AssertionError(f"no row {step!r} in the table:\n{output[-3000:]}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and \
        Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"


def test_the_demo_runs_to_the_end_and_loses_no_order(tmp_path):
    png = tmp_path / "timeline.png"
    done = subprocess.run([sys.executable, str(DEMO), "--quick", "--png", str(png)],
                          capture_output=True, text=True, timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]

    # step | requests | errors | p99 latency | longest write pause | RTO | checkouts ok | lost
    for step in ("baseline", "planned switch", "chaos: 50% loss, beijing products",
                 "traffic cut beijing", "traffic restore beijing", "tail"):
        cells = row(output, step)
        assert int(cells[1]) > 20 and int(cells[6]) > 5, (step, cells)
    for step in ("planned switch", "chaos: 50% loss, beijing products", "traffic cut beijing",
                 "traffic restore beijing"):
        assert row(output, step)[2] == "0", (row(output, step), output[-4000:])
    assert "injected fault" in output and "cleared 1 fault" in output
    kill = row(output, "kill -9 primary db")
    assert re.fullmatch(r"\d+\.\d\d s", kill[5]), kill
    assert float(kill[5].split()[0]) < 10, kill
    # Only the shoppers' requests in flight at the kill may fail (their statement was on
    # the dead server): the others wait for the failover (24 failed before they did).
    assert int(kill[2]) <= 4, (kill, output[-4000:])
    assert row(output, "**all**")[7] == "**0**", output[-3000:]
    assert ", 0 of them missing" in output
    assert "load balancer sends shoppers to: hangzhou\n" in output      # beijing cut
    assert "published at epoch" in output                               # the monitor

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000

    pids = [int(pid) for pid in re.findall(r"^  \S+ +pid (\d+)  log", output, re.M)]
    assert len(pids) == 5, output        # two product services, two storefronts, the monitor
    assert not [pid for pid in pids if alive(pid)], "the demo left processes running"
