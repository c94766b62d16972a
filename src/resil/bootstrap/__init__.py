"""Process bootstrap for ``resil-run``.

``resil-run`` puts this folder first on ``PYTHONPATH``; Python then imports our
``sitecustomize`` at start-up, which starts the agent and chains to the next
``sitecustomize`` on the path (the user's own, or OpenTelemetry's). When
``opentelemetry-instrument`` runs *inside* ``resil-run``, its ``sitecustomize`` comes
first and does not chain; it does call every ``opentelemetry_pre_instrument`` entry
point, and :func:`otel_pre_instrument` is ours, so the two compose in either order.
"""

from __future__ import annotations

import importlib
import os
import sys

BOOTSTRAP_DIR = os.path.dirname(os.path.abspath(__file__))


def under_resil_run() -> bool:
    """Whether this process was started (directly or as a child) by ``resil-run``."""
    return BOOTSTRAP_DIR in os.environ.get("PYTHONPATH", "").split(os.pathsep)


def boot() -> None:
    """Start the agent for ``resil-run``; never raise into the program."""
    try:
        from ..config import disabled
        if disabled():
            return
        from ..agent import start
        start()
    except Exception as exc:  # fail-open: the program runs even if the agent cannot
        print(f"resil: agent not started: {exc}", file=sys.stderr)


def otel_pre_instrument() -> None:
    """``opentelemetry_pre_instrument`` entry point: start the agent under resil-run."""
    if under_resil_run():
        boot()


def chain_sitecustomize() -> None:
    """Import the next ``sitecustomize`` on ``sys.path``, skipping our own folder.

    Our folder leaves ``sys.path`` for good (the program has no use for it), while it
    stays on ``PYTHONPATH`` so that child processes get the agent too.
    """
    ours = sys.modules.pop("sitecustomize", None)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != BOOTSTRAP_DIR]
    try:
        importlib.import_module("sitecustomize")   # the user's or another tool's, if any
    except ImportError as exc:
        if exc.name != "sitecustomize":
            print(f"resil: your sitecustomize failed: {exc!r}", file=sys.stderr)
        if ours is not None:
            sys.modules["sitecustomize"] = ours
