"""Queue-wait and run-time histograms of one actor, for its heartbeat (and so for ``/metrics``).

Recorded only when the daemon serves metrics (``[metrics] listen``, or ``timings = true``
for ``llmos stats`` without a listener): the executor then
holds a ``CallTimings`` and adds two bucket increments per call, reusing the clock
readings its pump takes anyway. Nothing here locks or does I/O; the heartbeat sends a
copy of the counts once a second and the daemon turns them into Prometheus histograms.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

#: Upper bounds (seconds) of the buckets; the last bucket (+Inf) is implicit.
BUCKETS: tuple[float, ...] = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class Histogram:
    """Counts per bucket (not cumulative), their sum and count."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.sum += value

    def snapshot(self) -> dict:
        """The wire form: ``{"le": bounds, "counts": cumulative counts, "sum", "count"}`` (as ``on_metrics``)."""
        cumulative, total = [], 0
        for n in self.counts[:-1]:
            total += n
            cumulative.append(total)
        total += self.counts[-1]
        return {"le": list(BUCKETS), "counts": cumulative, "sum": self.sum, "count": total}


class CallTimings:
    """The two histograms every actor reports: time queued in the mailbox, time running."""

    __slots__ = ("run", "wait")

    def __init__(self) -> None:
        self.wait = Histogram()
        self.run = Histogram()

    def snapshot(self) -> dict:
        return {"queue_wait": self.wait.snapshot(), "run": self.run.snapshot()}


def metrics_enabled(extra: Any) -> bool:
    """Whether actors time their calls: ``[metrics] timings``, which follows ``listen`` unless set."""
    section = extra.get("metrics") if hasattr(extra, "get") else None
    if not isinstance(section, dict):
        return False
    timings = section.get("timings")
    return bool(section.get("listen")) if timings is None else bool(timings)
