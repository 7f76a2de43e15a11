"""The device's numbers: counters and latency histograms in the Prometheus shape."""

from __future__ import annotations

import bisect
from typing import Any

#: Seconds, for time to first token and between tokens.
TTFT_BOUNDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ITL_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)


class Histogram:
    """Counts per upper bound (cumulative in ``snapshot``), a sum and a count."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last bucket is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def snapshot(self) -> dict[str, Any]:
        cumulative, total = [], 0
        for n in self.counts:
            total += n
            cumulative.append(total)
        return {"le": [*self.bounds, float("inf")], "counts": cumulative, "sum": self.sum, "count": self.count}


class Meter:
    """Tokens made (in total and per second over a sliding window) and the latency histograms."""

    WINDOW = 5.0

    def __init__(self) -> None:
        self.tokens_total = 0
        self.ttft = Histogram(TTFT_BOUNDS)
        self.inter_token = Histogram(ITL_BOUNDS)
        self._marks: list[tuple[float, int]] = []  # (time, tokens_total) once per step

    def step(self, now: float, tokens: int) -> None:
        self.tokens_total += tokens
        marks = self._marks
        marks.append((now, self.tokens_total))
        while len(marks) > 2 and marks[0][0] < now - self.WINDOW:
            marks.pop(0)

    def tokens_per_s(self, now: float) -> float:
        marks = self._marks
        if len(marks) < 2 or now - marks[-1][0] > self.WINDOW:
            return 0.0
        (t0, n0), (t1, n1) = marks[0], marks[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
