"""The fail-open guard: resil's decision code runs inside it, never the application's.

If resil's own code raises, the fault is counted and logged once
(:func:`resil.counters.record_fault`) and the caller proceeds exactly as it would have
without resil. The application's call itself always runs outside the guard, so its own
exceptions pass through untouched and it never runs twice.
"""

from __future__ import annotations

from collections.abc import Callable

from . import counters
from .errors import LockTimeoutError, TransactionInterruptedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")


def fail_open(where: str, decide: Callable[..., T], *args: Any) -> T | None:
    """Run resil's decision code; on any exception record it and return None.

    The documented errors meant for the application (a hold that timed out, an
    interrupted transaction) are not faults: they pass through.
    """
    try:
        return decide(*args)
    except (LockTimeoutError, TransactionInterruptedError):
        raise
    except Exception as exc:  # fail-open: resil's fault must never reach the application
        counters.record_fault(where, exc)
        return None
