"""Running the selected cases: ours and each peer, measured in this run, summarized, compared.

Contestants of one case are measured **interleaved**: all are opened, each is
warmed up, then they take turns, one window (or one latency round) each, until
every one has its samples. On a shared machine the load of others comes and
goes; taking turns spreads it evenly over the contestants, so the ratio between
them holds even when the absolute numbers drift.

Ray's peers run last, in a second pass: the background processes of a Ray
cluster would otherwise run beside everything measured after it starts.
A contestant that cannot start or fails is recorded with its reason; the run goes on.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .cases import Case
from .context import BenchContext
from .peers import PEERS, Peer
from .workload import Workload, timed_round, warm_up, window

log = logging.getLogger(__name__)

OURS = "llmos"


@dataclass
class Stat:
    """Summary of one contestant's samples, in the case's unit."""

    value: float  # what the case reports: the median, or the case's percentile
    median: float
    min: float
    max: float
    n: int
    samples: list[float]


@dataclass
class Result:
    """One contestant of one case: measured (``stat``), skipped or failed (``reason``)."""

    who: str
    status: str  # "ok" | "skipped" | "error"
    stat: Stat | None = None
    reason: str = ""
    note: str = ""
    peer: str = ""  # the peer's id; "" for ours
    ratio: float | None = None  # how many times better llmos did than this peer (>1: llmos ahead)


@dataclass
class CaseResult:
    case: Case
    ours: Result
    peers: list[Result] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between closest ranks (numpy's default)."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(case: Case, raw: list[float]) -> Stat:
    samples = [x * case.scale for x in raw]
    median = statistics.median(samples)
    value = {"p50": median, "p99": percentile(samples, 99)}.get(case.stat, median)
    return Stat(value, median, min(samples), max(samples), len(samples), samples)


def ratio(case: Case, ours: Stat, peer: Stat) -> float | None:
    """llmos's advantage: ours/peer for rates, peer/ours for times (>1 means llmos is ahead)."""
    if ours.value <= 0 or peer.value <= 0:
        return None
    return ours.value / peer.value if case.higher_is_better else peer.value / ours.value


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


@dataclass
class _Contestant:
    """One side of a case while it is measured."""

    case: Case
    peer: Peer | None
    workload: Workload | None = None
    samples: list[float] = field(default_factory=list)
    wanted: int = 0
    note: str = ""
    failure: Result | None = None

    @property
    def who(self) -> str:
        return self.peer.label if self.peer else OURS

    @property
    def key(self) -> tuple[str, str]:
        return (self.case.measure_key, self.peer.id if self.peer else OURS)

    def fail(self, status: str, reason: str) -> None:
        self.failure = Result(self.who, status, reason=reason, peer=self.peer.id if self.peer else "")
        self.close()

    def result(self, case: Case) -> Result:
        """The outcome, summarized with ``case``'s statistic (cases sharing a series differ in it)."""
        if self.failure is not None:
            return self.failure
        peer_id = self.peer.id if self.peer else ""
        if not self.samples:
            return Result(self.who, "error", reason="interrupted before any sample", peer=peer_id)
        return Result(self.who, "ok", stat=summarize(case, self.samples), note=self.note, peer=peer_id)

    def close(self) -> None:
        w, self.workload = self.workload, None
        if w is not None:
            try:
                w.close()
            except Exception as exc:  # cleanup trouble is worth a line, not the run
                log.warning("closing %s of %s failed: %s", self.who, self.case.name, exc)


