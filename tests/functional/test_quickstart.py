"""The README's first command (`make demo`) runs examples/quickstart/run.py: keep it working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).parents[2] / "examples" / "quickstart" / "run.py"


def test_quickstart_runs_to_the_end():
    out = subprocess.run([sys.executable, str(RUN)], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK: no order lost, no code changed" in out.stdout
    assert "server_id=1 (1 orders in total)" in out.stdout
    assert "server_id=2 (2 orders in total)" in out.stdout
