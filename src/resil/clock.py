"""The one definition of a clock: injected into policies and monitors so that their
tests need not sleep."""

from __future__ import annotations

from collections.abc import Callable

Clock = Callable[[], float]
"""A source of seconds (``time.monotonic`` or ``time.time``)."""
