"""What a benchmark measures, and the two loops that measure it.

A ``Workload`` is anything that can do one *round* of ``ops`` operations on
request: a batch of calls to an actor, one spawn, one tensor hand-over. The
runner times rounds (``window`` for throughput, ``timed_round`` for
per-operation times); pytest-benchmark times the very same ``round`` method.
So each case and each peer is written once and measured by both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Timing:
    """How long to measure.

    Attributes:
        warmup_s: seconds of rounds run and thrown away before measuring.
        window_s: seconds per throughput sample.
        repeats: throughput samples (windows) per contestant.
        samples: latency samples for per-operation cases (spawn: one actor each).
        rounds: latency samples for sized transfers (tensors), which cost more each.
        calls: latency samples for single cheap calls, whose tail (p99) is the point.
        blocks: contestants measured one after the other (not taking turns) take their
            samples in this many blocks, alternating.
    """

    warmup_s: float = 1.0
    window_s: float = 1.0
    repeats: int = 5
    samples: int = 20
    rounds: int = 7
    calls: int = 2000
    blocks: int = 4


#: The default run (``llmos bench``): about 6 s per throughput contestant, in 10 short turns
#: so that contestants alternate often (see ``runner``).
FULL = Timing(warmup_s=1.0, window_s=0.5, repeats=10)
#: ``llmos bench --quick``: under 1 s per throughput contestant.
QUICK = Timing(warmup_s=0.15, window_s=0.2, repeats=3, samples=5, rounds=3, calls=30, blocks=1)


class Workload:
    """One contestant's side of a case, ready to run rounds.

    Subclasses set ``ops`` (operations per round) and implement ``round``; they
    acquire what they need in ``__init__`` and release all of it in ``close``
    (processes, sockets, actors), which must be safe to call after a failed start.

    Attributes:
        ops: operations one ``round`` performs (a float for units such as GB).
        note: a short remark shown with the result (what exactly was measured).
        max_samples: caps the latency samples for contestants that cost seconds each.
        warmup: False skips the warm-up (every round is as cold as the first anyway).
    """

    ops: float = 1
    note: str = ""
    max_samples: int | None = None
    warmup: bool = True

    def setup(self) -> None:
        """Called before each round, outside the timed region (pytest-benchmark's ``setup``)."""

    def round(self) -> float | None:
        """Run one round. Return its duration in seconds if the workload timed it itself
        (a remote driver, or a round with untimed parts), else None."""
        raise NotImplementedError

    def close(self) -> None:
        """Release everything ``__init__`` acquired."""

    def __enter__(self) -> Workload:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def timed_round(workload: Workload) -> float:
    """Seconds one round took (setup excluded)."""
    workload.setup()
    t0 = time.perf_counter()
    own = workload.round()
    elapsed = time.perf_counter() - t0
    return elapsed if own is None else own


def warm_up(workload: Workload, seconds: float) -> None:
    """Run rounds for ``seconds`` (at least one) and forget them."""
    end = time.monotonic() + seconds
    timed_round(workload)
    while time.monotonic() < end:
        timed_round(workload)


def window(workload: Workload, seconds: float) -> float:
    """Operations per second over rounds that add up to at least ``seconds`` of timed work."""
    busy = 0.0
    ops = 0.0
    while busy < seconds:
        busy += timed_round(workload)
        ops += workload.ops
    return ops / busy
