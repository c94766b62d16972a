"""Scale signals: utilization, saturation and ``desired_instances`` for autoscalers.

- **utilization**: the busy fraction of the instance's capacity over the last
  ``window`` seconds — request-seconds served (by the process and its workers) divided by
  elapsed seconds times capacity. Capacity is ``[admin] capacity`` (concurrent requests
  the instance can serve), or, when 0, the number of worker processes that report
  requests (gunicorn's sync workers serve one each), at least 1.
- **saturation**: work waiting — requests in flight beyond capacity, plus writes held
  by the gate right now.
- **desired_instances**: what Kubernetes' horizontal autoscaler would compute from a
  target utilization: ``ceil(instances × mean utilization / target)``, unchanged while
  the ratio is within the tolerance band (0.1). Instances and their utilization are
  the service's sums over the last complete window in the control plane (every
  heartbeat adds to them; see :meth:`resil.control.base.ControlPlane.fleet_load`), so
  each instance answers with the same fleet-wide number, and reading it costs the same
  at 10 instances as at 5,000.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

TOLERANCE = 0.1


class Sampler:
    """Request-seconds over a sliding window."""

    def __init__(self, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque()

    def utilization(self, busy_total: float, capacity: float) -> float:
        """Busy fraction since the oldest sample in the window (recording one now)."""
        now = self._clock()
        self._samples.append((now, busy_total))
        # Drop what fell out of the window, keeping a reference sample to measure from.
        while len(self._samples) > 2 and self._samples[0][0] < now - self.window:
            self._samples.popleft()
        then, busy_then = self._samples[0]
        elapsed = now - then
        if elapsed <= 0 or capacity <= 0:
            return 0.0
        return max(0.0, (busy_total - busy_then) / (elapsed * capacity))


def desired_instances(instances: int, utilization_sum: float, target: float,
                      tolerance: float = TOLERANCE) -> int:
    """The HPA rule over ``instances`` whose utilizations add up to ``utilization_sum``."""
    if instances <= 0 or target <= 0:
        return max(instances, 1)
    ratio = (utilization_sum / instances) / target
    if abs(ratio - 1.0) <= tolerance:
        return instances
    return max(1, math.ceil(instances * ratio))
