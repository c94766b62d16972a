"""Control state and signals.

:class:`ControlState` is the dynamic picture: the primary unit of each mysql/redis
resource, unit weights (traffic) and write locks, versioned by a monotonically
increasing **epoch**. It is immutable: applying a signal returns a new state, and the
agent swaps its reference atomically, so readers on the hot path take no lock.

A :class:`Signal` is one published control state with its epoch, issuer and time,
and, when a signing key is configured, an HMAC-SHA256 over its canonical JSON. Signals
carry the *whole* state, not a delta, so a missed signal can never leave an agent with
a half-applied picture: the next one it sees is complete.
"""

from __future__ import annotations

import json
import math
import os
import pwd
import zlib
from _socket import gethostname  # socket.gethostname itself, without importing socket
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from ._record import dataclass, field, replace
from .errors import SignalError
from .topology import Resource, Topology

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .faults import Fault

FORMAT_VERSION = 1
_EMPTY: Mapping[str, Any] = MappingProxyType({})


#: How a planned switch's lock reason begins; the target unit follows.
SWITCH_REASON = "switch to "


@dataclass(frozen=True)
class Lock:
    """A write lock on a resource: while it is held, new writes wait (the hot switch)."""

    holder: str
    since: float
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"holder": self.holder, "since": self.since, "reason": self.reason}

    @property
    def target(self) -> str:
        """The unit a planned switch moves the primary to ("" for a failover's lock, or
        any other): where the writes it holds will go."""
        if not self.reason.startswith(SWITCH_REASON):
            return ""
        return self.reason[len(SWITCH_REASON):].strip()


@dataclass(frozen=True)
class Intent:
    """A planned switch about to lock a resource: agents open spare connections to the
    ``target`` unit's endpoint meanwhile, so that the writes the lock will hold take
    them at the publish instead of all connecting then. Nothing is held; the intent is
    advisory and ends at ``until`` (wall clock) even if the switch never comes back."""

    holder: str
    target: str
    until: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"holder": self.holder, "target": self.target, "until": self.until}

    def live(self, now: float) -> bool:
        """Whether the intent still stands at wall-clock time ``now``."""
        return now < self.until


HASH_BUCKETS = 100
"""Routing keys hash into this many buckets (CRC-32 of the UTF-8 key, modulo)."""


@dataclass(frozen=True)
class RouteRule:
    """One rule mapping routing keys to their home unit. Exactly one of the three forms:

    - ``range``: integer keys ``low <= key <= high``;
    - ``hash``: keys whose bucket (:func:`bucket`) is ``low <= bucket <= high``;
    - ``keys``: an explicit list.
    """

    unit: str
    form: str
    low: int = 0
    high: int = 0
    keys: frozenset[str] = frozenset()

    def matches(self, key: str) -> bool:
        """Whether ``key`` falls under this rule."""
        if self.form == "keys":
            return key in self.keys
        if self.form == "hash":
            return self.low <= bucket(key) <= self.high
        try:
            number = int(key)
        except ValueError:
            return False
        return self.low <= number <= self.high

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        if self.form == "keys":
            return {"unit": self.unit, "keys": sorted(self.keys)}
        return {"unit": self.unit, self.form: [self.low, self.high]}


