"""Supervision and sync-object benchmarks (issue 5), as plain functions over a connected kernel.

- ``restart_latency(kernel)``: seconds from ``kill -9`` of a ``restart="permanent"``
  actor to the first successful call on its new incarnation, one sample per round.
- ``mutex_round_trips(kernel)``: acquire+release cycles per second of one kernel mutex
  contended by two processes, and of a ``multiprocessing.Lock`` by two processes, in the
  same run (so the two numbers share the machine's load).

``llmos bench`` can wire these as ``restart_latency_p50`` and a mutex case; the
pytest-benchmark files in ``benchmarks/`` use the ``RestartRound`` workload directly.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import statistics
import time
from typing import Any

from .._spawnspec import RestartPolicy
from ..errors import ActorDiedError, LlmosError

#: Limits that never give up during a benchmark (a real deployment wants far fewer).
BENCH_RESTART = RestartPolicy("permanent", intensity=1_000_000, period=1.0, backoff=0.0, backoff_max=0.0)


class BenchPid:
    """The smallest actor: says which process it is."""

    def pid(self) -> int:
        return os.getpid()


class RestartRound:
    """One restart-latency measurement per ``round()``; ``setup()`` before each (outside the timing)."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.ref = kernel.spawn(BenchPid, restart=BENCH_RESTART)
        self.waiting = self.ref.options(wait_restart=True, timeout=30.0)
        self.pid = 0

    def setup(self) -> None:
        self.pid = self.waiting.call("pid")

    def round(self) -> None:
        """SIGKILL, then call until the new incarnation answers (no polling: calls wait for the restart)."""
        old = self.pid
        os.kill(old, signal.SIGKILL)
        while True:
            try:
                if self.waiting.call("pid") != old:
                    return
            except ActorDiedError as exc:  # sent before the death was known: a call in flight
                if not exc.restarting:
                    raise

    def close(self) -> None:
        try:
            self.kernel.kill(self.ref, force=True)
        except LlmosError:
            pass


def restart_latency(kernel: Any, rounds: int = 50) -> list[float]:
    """Seconds from ``kill -9`` to the first successful call on the restarted actor, per round."""
    bench = RestartRound(kernel)
    try:
        samples = []
        for _ in range(rounds):
            bench.setup()
            started = time.perf_counter()
            bench.round()
            samples.append(time.perf_counter() - started)
        return samples
    finally:
        bench.close()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


# ---------------------------------------------------------------------------- mutex vs multiprocessing.Lock
def _llmos_worker(runtime_dir: str, name: str, seconds: float, start: Any, results: Any) -> None:
    from ..client import connect

    with connect(runtime_dir) as kernel:
        m = kernel.mutex(name)
        m.acquire()  # warm: connection made, pidfd opened
        m.release()
        start.wait()
        n = 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            m.acquire()
            m.release()
            n += 1
        results.put(n)


def _mp_worker(lock: Any, seconds: float, start: Any, results: Any) -> None:
    start.wait()
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        lock.acquire()
        lock.release()
        n += 1
    results.put(n)


def _run_pair(ctx: Any, target: Any, args: tuple, seconds: float) -> float:
    start = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, seconds, start, results)) for _ in range(2)]
    for p in procs:
        p.start()
    try:
        total = sum(results.get(timeout=seconds + 60) for _ in procs)
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
    return total / seconds


def mutex_round_trips(kernel: Any, seconds: float = 2.0) -> dict[str, float]:
    """Acquire+release cycles per second, two processes on one lock: a kernel mutex vs ``multiprocessing.Lock``.

    Each kernel-mutex cycle is two round trips to the daemon (acquire, release);
    ``multiprocessing.Lock`` is a futex-backed semaphore in shared memory (no daemon).
    Also measured: one uncontended process on the kernel mutex (this one).
    """
    ctx = mp.get_context("spawn")  # never fork a process with ZeroMQ threads
    name = f"bench-mutex-{os.getpid()}"
    m = kernel.mutex(name)
    m.acquire()
    m.release()
    n = 0
    end = time.perf_counter() + seconds / 2
    while time.perf_counter() < end:
        m.acquire()
        m.release()
        n += 1
    uncontended = n / (seconds / 2)
    ours = _run_pair(ctx, _llmos_worker, (str(kernel.config.runtime_dir), name), seconds)
    theirs = _run_pair(ctx, _mp_worker, (ctx.Lock(),), seconds)
    kernel.sync_delete(name)
    return {
        "llmos_mutex_cycles_per_s_2proc": ours,
        "mp_lock_cycles_per_s_2proc": theirs,
        "llmos_mutex_cycles_per_s_1proc": uncontended,
    }


def summary(samples: list[float]) -> dict[str, float]:
    """p50 / p99 / mean in milliseconds."""
    return {
        "p50_ms": percentile(samples, 0.5) * 1000,
        "p99_ms": percentile(samples, 0.99) * 1000,
        "mean_ms": statistics.fmean(samples) * 1000,
    }
