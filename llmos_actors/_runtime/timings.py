"""Queue-wait and run-time histograms of one actor, for its heartbeat (and so for ``/metrics``).

Recorded only when the daemon serves metrics (``[metrics] listen``, or ``timings = true``
for ``llmos stats`` without a listener): the executor then holds a ``CallTimings`` and,
per call, adds one to a bucket and the duration to the sum of each histogram, in
preallocated lists, reusing the clock readings its pump takes anyway (no extra reading,
no lock, no I/O, no allocation but the float sum). The heartbeat turns the counts into
cumulative ones once a second and the daemon into Prometheus histograms.
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


#: Where a histogram's ``counts`` keep the sum of the values (after the buckets, +Inf last).
SUM = len(BUCKETS) + 1


class Histogram:
    """Counts per bucket (not cumulative, +Inf last), then the sum of the values, in one list.

    One list, so the executor's pump updates both with two item increments on a local
    (``counts[bisect_left(BUCKETS, v)] += 1; counts[SUM] += v``: what ``observe`` does).
    """

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: list = [0] * (len(BUCKETS) + 1) + [0.0]

    @property
    def sum(self) -> float:
        return self.counts[SUM]

    def observe(self, value: float) -> None:
        counts = self.counts
        counts[bisect_left(BUCKETS, value)] += 1
        counts[SUM] += value

    def snapshot(self) -> dict:
        """The wire form: ``{"le": bounds, "counts": cumulative counts, "sum", "count"}`` (as ``on_metrics``)."""
        counts = self.counts[:]  # one copy: the pump may add to the list between the lines below
        cumulative, total = [], 0
        for n in counts[: len(BUCKETS)]:
            total += n
            cumulative.append(total)
        total += counts[len(BUCKETS)]
        return {"le": list(BUCKETS), "counts": cumulative, "sum": counts[SUM], "count": total}


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
