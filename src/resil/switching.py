"""The hot-switch protocol: what a database connection does at a transaction boundary and
after a failed statement, decided once for every driver.

A driver integration (:mod:`resil.integrations.pymysql`, :mod:`resil.integrations.redis`)
reads its library's state — status bits, error codes, ``host``/``port``, command names —
asks the questions below, and applies the answers (reconnect, disconnect, raise
:class:`~resil.errors.TransactionInterruptedError`, replay once). This module knows no
driver: a new one reuses it rather than copying another integration.

- :func:`at_boundary`: a statement that may start a transaction, on a connection whose
  record is behind the control state (or while something is locked). It waits while the
  resource is locked (when the statement must), then says :class:`Boundary` ``RUN``,
  ``MOVE`` (the primary moved: reconnect first) or ``CHECK`` (the state changed but the
  primary did not: a switch that rolled back may have cut the connection, so ping it).
- :func:`stale`: a pooled connection at a command boundary: ``MOVE`` or ``RUN``.
- :func:`must_wait` / :func:`hold_if_locked`: a new connection, or a command outside a
  transaction, on a locked resource.
- :func:`after_error`: a statement failed with an error of a driver-neutral
  :class:`ErrorKind`: :class:`AfterError` ``RAISE``, ``INTERRUPT`` (the transaction is
  lost: reconnect and raise) or ``REPLAY`` (once: provably not executed, or harmless twice).
- :func:`await_new_primary`: a command refused by a demoted primary waits (bounded) for
  the new one, then is replayed once.

Each question takes the agent's :class:`~resil.runtime.Runtime` (the integration already
holds it from the hot path) and nothing of the agent itself. None of them is asked on the
hot path unless the control state changed or something is locked: the integrations
compare an epoch first.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from . import context

if TYPE_CHECKING:
    from .runtime import Runtime
    from .state import ControlState
    from .topology import Resource


class Boundary(enum.Enum):
    """What a connection does before a statement at a transaction boundary."""

    RUN = "run"
    """Send the statement on this connection as it is."""
    MOVE = "move"
    """The resource's primary is elsewhere: reconnect (to the new primary) first."""
    CHECK = "check"
    """The control state changed but the primary did not: a switch that rolled back may
    have fenced the primary and cut this connection meanwhile. Check that it is alive
    (reconnect if not), then send."""


class ErrorKind(enum.Enum):
    """A driver's error, as the protocol sees it (the integration translates)."""

    REFUSED_READ_ONLY = "refused_read_only"
    """The server refused the statement because it is read-only: it was not executed."""
    CONNECTION_LOST = "connection_lost"
    """The connection was cut (a fence killed it, the server went away, the network): the
    statement may or may not have run."""
    OTHER = "other"
    """Anything else: the application's own error, passed through untouched."""


class AfterError(enum.Enum):
    """What to do about a failed statement."""

    RAISE = "raise"
    """Let the driver's error reach the application untouched."""
    INTERRUPT = "interrupt"
    """A switch cut the open transaction: reconnect, then raise
    :class:`~resil.errors.TransactionInterruptedError` (nothing was committed)."""
    REPLAY = "replay"
    """Reconnect and send the statement once more; its errors then are the application's."""


class Record(Protocol):
    """What the protocol reads and writes of resil's record of one driver connection
    (:class:`resil.integrations._tracking.Tracked` is one)."""

    resource: Resource
    epoch: int
    """The control-state epoch the connection was last checked against."""
    busy: bool
    """A statement is on its way to the server (a switch waits for it to finish)."""


def _never() -> bool:
    return False


def at_boundary(runtime: Runtime, record: Record, at: tuple[str, int], *,
                in_transaction: bool, must_hold: Callable[[], bool]) -> Boundary:
    """At a statement that may start a transaction on the connection ``record`` tracks,
    connected to ``at`` (host, port): hold it while the resource is locked, then say
    whether the connection must move, be checked, or just run.

    ``must_hold`` is asked only when the resource is locked (classifying a statement has
    a cost): whether this statement writes or opens a transaction, so that it waits.
    An open transaction is never held or moved: it finishes where it started.
    """
    if in_transaction:
        return Boundary.RUN
    resource = record.resource
    state = runtime.current_state()
    held: bool | None = None
    if resource.name in state.locks and must_hold():
        # A held statement is not in flight: the switch must not wait for it to drain
        # while it waits for the switch.
        held, record.busy = record.busy, False
        try:
            state = runtime.gate.hold(resource.name, resource.lock_timeout)
        except BaseException:
            record.busy = held
            raise
    return _decide(runtime, record, at, state, held)


async def at_boundary_async(runtime: Runtime, record: Record, at: tuple[str, int], *,
                            in_transaction: bool, must_hold: Callable[[], bool]) -> Boundary:
    """:func:`at_boundary` for asyncio drivers: the hold is awaited, never blocking the
    event loop; the decision is the same."""
    if in_transaction:
        return Boundary.RUN
    resource = record.resource
    state = runtime.current_state()
    held: bool | None = None
    if resource.name in state.locks and must_hold():
        held, record.busy = record.busy, False
        try:
            state = await runtime.gate.hold_async(resource.name, resource.lock_timeout)
        except BaseException:
            record.busy = held
            raise
    return _decide(runtime, record, at, state, held)


