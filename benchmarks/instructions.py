"""What resil adds to a round trip, in instructions rather than seconds.

Run it as ``.venv/bin/python benchmarks/instructions.py [--ops KEY ...]`` (``make
bench-instructions``). It starts the same real servers as ``overhead.py`` and runs each
of its operations in the baseline and resil modes inside one child process per mode,
under ``valgrind --tool=callgrind``, which counts the instructions the CPU executes.
Unlike a wall-clock ratio, the count does not move with the rest of the machine: on a
busy two-core machine ``overhead.py``'s quartiles span ±15 %. It is not exact either:
between two runs of the same revision, httpx's counts stayed within 0.2 %, but the
requests baseline moved by 3 % (90,000 instructions; the cause is not known yet), so a
difference of a few thousand instructions between runs means nothing. Within a run,
``PYTHONHASHSEED`` is fixed and the heap is frozen before each phase (``gc.freeze``), so
that a full collection cannot fall in one phase and not the other.

How it is measured: the child runs each operation ``n`` times, then ``3 n`` times, with
a marker before and after each phase (a call of ``os.getppid``, at which callgrind
writes out the counts so far, ``--dump-before``). The cost of one operation is the
difference of the two phases over ``2 n``, so set-up (making the client, the warm-up)
cancels out; the collection and freeze before each phase fall outside both (before
2026-12-02 the first phase of each operation counted them, which made the first
operation of a run look up to half cheaper than it is). Only
the main thread is counted: the agent's own threads (watching the control state,
heartbeats) run on a timer, and under valgrind's ~50× slowdown they would run many
times more often per operation than they do for real (for the same reason the agent's
timed work is set to once a minute here, see :func:`quiet`).

An instruction is not a nanosecond (a syscall or a cache miss costs more than its count
says), so this is a check of the code's own cost, beside ``overhead.py``'s timings,
not a replacement for them. It writes ``benchmarks/results/instructions.json``; a run
that fails keeps its temporary folder (the servers' data and logs) for inspection.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "instructions.json"
MODES = ("baseline", "resil")
#: Operation → how many times the first phase runs it (the second runs it 3×).
COUNTS = {"mysql_select": 300, "redis_get": 300, "aiomysql_select": 300,
          "mysqlclient_select": 300,
          "mysql_connect_select": 30, "mysqlclient_connect_select": 30,
          "redis_connect_ping": 30,
          "requests_get": 100, "httpx_get": 100,
          "requests_get_plain": 100, "httpx_get_plain": 100}


def child(mode: str, keys: list[str], servers_json: str, config_path: str) -> None:
    """Inside valgrind: every operation in ``mode``, each as two marked phases."""
    sys.path.insert(0, str(HERE))
    import overhead

    from resil.config import load_config
    servers = overhead.Servers(**json.loads(servers_json))
    config = load_config(config_path, {})
    address = overhead.addresses(servers)[mode]
    operations = {op.key: op for op in overhead.OPERATIONS}
    with overhead.MODE_CONTEXT[mode](config):
        for key in keys:                    # what happens once (imports, caches) happens here
            operations[key].run(address, 5)
        os.getppid()                        # the marker: start-up ends here
        for key in keys:
            n = COUNTS[key]
            for times in (n, 3 * n):
                # What exists now is kept out of the collector's sight: a full collection
                # falling in one phase and not the other would count the whole heap. The
                # collection itself runs between a phase's markers, counted in neither
                # (in the first phase it would walk the whole heap, and be taken for
                # the operations' own cost with a minus sign).
                gc.collect()
                gc.freeze()
                os.getppid()
                operations[key].run(address, times)
                os.getppid()


def totals(prefix: Path, parts: int) -> list[int]:
    """The main thread's instruction count in each dumped part, in order."""
    found = []
    for part in range(1, parts + 1):
        text = Path(f"{prefix}.{part}-01").read_text()
        line = next(line for line in text.splitlines() if line.startswith(("summary:", "totals:")))
        found.append(int(line.split()[1]))
    return found


def measure(mode: str, keys: list[str], servers_json: str, config: Path,
            work: Path) -> dict[str, float]:
    """Instructions per operation in ``mode``, from one child under callgrind."""
    prefix = work / f"callgrind-{mode}"
    command = ["valgrind", "--tool=callgrind", "--separate-threads=yes",
               "--dump-before=os_getppid", f"--callgrind-out-file={prefix}",
               sys.executable, str(Path(__file__).resolve()), "--child", mode,
               "--servers", servers_json, "--config", str(config), "--ops", *keys]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("RESIL_CONFIG", None)
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {mode} child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    # Parts: start-up, then per operation and phase the collection, then the phase.
    counts = totals(prefix, 1 + 4 * len(keys))
    result = {}
    for i, key in enumerate(keys):
        once, thrice = counts[2 + 4 * i], counts[4 + 4 * i]
        result[key] = (thrice - once) / (2 * COUNTS[key])
    return result


def quiet(config: Path) -> Path:
    """``overhead.py``'s configuration with the agent's timed work out of the way: no
    admin endpoint, control state and heartbeats once a minute. What they cost is per
    second, not per operation, and under valgrind each second holds fifty times fewer
    operations (their wake-ups then take the main thread's turn at the GIL)."""
    text = config.read_text().replace(
        "[control]\n", "[control]\npoll_interval = 60\nheartbeat_interval = 60\n", 1)
    config.write_text(text + '\n[admin]\nlisten = "off"\n')
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", nargs="+", choices=sorted(COUNTS), default=list(COUNTS),
                        help="operations to count (default: all)")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--servers", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.ops, args.servers, args.config)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE))
    import overhead

    from servers.ports import stop_servers_on_sigterm
    stop_servers_on_sigterm()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="resil-instructions-"))
    with overhead.real_servers(work) as servers:
        config = quiet(overhead.write_config(work, servers))
        servers_json = json.dumps(servers.__dict__)
        counts = {}
        for mode in MODES:
            print(f"{mode} ...", flush=True)
            counts[mode] = measure(mode, args.ops, servers_json, config, work)
    shutil.rmtree(work, ignore_errors=True)
    labels = {op.key: op.label for op in overhead.OPERATIONS}
    print("\nInstructions per operation (main thread, callgrind; ratio = resil/baseline)\n")
    print(f"  {'operation':<36} {'baseline':>11} {'resil':>11} {'ratio':>7} {'added':>9}")
    rows = []
    for key in args.ops:
        base, ours = counts["baseline"][key], counts["resil"][key]
        rows.append({"op": key, "baseline": base, "resil": ours, "ratio": ours / base})
        print(f"  {labels[key]:<36} {base:11,.0f} {ours:11,.0f} {ours / base:7.3f}"
              f" {ours - base:+9,.0f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows,
                                   "runtime_s": round(time.monotonic() - started)}, indent=2))
    print(f"\nwritten to {RESULTS.relative_to(HERE.parent)}; "
          f"runtime {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
