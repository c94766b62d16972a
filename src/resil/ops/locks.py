"""Write locks that survive their holder.

A switch (or a failover) holds a resource's write lock in the control state while it
works: every agent holds new writes meanwhile. If the holder dies — ``kill -9``, a lost
machine — the lock would hold writes until each times out, for ever. So the holder also
keeps a *lease* ``lock:<resource>`` in the control plane, taken before the lock is
published and renewed every :data:`RENEW` seconds (:class:`HolderLease`). A lock whose
lease lapsed has a dead holder: :func:`resolve_orphans` — run by ``resil monitor``
every round, and by ``resil db switch`` and ``resil db unlock`` before they act — takes
the lease itself (so two resolvers never act at once) and resolves the lock from the
servers' real roles:

- exactly one endpoint accepts writes: the switch got past promote (or never fenced):
  that endpoint is published as the primary, unlocked — the switch is *finished*;
- none does: it died between fence and promote; the server every replica follows (the
  old primary) is unfenced and published, unlocked — the switch is *rolled back*;
- anything else (two writable, replicas that disagree, nothing reachable): nothing is
  done, and it is said why; ``resil db unlock`` after a manual check is the way out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..config import Config
from ..control import ControlPlane
from ..errors import ResilError, SwitchError
from ..state import ControlState
from ..topology import Resource
from . import truth
from .servers import Credentials, open_server

TTL = 3.0
"""Seconds a holder's lease lives without renewal: a resolver acts this long after the
holder died (agents hold writes for ``lock_timeout``, 5 s by default)."""
RENEW = 0.5
"""Seconds between renewals."""


def lease_name(resource: str) -> str:
    """The lease that says the holder of ``resource``'s lock is alive."""
    return f"lock:{resource}"


class HolderLease:
    """The lease of a lock holder, renewed by a thread of its own while it lives.

    :meth:`take` before publishing the lock; :meth:`alive` before each destructive step
    (a holder that lost its lease — paused longer than :data:`TTL` — may already have been
    resolved, and must stop); :meth:`release` at the end.

    :meth:`reached` only notes a step (for ``resil status`` and a resolver's message):
    the renewing thread writes it at once, so that the holder does not wait for that
    write while writes are held. A note waiting there is replaced by a newer one, and
    :meth:`alive` writes its own under the same lock, so the file never goes back to an
    older step.
    """

    def __init__(self, plane: ControlPlane, resource: str, holder: str) -> None:
        self._plane = plane
        self._name = lease_name(resource)
        self._holder = holder
        self._stop = threading.Event()
        self._lost = False
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._write = threading.Lock()
        """Held while the lease file is written: notes land in the order they were made."""
        self._note: str | None = None
        """A step :meth:`reached` noted that the renewing thread has not written yet."""
        self._noting = threading.Lock()
        """Held only to swap :attr:`_note` (never during a write): a note made while
        another is being taken is neither lost nor waited on."""

    def take(self) -> None:
        """Take the lease; :class:`SwitchError` when someone else holds it."""
        if not self._plane.lease(self._name, self._holder, TTL):
            raise SwitchError(f"{self._name} is held by another switch, failover or lock "
                              "resolver: not locking")
        self._thread = threading.Thread(target=self._renew, name="resil-lock-lease",
                                        daemon=True)
        self._thread.start()

    def alive(self, step: str = "") -> bool:
        """Whether the lease was held without a gap so far (renewed now, recording
        ``step`` as the step reached when given, else a noted step not written yet)."""
        with self._write:
            with self._noting:
                note, self._note = step or self._note or "", None
            if not self._lost and not self._plane.lease(self._name, self._holder, TTL, note):
                self._lost = True
        return not self._lost

    def reached(self, step: str) -> None:
        """Note ``step`` as the step reached (``resil status`` and a resolver read it),
        written by the renewing thread without making the caller wait; best effort: a
        control plane that blinks loses the note, not the switch."""
        if self._thread is None:    # not taken yet, or no thread: written here
            try:
                self.alive(step)
            except ResilError:
                pass
            return
        with self._noting:
            self._note = step
        self._wake.set()

    def release(self) -> None:
        """Stop renewing and give the lease up."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self._plane.release(self._name, self._holder)
        except ResilError:
            pass        # it lapses by itself

    def _renew(self) -> None:
        """Renew every :data:`RENEW` seconds, and write a noted step as soon as it is."""
        while True:
            self._wake.wait(RENEW)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.alive()
            except ResilError:
                pass    # the control plane blinked: alive() says whether it was lost


def resolve_orphans(config: Config, plane: ControlPlane, holder: str, state: ControlState,
                    say: Callable[[str], None]) -> bool:
    """Resolve every lock in ``state`` whose holder's lease lapsed; True if any was."""
    resolved = False
    for name in list(state.locks):
        if not plane.lease(lease_name(name), holder, TTL):
            continue                    # the holder is alive (or another resolver acts)
        try:
            resolved = _resolve(config, plane, holder, name, say) or resolved
        except ResilError as exc:
            say(f"{name}: could not resolve the orphaned lock: {exc}")
        finally:
            plane.release(lease_name(name), holder)
    return resolved


