"""Converge before locking, driven by a scripted pair and an injected clock (the real
servers are in tests/functional/test_switch_mysql.py; this is the arithmetic)."""

from __future__ import annotations

import pytest

from resil.errors import SwitchError
from resil.ops.converge import converge


class Pair:
    """The primary writes ``write_rate`` units/s; the target applies ``apply_rate``/s
    from ``behind`` units behind, never past the primary."""

    def __init__(self, behind: int, write_rate: float, apply_rate: float) -> None:
        self.now = 0.0
        self.behind, self.write_rate, self.apply_rate = behind, write_rate, apply_rate
        primary, target = self, self

        class Server:
            def __init__(self, position) -> None:
                self.progress = lambda: (position(),)
        self.primary = Server(lambda: int(primary.behind + primary.write_rate * primary.now))
        self.target = Server(lambda: min(int(target.apply_rate * target.now),
                                         int(target.behind + target.write_rate * target.now)))

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def run(pair: Pair, timeout: float = 30.0, said: list[str] | None = None) -> str:
    return converge(pair.primary, pair.target, timeout=timeout, max_catchup=0.1,
                    unit="transactions", say=(said if said is not None else []).append,
                    clock=pair.clock, sleep=pair.sleep)


def test_a_level_target_converges_at_once():
    result = run(Pair(behind=0, write_rate=1000, apply_rate=5000))
    assert result.startswith("target level with the primary (0 transactions behind")


def test_a_target_that_catches_up_converges_when_the_rest_is_milliseconds_of_work():
    said: list[str] = []
    pair = Pair(behind=6000, write_rate=1000, apply_rate=4000)   # closes 3,000/s
    result = run(pair, said=said)
    assert "target level with the primary" in result
    assert 1.5 < pair.now < 2.5                   # 6,000 behind at a net 3,000/s
    assert any("converging:" in line and "shrinking" in line for line in said), said


def test_a_target_that_cannot_keep_up_is_refused_with_its_trend_nothing_locked():
    said: list[str] = []
    pair = Pair(behind=100, write_rate=3000, apply_rate=1500)   # falls behind
    with pytest.raises(SwitchError) as info:
        run(pair, timeout=3.0, said=said)
    message = str(info.value)
    assert "did not converge within 3 s" in message and "growing" in message
    assert "nothing was locked or fenced" in message
    assert "slave_parallel_threads" in message
    assert len([line for line in said if "converging:" in line]) >= 2   # no silent seconds


def test_a_stopped_target_is_refused():
    pair = Pair(behind=500, write_rate=0, apply_rate=0)
    with pytest.raises(SwitchError, match="500 transactions behind, applying 0/s, steady"):
        run(pair, timeout=1.0)