def _decide(runtime: Runtime, record: Record, at: tuple[str, int], state: ControlState,
            held: bool | None) -> Boundary:
    """Move, check or run, once any hold is over (``held``: the busy flag it saved)."""
    resource = record.resource
    endpoint = runtime.router.primary_of(resource, state)
    if endpoint is not None and at != (endpoint.host, endpoint.port):
        # Leaving ``at`` with nothing sent there: not in flight on it, so the agent that
        # applies this very state does not cut it as a statement waiting on the old
        # primary ("outcome unknown"). The mover marks it busy again once it moved.
        record.busy = False
        return Boundary.MOVE        # the reconnect routes it, and records the new epoch
    if held is not None:
        record.busy = held
    if resource.name in state.locks:
        return Boundary.RUN         # a read while locked runs where it is; looked at again
    changed = state.epoch != record.epoch
    record.epoch = state.epoch
    return Boundary.CHECK if changed else Boundary.RUN


def stale(runtime: Runtime, record: Record, at: tuple[str, int]) -> Boundary:
    """A pooled connection checked out at a command boundary: ``MOVE`` when its primary
    is no longer current, else ``RUN``.

    Never ``CHECK``: a pooled connection holds no transaction, and the drivers that ask
    this (redis-py) find a dead connection themselves on their next send.
    """
    found = at_boundary(runtime, record, at, in_transaction=False, must_hold=_never)
    return Boundary.MOVE if found is Boundary.MOVE else Boundary.RUN


def must_wait(runtime: Runtime, resource: Resource, writes: Callable[[], bool]) -> bool:
    """Whether a command on ``resource`` outside a transaction waits for its lock to clear.

    ``writes`` (asked only while the resource is locked) says whether the command may
    write; reads run at once. resil's own traffic (a switch run in this process) never
    waits: it is what the lock waits for.
    """
    if context.bypassed():
        return False
    return resource.name in runtime.state.locks and writes()


def hold_if_locked(runtime: Runtime, resource: Resource, writes: Callable[[], bool]) -> bool:
    """Wait (blocking) while :func:`must_wait` says so; whether it waited, in which case
    the caller's routing may be out of date. Raises
    :class:`~resil.errors.LockTimeoutError` after the resource's ``lock_timeout``."""
    if not must_wait(runtime, resource, writes):
        return False
    runtime.gate.hold(resource.name, resource.lock_timeout)
    return True


def switching(runtime: Runtime, record: Record) -> bool:
    """Whether a switch is under way or happened since the connection last looked: the
    control state moved past its record, or its resource is locked."""
    state = runtime.current_state()
    return state.epoch != record.epoch or record.resource.name in state.locks


def after_error(runtime: Runtime, record: Record, kind: ErrorKind, *, in_transaction: bool,
                may_replay: bool, repeatable: Callable[[], bool]) -> AfterError:
    """What to do about a statement that failed with an error of ``kind``.

    - A lost connection is the switch's doing only while one is under way (or just
      happened); otherwise it is the application's error. A read-only refusal is always
      a sign that the primary moved.
    - Inside a transaction: ``INTERRUPT`` — the transaction cannot finish where it began.
    - In autocommit mode, when the caller allows a replay (``may_replay``; never for a
      ``COMMIT``, which may have committed): ``REPLAY`` once, but only when provably
      safe — the server refused the statement (not executed), or ``repeatable()`` says
      running it twice changes nothing (a read).
    """
    if kind is ErrorKind.OTHER:
        return AfterError.RAISE
    if kind is ErrorKind.CONNECTION_LOST and not switching(runtime, record):
        return AfterError.RAISE
    if in_transaction:
        return AfterError.INTERRUPT
    if not may_replay:
        return AfterError.RAISE
    if kind is ErrorKind.REFUSED_READ_ONLY or repeatable():
        runtime.refresh()       # a demoted primary: make sure we see the newest state
        return AfterError.REPLAY
    return AfterError.RAISE


def await_new_primary(runtime: Runtime, resource: Resource, epoch: int) -> AfterError:
    """A command sent under control state ``epoch`` was refused by a demoted primary (not
    executed): wait, bounded by the resource's ``lock_timeout``, for a newer state and
    for its lock to clear. ``REPLAY`` once when a newer state came, else ``RAISE``.
    """
    if context.bypassed():
        return AfterError.RAISE     # resil's own command: it talks to the server it named
    runtime.refresh()
    state = runtime.current_state()
    if state.epoch == epoch:
        state = runtime.wait_for_change(epoch, resource.lock_timeout)
    if resource.name in state.locks:
        state = runtime.gate.hold(resource.name, resource.lock_timeout)
    return AfterError.REPLAY if state.epoch != epoch else AfterError.RAISE
