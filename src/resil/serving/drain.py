"""Graceful drain: on SIGTERM turn not-ready at once, keep serving, then stop as before.

With ``[admin] drain_period`` > 0 the agent owns SIGTERM in the process where it started
(gunicorn's master, a plain ``python app.py``):

1. the first SIGTERM marks the instance as draining — ``/readyz`` answers 503 at once, so
   load balancers stop sending new traffic — and changes nothing else;
2. ``drain_period`` seconds later resil sends SIGTERM again, and this time the
   application's own handler runs (or Python's default, which ends the process), exactly
   as if resil had never been there.

Applications install their SIGTERM handlers after resil starts (gunicorn does in its
arbiter), so ``signal.signal(SIGTERM, ...)`` is intercepted while draining is on: the
handler is remembered as the one to call after the drain, and resil's stays installed.
``signal.getsignal`` answers with the application's handler. A forked child (a gunicorn
worker) gets the real ``signal.signal`` back: draining is the instance's, not each
worker's.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from .. import _log

log = _log.get("resil")
Handler = Any   # a callable, signal.SIG_DFL or signal.SIG_IGN


class Drain:
    """SIGTERM ownership for one agent."""

    def __init__(self, period: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = period
        self.started: float | None = None
        self._clock = clock
        self._app_handler: Handler = signal.getsignal(signal.SIGTERM)
        self._real_signal = signal.signal
        self._real_getsignal = signal.getsignal
        self._installed = False

    @property
    def draining(self) -> bool:
        """Whether a SIGTERM arrived: the instance is on its way out."""
        return self.started is not None

    def install(self) -> None:
        """Own SIGTERM (main thread only; elsewhere a logged skip)."""
        if threading.current_thread() is not threading.main_thread():
            log.warning("resil: drain_period ignored: the agent did not start in the main "
                        "thread, which alone may handle signals")
            return
        self._real_signal(signal.SIGTERM, self._on_sigterm)
        signal.signal = self._signal
        signal.getsignal = self._getsignal
        self._installed = True

    def uninstall(self) -> None:
        """Give SIGTERM back to the application's handler (idempotent)."""
        if not self._installed:
            return
        signal.signal = self._real_signal
        signal.getsignal = self._real_getsignal
        if threading.current_thread() is threading.main_thread():
            self._real_signal(signal.SIGTERM, self._app_handler)
        self._installed = False

    def after_fork_in_child(self) -> None:
        """A worker drains nothing itself: the real ``signal`` functions come back."""
        if self._installed:
            signal.signal = self._real_signal
            signal.getsignal = self._real_getsignal
            self._real_signal(signal.SIGTERM, self._app_handler)
            self._installed = False

    # ------------------------------------------------------------------ internals

    def _signal(self, signalnum: int, handler: Handler) -> Handler:
        if signalnum != signal.SIGTERM or not self._installed:
            return self._real_signal(signalnum, handler)
        previous, self._app_handler = self._app_handler, handler
        return previous

    def _getsignal(self, signalnum: int) -> Handler:
        if signalnum == signal.SIGTERM and self._installed:
            return self._app_handler
        return self._real_getsignal(signalnum)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if self.started is None:
            self.started = self._clock()
            log.warning("resil: SIGTERM: draining for %.1f s (not ready), then stopping",
                        self.period)
            timer = threading.Timer(self.period, os.kill, (os.getpid(), signal.SIGTERM))
            timer.daemon = True
            timer.name = "resil-drain"
            timer.start()
            return
        self._finish(signum, frame)

    def _finish(self, signum: int, frame: FrameType | None) -> None:
        handler = self._app_handler
        self.uninstall()
        if callable(handler):
            handler(signum, frame)
        elif handler == signal.SIG_IGN:
            return
        else:   # SIG_DFL (or None): die of SIGTERM as the process would have
            os.kill(os.getpid(), signal.SIGTERM)
