"""The HTTP caller of a chaos drill: a process of one unit that calls http resources
through the agent, as an application of that unit would, and reports every call.

``python -m resil.ops.caller --config PATH --unit UNIT --resource NAME [--path /] ...``
starts the agent for ``UNIT`` (admin endpoint off), then calls
``http://NAME/PATH`` of each resource in turn with ``urllib.request`` (patched by the agent
like any client: same-unit first, ejection, retries) until its standard input closes.
Each call is one JSON line on standard output::

    {"t": 1764.12, "resource": "products", "ms": 3.1, "ok": true, "status": 200,
     "error": "", "units": ["b"], "faulted": 0}

``t`` is the wall-clock time the call started, ``units`` the units its attempts went to
(from the agent's counters), ``faulted`` how many chaos effects it met.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m resil.ops.caller")
    p.add_argument("--config", required=True)
    p.add_argument("--unit", required=True)
    p.add_argument("--resource", action="append", required=True)
    p.add_argument("--path", default="/")
    p.add_argument("--pause", type=float, default=0.01, help="seconds between two calls")
    p.add_argument("--timeout", type=float, default=1.0, help="each call's own timeout")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the caller until standard input closes."""
    args = _arguments(argv)
    os.environ["RESIL_UNIT"] = args.unit
    os.environ["RESIL_ADMIN_LISTEN"] = "off"
    import resil
    from resil import counters
    agent = resil.start(args.config)
    if agent is None:
        print("resil caller: the agent did not start", file=sys.stderr)
        return 1
    stop = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        stop.set()
    threading.Thread(target=wait_for_eof, daemon=True).start()
    out = sys.stdout
    turn = 0
    while not stop.is_set():
        resource = args.resource[turn % len(args.resource)]
        turn += 1
        before = counters.stats()
        started, began = time.time(), time.perf_counter()
        ok, status, error = False, 0, ""
        try:
            with urllib.request.urlopen(f"http://{resource}{args.path}",
                                        timeout=args.timeout) as response:
                response.read()
                status, ok = response.status, response.status < 500
        except urllib.error.HTTPError as exc:
            status, ok = exc.code, exc.code < 500
            error = "" if ok else f"HTTP {exc.code}"
        except Exception as exc:
            error = type(exc).__name__
        elapsed = (time.perf_counter() - began) * 1000
        after = counters.stats()
        units = [key.rsplit(":", 1)[1] for key, n in after.items()
                 if key.startswith(f"http_calls:{resource}:") for _ in range(
                     int(n - before.get(key, 0)))]
        faulted = sum(int(n - before.get(key, 0)) for key, n in after.items()
                      if key.startswith("chaos_injected:") and not key.endswith(":latency"))
        out.write(json.dumps({"t": started, "resource": resource, "ms": round(elapsed, 2),
                              "ok": ok, "status": status, "error": error, "units": units,
                              "faulted": faulted}) + "\n")
        out.flush()
        stop.wait(args.pause)
    return 0


if __name__ == "__main__":
    sys.exit(main())
