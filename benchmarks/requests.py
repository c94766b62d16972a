"""What request metrics cost: a Flask hello-world under gunicorn, with and without resil.

Starts the same app twice — ``gunicorn -w 2 web:app`` and ``resil-run gunicorn -w 2
web:app`` (its Flask integration counts every request) — and drives both from client
threads in interleaved rounds, reporting the median request latency and the ratio
resil/baseline. The client is a small HTTP/1.0 socket loop (not urllib, whose own
overhead would bury the difference). No database: this is the request path alone.

Usage: ``.venv/bin/python benchmarks/requests.py [--rounds N] [--requests N]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
APP = "from flask import Flask\napp = Flask(__name__)\n\n@app.get('/')\ndef index():\n" \
      "    return 'hello'\n"
CONFIG = 'unit = "a"\n[control]\nurl = "{state}"\n[admin]\nlisten = "127.0.0.1:0"\n' \
         '[resources.cache]\nkind = "redis"\nendpoints = {{ a = "127.0.0.1:6379" }}\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_request(port: int) -> float:
    began = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        while s.recv(65536):
            pass
    return time.perf_counter() - began


def batch(port: int, n: int, threads: int = 4) -> float:
    """Median latency (µs) of ``n`` requests sent by ``threads`` client threads."""
    latencies: list[float] = []
    lock = threading.Lock()

    def client(count: int) -> None:
        mine = [one_request(port) for _ in range(count)]
        with lock:
            latencies.extend(mine)
    workers = [threading.Thread(target=client, args=(n // threads,)) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return statistics.median(latencies) * 1e6


def serve(cmd: list[str], cwd: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                                 "RESIL_CONFIG": str(cwd / "resil.toml")})
    deadline = time.monotonic() + 20
    while True:
        try:
            one_request(port)
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{cmd} did not start") from None
            time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="resil-bench-requests-"))
    (work / "web.py").write_text(APP)
    (work / "resil.toml").write_text(CONFIG.format(state=(work / "state.json").as_uri()))
    ports = {"baseline": free_port(), "resil": free_port()}
    gunicorn = [str(BIN / "gunicorn"), "-w", "2", "web:app", "-b"]
    procs = {
        "baseline": serve([*gunicorn, f"127.0.0.1:{ports['baseline']}"], work,
                          ports["baseline"]),
        "resil": serve([str(BIN / "resil-run"), *gunicorn, f"127.0.0.1:{ports['resil']}"],
                       work, ports["resil"]),
    }
    results: dict[str, list[float]] = {"baseline": [], "resil": []}
    try:
        for mode in procs:                          # warm both up
            batch(ports[mode], 200)
        for r in range(args.rounds):
            order = ["baseline", "resil"] if r % 2 == 0 else ["resil", "baseline"]
            for mode in order:
                results[mode].append(batch(ports[mode], args.requests))
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(20)
    ratios = [r / b for r, b in zip(results["resil"], results["baseline"], strict=True)]
    base, with_resil = (statistics.median(results[m]) for m in ("baseline", "resil"))
    print(f"Flask hello-world, gunicorn -w 2, 4 client threads, {args.rounds} interleaved "
          f"rounds of {args.requests} requests")
    print(f"  baseline   median latency {base:8.1f} µs")
    print(f"  resil      median latency {with_resil:8.1f} µs   "
          f"ratio {statistics.median(ratios):.3f} (per-round {min(ratios):.3f}–"
          f"{max(ratios):.3f}), +{with_resil - base:.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