def _resolve(config: Config, plane: ControlPlane, holder: str, name: str,
             say: Callable[[str], None]) -> bool:
    stored = truth.read(config, plane)
    state = stored.state
    lock = state.locks.get(name)
    resource = config.resources.get(name)
    if lock is None or resource is None:
        return False
    finding = truth.observe(resource)
    note = plane.lease_note(lease_name(name))
    step = f", at step {note.note}" if note and note.holder == lock.holder else ""
    say(f"{name}: the lock of {lock.holder} ({lock.reason}{step}) outlived its holder's "
        f"lease: resolving from the servers ({finding.evidence()})")
    unit: str | None
    if len(finding.writable) == 1:
        unit = finding.writable[0]
        what = "finished" if unit != state.primary_unit(resource) else "released"
        if what == "finished":
            _retire(resource, state.primary_unit(resource), say)
    elif not finding.writable and finding.primary() is not None:
        unit = finding.primary()
        endpoint = resource.endpoint_in(unit or "")
        if endpoint is None:
            return False
        server = open_server(resource, endpoint, Credentials.of(resource))
        try:
            server.unfence()        # no other endpoint is writable: it is the only one
        finally:
            server.close()
        what = f"rolled back ({endpoint} accepts writes again)"
    else:
        say(f"{name}: the servers do not say which is the primary; the lock stays. Check "
            "them, then `resil db unlock`")
        return False
    locks = {k: v for k, v in state.locks.items() if k != name}
    epoch = max(state.epoch, stored.agents_epoch) + 1
    signal = plane.publish(state.evolve(epoch=epoch, locks=locks,
                                        primaries={**state.primaries, name: str(unit)}),
                           issuer=holder)
    say(f"{name}: orphaned switch {what}: primary {unit}, unlocked at epoch {signal.epoch}")
    return True


def _retire(resource: Resource, unit: str | None, say: Callable[[str], None]) -> None:
    """The old primary of a switch finished for a dead holder: fenced for good, its
    connections cut and (Redis) its write pause ended, unless it already replicates
    from the new one. Best effort: it is not writable either way."""
    endpoint = resource.endpoint_in(unit or "")
    if endpoint is None:
        return
    try:
        server = open_server(resource, endpoint, Credentials.of(resource))
    except Exception as exc:    # unreachable: it cannot take writes either
        say(f"{resource.name}: old primary {endpoint} not reached ({exc}); it stays fenced")
        return
    try:
        if server.replication().get("role") != "replica":
            server.after_promotion(False)
            say(f"{resource.name}: old primary {endpoint} stays fenced, not replicating: "
                "make it a replica of the new primary before it can be switched back to")
    except Exception as exc:
        say(f"{resource.name}: could not retire the old primary {endpoint}: {exc}")
    finally:
        server.close()
