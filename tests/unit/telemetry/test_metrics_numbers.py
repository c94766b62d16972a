"""Sample values in /metrics keep their precision."""

from __future__ import annotations

import math

from resil.telemetry.metrics import _number


def test_sample_values_are_exact():
    assert _number(61_468_672) == "61468672"            # RSS: :g printed 6.14687e+07
    assert _number(1_000_001.0) == "1000001"            # a counter past a million
    assert _number(2 ** 60) == str(2 ** 60)
    assert _number(0) == "0" and _number(-3) == "-3" and _number(True) == "1"
    for value in (0.1, 1 / 3, 123456.789, 1e-7, 2.5e20):
        assert float(_number(value)) == value
    assert _number(float("nan")) == "NaN"
    assert _number(math.inf) == "+Inf" and _number(-math.inf) == "-Inf"