def bucket(key: str) -> int:
    """The hash bucket of a routing key: stable across processes, hosts and versions."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % HASH_BUCKETS


@dataclass(frozen=True)
class ControlState:
    """Epoch-versioned primaries, unit weights and locks. Never mutated."""

    epoch: int = 0
    primaries: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    """Resource name → unit of its current primary."""
    weights: Mapping[str, float] = field(default_factory=lambda: _EMPTY)
    """Unit → traffic weight; 0 means the unit is cut."""
    locks: Mapping[str, Lock] = field(default_factory=lambda: _EMPTY)
    """Resource name → write lock."""
    routes: tuple[RouteRule, ...] = ()
    """Rules mapping routing keys to home units, tried in order; the first match wins."""
    faults: tuple[Fault, ...] = ()
    """Chaos faults (:mod:`resil.faults`), expired ones included until a publish drops
    them: every agent checks the expiry itself."""
    intents: Mapping[str, Intent] = field(default_factory=lambda: _EMPTY)
    """Resource name → a planned switch about to lock it (:class:`Intent`), expired ones
    included until a publish drops them."""

    def primary_unit(self, resource: Resource) -> str | None:
        """The unit of ``resource``'s primary: the published one, else the configured."""
        return self.primaries.get(resource.name) or resource.primary

    def home_unit(self, key: str) -> str | None:
        """The home unit of routing key ``key``, or None when no rule claims it."""
        for rule in self.routes:
            if rule.matches(key):
                return rule.unit
        return None

    @classmethod
    def initial(cls, topology: Topology) -> ControlState:
        """Epoch 0: the configuration's primaries, every unit at weight 1, no locks."""
        primaries = {name: r.primary for name, r in topology.resources.items() if r.primary}
        return cls(0, MappingProxyType(primaries),
                   MappingProxyType(dict.fromkeys(topology.units, 1.0)), _EMPTY)

    def evolve(self, *, epoch: int | None = None, primaries: Mapping[str, str] | None = None,
               weights: Mapping[str, float] | None = None,
               locks: Mapping[str, Lock] | None = None,
               routes: tuple[RouteRule, ...] | None = None,
               faults: tuple[Fault, ...] | None = None,
               intents: Mapping[str, Intent] | None = None) -> ControlState:
        """A copy with some parts replaced; the epoch advances by one unless given."""
        return replace(
            self,
            epoch=self.epoch + 1 if epoch is None else epoch,
            primaries=MappingProxyType(dict(self.primaries if primaries is None else primaries)),
            weights=MappingProxyType(dict(self.weights if weights is None else weights)),
            locks=MappingProxyType(dict(self.locks if locks is None else locks)),
            routes=self.routes if routes is None else tuple(routes),
            faults=self.faults if faults is None else tuple(faults),
            intents=self.intents if intents is None else MappingProxyType(dict(intents)),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form (without the epoch, which the signal carries). ``faults`` and
        ``intents`` only when there are some: a signal without them reads the same to an
        older agent."""
        out: dict[str, Any] = {
            "primaries": dict(self.primaries),
            "weights": dict(self.weights),
            "locks": {name: lock.to_dict() for name, lock in self.locks.items()},
            "routes": [rule.to_dict() for rule in self.routes],
        }
        if self.faults:
            out["faults"] = [fault.to_dict() for fault in self.faults]
        if self.intents:
            out["intents"] = {name: intent.to_dict() for name, intent in self.intents.items()}
        return out


@dataclass(frozen=True)
class Signal:
    """One published control state."""

    state: ControlState
    issued_at: float
    issuer: str
    signature: str | None = None

    @property
    def epoch(self) -> int:
        """The epoch of the state it carries."""
        return self.state.epoch


def _body(signal: Signal) -> dict[str, Any]:
    return {
        "version": FORMAT_VERSION,
        "epoch": signal.state.epoch,
        "issued_at": signal.issued_at,
        "issuer": signal.issuer,
        "state": signal.state.to_dict(),
    }


def _canonical(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _mac(key: bytes, body: Mapping[str, Any]) -> str:
    import hashlib  # here: hashlib costs start-up, and only signed signals need it
    import hmac
    return hmac.new(key, _canonical(body), hashlib.sha256).hexdigest()


def make_signal(state: ControlState, *, issuer: str, issued_at: float,
                key: bytes | None) -> Signal:
    """A signal for ``state``, signed when ``key`` is given."""
    unsigned = Signal(state, issued_at, issuer)
    if key is None:
        return unsigned
    return replace(unsigned, signature=_mac(key, _body(unsigned)))


def encode_signal(signal: Signal) -> bytes:
    """The wire/file form of a signal: canonical JSON, signature included."""
    body = _body(signal)
    if signal.signature is not None:
        body["signature"] = signal.signature
    return json.dumps(body, sort_keys=True, indent=1, allow_nan=False).encode() + b"\n"


def decode_signal(data: bytes, topology: Topology, key: bytes | None,
                  previous: Sequence[bytes] = ()) -> Signal:
    """Parse and verify a signal; raise :class:`SignalError` saying what is wrong.

    With a ``key``, a signal without a signature or with a wrong one is rejected; one
    signed with a ``previous`` key (a rotation under way) is accepted.
    Primaries of resources this topology does not know are dropped (another agent may
    run a newer configuration); a primary in a unit where the resource has no
    endpoint is an error.
    """
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SignalError(f"malformed signal: not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise SignalError("malformed signal: expected a JSON object")
    signature = body.pop("signature", None)
    if body.get("version") != FORMAT_VERSION:
        raise SignalError(f"malformed signal: unsupported version {body.get('version')!r}")
    if key is not None:
        if not isinstance(signature, str):
            raise SignalError(f"unsigned signal (epoch {body.get('epoch')!r}) rejected: "
                              "a signing key is configured")
        from hmac import compare_digest
        if not any(compare_digest(signature, _mac(k, body)) for k in (key, *previous)):
            raise SignalError(f"forged signal (epoch {body.get('epoch')!r}) rejected: "
                              "HMAC does not match")
    epoch, issued_at, issuer = body.get("epoch"), body.get("issued_at"), body.get("issuer")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise SignalError(f"malformed signal: epoch {epoch!r} is not a non-negative integer")
    if not _finite(issued_at) or not isinstance(issuer, str):
        raise SignalError("malformed signal: issued_at/issuer missing or of the wrong type")
    state = _decode_state(body.get("state"), epoch, topology)
    return Signal(state, float(issued_at), issuer,  # type: ignore[arg-type]
                  signature if isinstance(signature, str) else None)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _decode_state(raw: object, epoch: int, topology: Topology) -> ControlState:
    if not isinstance(raw, dict):
        raise SignalError("malformed signal: 'state' is not an object")
    base = ControlState.initial(topology)
    primaries = dict(base.primaries)
    for name, unit in _object(raw, "primaries").items():
        resource = topology.resources.get(name)
        if resource is None or resource.kind == "http":
            continue
        if not isinstance(unit, str) or unit not in resource.endpoints:
            raise SignalError(f"signal epoch {epoch}: primary of {name!r} = {unit!r} "
                              f"is not a unit with an endpoint ({', '.join(resource.endpoints)})")
        primaries[name] = unit
    weights = dict(base.weights)
    for unit, weight in _object(raw, "weights").items():
        if not _finite(weight) or weight < 0:
            raise SignalError(f"signal epoch {epoch}: weight of unit {unit!r} = {weight!r} "
                              "is not a number >= 0")
        if unit in weights:
            weights[unit] = float(weight)
    locks: dict[str, Lock] = {}
    for name, lock in _object(raw, "locks").items():
        if not isinstance(lock, dict) or not isinstance(lock.get("holder"), str) \
                or not _finite(lock.get("since")):
            raise SignalError(f"signal epoch {epoch}: lock on {name!r} is malformed")
        if name in topology.resources:
            locks[name] = Lock(lock["holder"], float(lock["since"]), str(lock.get("reason", "")))
    routes = decode_routes(raw.get("routes", []), topology, f"signal epoch {epoch}: ")
    faults: tuple[Fault, ...] = ()
    if raw.get("faults"):
        from .faults import decode  # only a signal with faults loads them
        faults = decode(raw["faults"], topology.resources, topology.units,
                        f"signal epoch {epoch}: ")
    intents: dict[str, Intent] = {}
    for name, intent in _object(raw, "intents").items():
        if not isinstance(intent, dict) or not isinstance(intent.get("holder"), str) \
                or not isinstance(intent.get("target"), str) or not _finite(intent.get("until")):
            raise SignalError(f"signal epoch {epoch}: intent on {name!r} is malformed")
        resource = topology.resources.get(name)
        if resource is None:
            continue
        if intent["target"] not in resource.endpoints:
            raise SignalError(f"signal epoch {epoch}: intent on {name!r} names unit "
                              f"{intent['target']!r}, where it has no endpoint "
                              f"({', '.join(resource.endpoints)})")
        intents[name] = Intent(intent["holder"], intent["target"], float(intent["until"]))
    return ControlState(epoch, MappingProxyType(primaries), MappingProxyType(weights),
                        MappingProxyType(locks), routes, faults, MappingProxyType(intents))


def decode_routes(raw: object, topology: Topology, where: str = "") -> tuple[RouteRule, ...]:
    """Parse routing rules (the ``routes`` list of a signal, or a rules file).

    Raises :class:`SignalError` naming the rule (by position) and what is wrong with it.
    """
    if not isinstance(raw, list):
        raise SignalError(f"{where}routes must be a list of rules")
    rules = []
    for i, item in enumerate(raw):
        what = f"{where}route rule {i + 1}"
        if not isinstance(item, dict):
            raise SignalError(f"{what}: expected an object like "
                              '{"unit": "beijing", "range": [0, 4999]}')
        unit = item.get("unit")
        if unit not in topology.units:
            raise SignalError(f"{what}: unit {unit!r} is not one of the units "
                              f"({', '.join(topology.units)})")
        forms = [f for f in ("range", "hash", "keys") if f in item]
        unknown = set(item) - {"unit", "range", "hash", "keys"}
        if len(forms) != 1 or unknown:
            raise SignalError(f"{what}: expected exactly one of range, hash or keys"
                              + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else ""))
        form = forms[0]
        value = item[form]
        if form == "keys":
            if not isinstance(value, list) or not all(isinstance(k, (str, int)) and
                                                      not isinstance(k, bool) for k in value):
                raise SignalError(f"{what}: keys must be a list of strings")
            rules.append(RouteRule(unit, form, keys=frozenset(str(k) for k in value)))
            continue
        if not isinstance(value, list) or len(value) != 2 or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value) \
                or value[0] > value[1]:
            raise SignalError(f"{what}: {form} must be [low, high] with integers low <= high")
        if form == "hash" and not (0 <= value[0] and value[1] < HASH_BUCKETS):
            raise SignalError(f"{what}: hash buckets run from 0 to {HASH_BUCKETS - 1}")
        rules.append(RouteRule(unit, form, value[0], value[1]))
    return tuple(rules)


def _object(raw: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise SignalError(f"malformed signal: 'state.{name}' is not an object")
    return value


def newer(current: ControlState, signal: Signal) -> bool:
    """Whether ``signal`` may replace ``current``: only a strictly higher epoch does."""
    return signal.state.epoch > current.epoch


def issuer() -> str:
    """Who publishes: ``user@host:pid``, recorded in every signal."""
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = str(os.getuid())
    return f"{user}@{gethostname()}:{os.getpid()}"
