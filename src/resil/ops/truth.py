"""The servers are the truth; the control state is a cache of them.

Every operator command that publishes (``resil db switch``, ``resil monitor``,
``resil traffic``, ``resil db unlock``) starts from :func:`trusted_state`, never from a
bare ``plane.load()``. The stored control state is trusted only when it is readable and
not older than what the live agents report they applied. Otherwise it was lost (the
state file deleted, the control-plane Redis restarted empty), rolled back (an older
copy restored, an old signal replayed) or corrupted, and acting on it — or on the
configuration's initial primaries — could fence or abandon the real primary. Then
:func:`reconcile` rebuilds it from the servers' real roles and republishes it with an
epoch above every epoch seen, so that the agents, which ignore anything not newer than
what they applied, accept it.

What reconcile can rebuild: each mysql/redis resource's primary is the unit whose
endpoint accepts writes, when exactly one does. What it cannot: unit weights and
routing rules live nowhere else; when the stored state is unreadable they fall back to
the configuration's (every unit at weight 1), and it says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..config import Config
from ..control import ControlPlane
from ..errors import ConfigError, SignalError, SwitchError
from ..state import ControlState, Signal
from ..topology import Resource
from .servers import Credentials, check_driver, open_server, same_address


@dataclass(frozen=True)
class Stored:
    """The stored control state and how far it can be trusted."""

    state: ControlState
    """The stored state, or the configuration's initial one when none is readable."""
    signal: Signal | None
    agents_epoch: int
    """The highest epoch that a live agent reports having applied."""
    problem: str = ""
    """Why the stored state cannot be trusted (empty: it can)."""

    @property
    def trusted(self) -> bool:
        """Readable and not behind the agents."""
        return not self.problem


def read(config: Config, plane: ControlPlane) -> Stored:
    """Read the stored state and judge it against the live agents' heartbeats.

    Raises :class:`~resil.errors.ControlPlaneError` when the control plane cannot be
    reached at all (nothing can be judged, nothing should be published).
    """
    initial = ControlState.initial(config.topology)
    highest = plane.applied_epoch()
    try:
        signal = plane.load()
    except SignalError as exc:
        return Stored(initial, None, highest, f"the stored control state is unusable ({exc})")
    if signal is None:
        if highest > 0:
            return Stored(initial, None, highest,
                          f"no control state is stored, but live agents applied epoch "
                          f"{highest}: it was lost (deleted, or the store restarted empty)")
        return Stored(initial, None, highest)
    if signal.epoch < highest:
        return Stored(signal.state, signal, highest,
                      f"the stored control state (epoch {signal.epoch}) is older than what "
                      f"live agents applied (epoch {highest}): it was rolled back or "
                      "replayed")
    return Stored(signal.state, signal, highest)


@dataclass
class Finding:
    """What the servers of one resource say."""

    resource: str
    writable: list[str] = field(default_factory=list)
    """Units whose endpoint accepts writes."""
    sources: list[str] = field(default_factory=list)
    """For each reachable replica, the unit of the endpoint it replicates from."""
    unreachable: list[str] = field(default_factory=list)
    error: str = ""

    def primary(self) -> str | None:
        """The primary's unit: the one writable endpoint; with none writable (the primary
        is dead or frozen), the one source every reachable replica names. None when the
        servers do not say."""
        if self.writable:
            return self.writable[0] if len(self.writable) == 1 else None
        return self.sources[0] if self.sources and len(set(self.sources)) == 1 else None

    def evidence(self) -> str:
        """What was seen, in a few words."""
        parts = [f"writable: {', '.join(self.writable) or 'none'}"]
        if self.sources:
            parts.append(f"replicas follow: {', '.join(self.sources)}")
        if self.unreachable:
            parts.append(f"unreachable: {', '.join(self.unreachable)}")
        if self.error:
            parts.append(self.error)
        return "; ".join(parts)


def observe(resource: Resource, timeout: float = 2.0) -> Finding:
    """Ask every endpoint of ``resource`` whether it accepts writes, and whom it follows."""
    finding = Finding(resource.name)
    try:
        credentials = Credentials.of(resource)
        check_driver(resource)
    except (SwitchError, ConfigError) as exc:   # not a server's answer: none is read
        finding.error = str(exc)
        return finding
    for unit in resource.units:
        endpoint = resource.endpoint_in(unit)
        if endpoint is None:
            continue
        try:
            server = open_server(resource, endpoint, credentials, timeout=timeout,
                                 read_timeout=2 * timeout)
        except Exception:
            finding.unreachable.append(unit)
            continue
        try:
            if server.writable():
                finding.writable.append(unit)
                continue
            status = server.replication()
            if status.get("role") == "replica":
                for other in resource.units:
                    source = resource.endpoint_in(other)
                    if source is not None and same_address(status["source"], source):
                        finding.sources.append(other)
        except Exception:
            finding.unreachable.append(unit)
        finally:
            server.close()
    return finding


def reconcile(config: Config, plane: ControlPlane, issuer: str, stored: Stored,
              say: Callable[[str], None], timeout: float = 2.0) -> Signal:
    """Rebuild the control state from the servers and publish it above every epoch seen.

    Each resource's primary is what its servers say (:meth:`Finding.primary`). When the
    servers of some resource do not say, nothing is published: a guess could move every
    agent to the wrong server, and :class:`~resil.errors.SwitchError` names what was
    seen. Locks of the stored state are kept: the switch that holds one resolves it.
    """
    state = stored.state
    primaries = dict(state.primaries)
    unknown = []
    for name, resource in config.resources.items():
        if resource.kind == "http" or name in state.locks:
            continue    # a locked resource is mid-switch: its lock holder publishes it
        finding = observe(resource, timeout)
        unit = finding.primary()
        known = state.primary_unit(resource)
        if unit is None:
            unknown.append(f"{name} ({finding.evidence()})")
            continue
        primaries[name] = unit
        if unit != known:
            say(f"{name}: the servers say the primary is in {unit}, not {known} as the "
                f"stored state said ({finding.evidence()})")
    if unknown:
        raise SwitchError("cannot reconcile the control state: the servers do not say "
                          f"which is the primary of {'; '.join(unknown)}")
    if stored.signal is None:
        say("unit weights and routing rules are not on any server: back to the "
            "configuration's (every unit at weight 1); re-apply any `resil traffic` change")
    epoch = max(state.epoch, stored.agents_epoch) + 1
    signal = plane.publish(state.evolve(epoch=epoch, primaries=primaries), issuer=issuer)
    say(f"control state reconciled from the servers and republished at epoch "
        f"{signal.epoch} (primaries: "
        f"{', '.join(f'{k}={v}' for k, v in sorted(signal.state.primaries.items()))})")
    return signal


def trusted_state(config: Config, plane: ControlPlane, issuer: str,
                  say: Callable[[str], None]) -> ControlState:
    """The control state to act on: the stored one when it can be trusted, else the one
    :func:`reconcile` rebuilds from the servers and republishes (said loudly)."""
    stored = read(config, plane)
    if stored.trusted:
        return stored.state
    say(f"WARNING: {stored.problem}; reconciling from the servers before acting")
    return reconcile(config, plane, issuer, stored, say).state
