"""resil._record's classes behave as ``dataclasses`` makes them, for every feature resil
uses: each case makes the same class with both and compares what a user sees."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import KW_ONLY
from typing import ClassVar

import pytest

from resil import _record


def make(decorator, field):
    @decorator(frozen=True)
    class Point:
        kind: ClassVar[str] = "point"
        x: int
        y: int = 2
        tags: tuple[str, ...] = field(default_factory=tuple)
        cache: dict[str, int] = field(init=False, repr=False, compare=False,
                                      default_factory=dict)
        _: KW_ONLY
        label: str = "p"

        def __post_init__(self) -> None:
            self.cache["made"] = self.x

    @decorator
    class Mutable:
        a: int
        b: list[int] = field(default_factory=list)

    return Point, Mutable


RECORD = make(_record.dataclass, _record.field)
REAL = make(dataclasses.dataclass, dataclasses.field)


def outcome(call):
    try:
        return ("ok", call())
    except Exception as exc:
        return (type(exc).__name__, str(exc).split("__init__()")[-1])


CASES = {
    "positional and defaults": lambda P, M: repr(P(1)),
    "keywords": lambda P, M: repr(P(y=5, x=1, tags=("a",), label="q")),
    "post_init": lambda P, M: P(7).cache,
    "eq": lambda P, M: (P(1) == P(1), P(1) == P(2), P(1) == P(1, label="other"),
                        P(1) == (1, 2)),
    "eq ignores compare=False": lambda P, M: P(1) == P(1, y=2),
    "hash": lambda P, M: (hash(P(1)) == hash(P(1)), len({P(1), P(1), P(2)})),
    "mutable unhashable": lambda P, M: M.__hash__ is None,
    "mutable eq and set": lambda P, M: (M(1) == M(1), setattr(m := M(1), "a", 3), m.a),
    "frozen": lambda P, M: setattr(P(1), "x", 2),
    "frozen del": lambda P, M: delattr(P(1), "x"),
    "missing": lambda P, M: P(),
    "too many positional": lambda P, M: P(1, 2, (), "label"),
    "unexpected keyword": lambda P, M: P(1, z=3),
    "multiple values": lambda P, M: P(1, x=2),
    "init=False refused": lambda P, M: P(1, cache={}),
    "class var": lambda P, M: (P.kind, "kind" in [f.name for f in dataclasses.fields(P)]),
    "fields": lambda P, M: [(f.name, f.init, f.repr, f.compare, f.kw_only)
                            for f in dataclasses.fields(P)],
    "is_dataclass": lambda P, M: (dataclasses.is_dataclass(P), dataclasses.is_dataclass(P(1))),
    "replace": lambda P, M: repr(dataclasses.replace(P(1, label="a"), y=9)),
    "asdict": lambda P, M: dataclasses.asdict(P(1, tags=("t",))),
    "class defaults": lambda P, M: (P.y, P.label, hasattr(P, "tags")),
    "match_args": lambda P, M: P.__match_args__,
    "pickle": lambda P, M: pickle.loads(pickle.dumps(P(3, label="z"))) == P(3, label="z"),
}


@pytest.mark.parametrize("case", CASES)
def test_the_same_as_dataclasses(case):
    ours, theirs = outcome(lambda: CASES[case](*RECORD)), outcome(lambda: CASES[case](*REAL))
    assert ours == theirs


def test_replace_needs_no_dataclasses():
    point = RECORD[0](1)
    assert _record.replace(point, x=4) == RECORD[0](4)
    with pytest.raises(ValueError, match="init=False"):
        _record.replace(point, cache={})


def test_mutable_defaults_and_unsupported_options_are_refused():
    with pytest.raises(ValueError, match="mutable default"):
        @_record.dataclass
        class Bad:
            items: list[int] = []       # noqa: RUF012
    with pytest.raises(TypeError):
        _record.dataclass(order=True)   # type: ignore[call-arg]


def test_no_dataclasses_at_start_up():
    """The point of it: a configuration and a control state load no dataclasses."""
    import subprocess
    import sys
    code = ("import sys, resil.config, resil.state, resil.control.base, "
            "resil.integrations.base; print('dataclasses' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout == "False\n", out.stderr


def test_an_endpoint_compares_and_hashes_on_every_field():
    """Endpoint writes its __eq__/__hash__ out (a per-call dictionary key): still the
    dataclass's, over all five fields."""
    from resil.topology import Endpoint
    a = Endpoint("db", "a", "h", 1)
    assert a == Endpoint("db", "a", "h", 1) and hash(a) == hash(Endpoint("db", "a", "h", 1))
    for other in (Endpoint("x", "a", "h", 1), Endpoint("db", "b", "h", 1),
                  Endpoint("db", "a", "g", 1), Endpoint("db", "a", "h", 2),
                  Endpoint("db", "a", "h", 1, "http://h:1")):
        assert a != other and len({a, other}) == 2
    assert a != ("db", "a", "h", 1, None)
