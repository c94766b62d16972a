"""Scale signals: a sliding-window utilization and the HPA rule (injected time)."""

from __future__ import annotations

import pytest

from resil.scale import Sampler, desired_instances


def test_utilization_over_the_window():
    now = [0.0]
    sampler = Sampler(window=60, clock=lambda: now[0])
    assert sampler.utilization(0.0, capacity=2) == 0.0          # first sample: no interval
    now[0] = 10.0
    assert sampler.utilization(10.0, capacity=2) == pytest.approx(0.5)   # 10 s busy of 20
    now[0] = 20.0
    assert sampler.utilization(30.0, capacity=2) == pytest.approx(0.75)  # 30 of 40
    now[0] = 100.0                                   # old samples fall out of the window
    assert sampler.utilization(30.0, capacity=2) == pytest.approx(0.0)
    now[0] = 110.0
    assert sampler.utilization(50.0, capacity=2) == pytest.approx(1.0)


@pytest.mark.parametrize("utilizations,target,desired", [
    ([0.6, 0.6], 0.6, 2),          # on target
    ([0.65, 0.65], 0.6, 2),        # within the 10 % tolerance band: unchanged
    ([0.9, 0.9], 0.6, 3),          # ceil(2 × 1.5)
    ([0.1, 0.1, 0.1], 0.6, 1),     # scale in, never below one
    ([1.0], 0.5, 2),
    ([], 0.6, 1),
])
def test_the_hpa_rule(utilizations, target, desired):
    assert desired_instances(len(utilizations), sum(utilizations), target) == desired