class Runner:
    """Runs ``cases`` (and their peers, if ``with_peers``) against ``ctx``.

    Args:
        progress: called as ``progress(done, total, label)`` before each group of measurements.
        peers: the peer registry that case peer ids refer to.
    """

    def __init__(
        self,
        ctx: BenchContext,
        cases: list[Case],
        *,
        with_peers: bool,
        progress: Callable[[int, int, str], None] | None = None,
        peers: dict[str, Peer] | None = None,
    ) -> None:
        self.ctx = ctx
        self.cases = cases
        self.with_peers = with_peers
        self.peers = PEERS if peers is None else peers
        self.progress = progress or (lambda done, total, label: None)
        self._done: dict[tuple[str, str], _Contestant] = {}  # by measurement: p50 and p99 share one

    # ------------------------------------------------------------------ plan
    def run(self) -> list[CaseResult]:
        skipped: dict[str, str] = {}
        groups: list[list[_Contestant]] = []
        ray_groups: list[list[_Contestant]] = []
        seen: set[tuple[str, str]] = set()
        for case in self.cases:
            reason = self._requires(case.requires)
            if not reason and self.ctx.quick and not case.quick and not self.ctx.named:
                reason = "left out of --quick (name it to run it)"
            if reason:
                skipped[case.name] = reason
                continue
            local = [_Contestant(case, None)]
            remote: list[_Contestant] = []
            for peer_id in case.peers if self.with_peers else ():
                peer = self.peers[peer_id]
                (remote if peer.group == "ray" else local).append(_Contestant(case, peer))
            for group, into in ((local, groups), (remote, ray_groups)):
                group = [c for c in group if c.key not in seen]
                seen.update(c.key for c in group)
                if group:
                    into.append(group)
        all_groups = groups + ray_groups
        for i, group in enumerate(all_groups):
            label = f"{group[0].case.measure_key}: {', '.join(c.who for c in group)}"
            self.progress(i, len(all_groups), label)
            self._measure(group)
        self.progress(len(all_groups), len(all_groups), "done")
        return [self._result(case, skipped.get(case.name)) for case in self.cases]

    def _result(self, case: Case, skipped: str | None) -> CaseResult:
        if skipped:
            return CaseResult(case, Result(OURS, "skipped", reason=skipped))
        ours = self._done[(case.measure_key, OURS)].result(case)
        peers = [self._done[(case.measure_key, p)].result(case) for p in (case.peers if self.with_peers else ())]
        for p in peers:
            if ours.stat is not None and p.stat is not None:
                p.ratio = ratio(case, ours.stat, p.stat)
        return CaseResult(case, ours, peers)

    def _requires(self, check: Callable[[BenchContext], str | None]) -> str | None:
        try:
            return check(self.ctx)
        except Exception as exc:  # a broken check skips its case, with the reason
            return f"availability check failed: {_one_line(exc)}"

    # ------------------------------------------------------------------ measure
    def _measure(self, group: list[_Contestant]) -> None:
        """Measure the contestants of one case: taking turns, or one after the other for cases
        whose contestants would disturb each other while open (each floods its own actor)."""
        if group[0].case.interleave:
            self._measure_together(group)
            return
        # One at a time, but in several blocks: each contestant's samples then span the
        # whole case's time, and a slow spell of a shared machine falls on all of them.
        blocks = max(1, self.ctx.timing.blocks)
        for block in range(1, blocks + 1):
            for c in group:
                if c.failure is None:
                    self._measure_together([c], share=block / blocks)

    def _measure_together(self, group: list[_Contestant], share: float = 1.0) -> None:
        """Open, warm up and measure contestants of one case, taking turns; ``share``: measure
        until each holds that fraction of its samples (a block of a one-at-a-time case)."""
        case, timing = group[0].case, self.ctx.timing
        try:
            for c in group:
                self._open(c)
            for c in group:
                self._step(c, warm=True)
            n = timing.repeats if case.kind == "rate" else getattr(timing, case.samples)
            for c in group:
                cap = c.workload.max_samples if c.workload is not None else None
                c.wanted = math.ceil((n if cap is None else min(n, cap)) * share)
            while True:
                turn = [c for c in group if c.workload is not None and len(c.samples) < c.wanted]
                if not turn:
                    break
                for c in turn:
                    self._step(c, warm=False)
        finally:
            for c in group:
                c.close()
                self._done[c.key] = c

    def _open(self, c: _Contestant) -> None:
        if c.peer is not None:
            reason = self._requires(c.peer.requires)
            if reason:
                c.fail("skipped", reason)
                return
        opener: Callable[..., Workload] = c.peer.open if c.peer else c.case.open
        try:
            c.workload = opener(self.ctx, **c.case.params)
            c.note = c.workload.note
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            log.debug("opening %s failed", c.key, exc_info=True)
            c.fail("error", _one_line(exc))

    def _step(self, c: _Contestant, *, warm: bool) -> None:
        """Warm ``c`` up, or take one sample: a throughput window or one latency round."""
        w = c.workload
        if w is None or (warm and not w.warmup):
            return
        timing = self.ctx.timing
        try:
            if c.case.kind == "rate":
                if warm:
                    warm_up(w, timing.warmup_s)
                else:
                    c.samples.append(window(w, timing.window_s))
            else:
                seconds = timed_round(w)
                if not warm:
                    c.samples.append(seconds / w.ops)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            log.debug("%s failed", c.key, exc_info=True)
            c.fail("error", _one_line(exc))


def run_cases(
    ctx: BenchContext,
    cases: list[Case],
    *,
    with_peers: bool,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[list[CaseResult], float]:
    """Run ``cases``; returns their results and the seconds it took."""
    t0 = time.monotonic()
    results = Runner(ctx, cases, with_peers=with_peers, progress=progress).run()
    return results, time.monotonic() - t0
