"""The llmos side of the kernel-service cases: priority under load, restarts, pools, mutexes.

Like ``ours`` (the call, message and tensor cases): public client API only; each class
acquires in ``__init__``, releases in ``close``, and ``round`` is what gets timed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

from .._spawnspec import RestartPolicy
from ..errors import ActorDiedError, CallTimeout, LlmosError
from . import actors
from .context import Actors, BenchContext
from .workload import Workload

#: Nice value of the priority case's load generator (a low-priority batch client).
FLOOD_NICE = 10


class PriorityUnderLoad(Workload):
    """A priority-7 call to an actor that another process floods with priority-0 calls.

    The flood keeps ``FLOOD_WINDOW`` calls of ``FLOOD_WORK`` seconds each in flight (from
    its own process, ``bench.flood``), so the actor's mailbox always holds a backlog.
    ``policy="fifo"`` is the same actor with a plain FIFO mailbox; ``loaded=False`` is the
    same call to an idle actor; ``beside=True`` floods a second actor and calls an idle one,
    which separates what the mailbox decides from what the busy machine costs every call.
    """

    FLOOD_WINDOW = 200
    FLOOD_WORK = 0.0002
    #: Seconds of unrecorded calls once the load runs: the first ~25 ms after the flood's window
    #: fills (and after a spawn, while the fork server forks its replacement) are start-up.
    SETTLE_S = 0.3

    def __init__(self, ctx: BenchContext, policy: str = "priority", loaded: bool = True, beside: bool = False) -> None:
        self.actors = Actors(ctx.kernel)
        self.flood: subprocess.Popen | None = None
        cls = actors.FifoBusy if policy == "fifo" else actors.Busy
        queue = f"{self.FLOOD_WINDOW} priority-0 calls of {self.FLOOD_WORK * 1e3:g} ms queued"
        if beside:
            queue = f"idle actor, while another actor has {queue}"
        self.note = f"call(ping, priority=7), {policy} mailbox, " + (queue if loaded else "idle actor")
        if policy == "fifo":
            self.max_samples = 100  # each waits out the whole backlog; its tail is not the point
        try:
            ref = self.actors.spawn(cls)
            self.high = ref.options(priority=7)
            if beside:
                ref = self.actors.spawn(cls)  # the flood goes there; the measured actor stays idle
            if loaded:
                self.flood = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "llmos_actors.bench.flood",
                        str(ctx.config.runtime_dir),
                        ref.id,
                        str(self.FLOOD_WINDOW),
                        str(self.FLOOD_WORK),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    # A batch producer: it must not outrun the measuring client for a core.
                    preexec_fn=lambda: os.nice(FLOOD_NICE),
                )
                assert self.flood.stdout is not None
                if self.flood.stdout.readline().strip() != "ready":
                    raise LlmosError("the load generator did not start")
            settled = time.monotonic() + self.SETTLE_S
            while time.monotonic() < settled:
                self.high.call("ping")
        except BaseException:
            self.close()
            raise

    def round(self) -> None:
        self.high.call("ping")

    def close(self) -> None:
        if self.flood is not None:
            flood, self.flood = self.flood, None
            for stream in (flood.stdin, flood.stdout):
                if stream is not None:
                    stream.close()
            try:
                flood.wait(10)
            except subprocess.TimeoutExpired:
                flood.kill()
                flood.wait()
        self.actors.close()


#: Restart limits that never give up during a benchmark (a deployment wants far fewer).
BENCH_RESTART = RestartPolicy("permanent", intensity=1_000_000, period=1.0, backoff=0.0, backoff_max=0.0)


class Restarts(Workload):
    """SIGKILL a ``restart="permanent"`` actor; time until a call to it succeeds again."""

    note = "os.kill(pid, SIGKILL) -> first successful call to the restarted actor"

    def __init__(self, ctx: BenchContext) -> None:
        self.actors = Actors(ctx.kernel)
        with self.actors.on_error_close():
            # Killed over and over: the default restart intensity would (rightly) give up.
            self.ref = self.actors.spawn(actors.Echo, restart=BENCH_RESTART)
        self.pid = 0

    def setup(self) -> None:
        self.pid = self.ref.call("pid")

    def round(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        quick = self.ref.options(timeout=1.0)
        deadline = time.monotonic() + 30
        while True:
            try:
                if quick.call("pid") != self.pid:
                    return
            except (ActorDiedError, CallTimeout):
                time.sleep(0.001)  # polling interval: the resolution of this measurement
            if time.monotonic() > deadline:
                raise LlmosError("the actor was not restarted within 30 s")

    def close(self) -> None:
        self.actors.close()


#: The pool cases' unit of work: this much CPU spent in the member (a busy loop).
POOL_WORK_S = 0.002
#: Calls per round of the pool throughput case (all in flight at once).
POOL_ROUND = 200
#: The pool growth case's burst: calls, and the CPU seconds each (5 s of work for one member).
POOL_BURST = 100
POOL_BURST_WORK_S = 0.05


class PoolThroughput(Workload):
    """CPU-bound calls through ``kernel.pool(size=n)``, or to one actor (``single``), all in flight."""

    def __init__(self, ctx: BenchContext, size: int = 2, single: bool = False) -> None:
        self.ops = POOL_ROUND
        work = f"{POOL_ROUND} calls of {POOL_WORK_S * 1e3:g} ms CPU each, all in flight"
        self.pool: Any = None
        self.target: Any = None
        self.actors = Actors(ctx.kernel)
        if single:
            self.note = f"one actor: {work}"
            self.target = self.actors.spawn(actors.Busy)
        else:
            self.note = f"kernel.pool(size={size}), one shared queue: {work}"
            self.pool = self.target = ctx.kernel.pool(actors.Busy, size=size, name=_pool_name(self))

    def round(self) -> None:
        calls = [self.target.ask("burn", POOL_WORK_S) for _ in range(POOL_ROUND)]
        for call in calls:
            call.result(timeout=60)

    def close(self) -> None:
        if self.pool is not None:
            with contextlib.suppress(LlmosError):
                self.pool.stop()
        self.actors.close()


class PoolGrowth(Workload):
    """A burst hits a pool of 1 (max 2): time until the daemon's second member takes work."""

    warmup = False  # every round starts from a fresh pool of one

    def __init__(self, ctx: BenchContext) -> None:
        settings = ctx.status.get("scheduler", {}).get("settings", {})
        self.note = (
            f"kernel.pool(size=1, max=2), {POOL_BURST} calls of {POOL_BURST_WORK_S * 1e3:g} ms at once -> "
            "the dispatcher has 2 members "
            f"(scheduler interval {settings.get('interval', '?')} s, grow_after {settings.get('grow_after', '?')} s)"
        )
        self.kernel = ctx.kernel
        self.pool: Any = None
        self.burst: list = []

    def setup(self) -> None:
        self._finish()  # the previous round's pool, burst and all (untimed)
        self.pool = self.kernel.pool(actors.Busy, size=1, max=2, window=1, name=_pool_name(self))

    def round(self) -> float:
        """Ends when the pool has grown (what pytest-benchmark times too); the burst is cut short in ``setup``."""
        pool = self.pool
        started = time.perf_counter()
        self.burst = burst = [pool.ask("burn", POOL_BURST_WORK_S) for _ in range(POOL_BURST)]
        while len(pool.load()["members"]) < 2:
            if burst[-1].done():
                raise LlmosError(f"the pool served a {POOL_BURST * POOL_BURST_WORK_S:g} s burst without growing")
            time.sleep(0.002)  # polling interval: the resolution of this measurement
        return time.perf_counter() - started

    def _finish(self) -> None:
        pool, self.pool = self.pool, None
        burst, self.burst = self.burst, []
        if pool is not None:
            with contextlib.suppress(LlmosError):
                pool.stop(drain=False)  # what is left of the burst fails with ActorDiedError at once
        for call in burst:
            with contextlib.suppress(Exception):
                call.result(timeout=30)

    def close(self) -> None:
        self._finish()


def _pool_name(workload: Workload) -> str:
    """Unique per workload: a shared daemon (``--runtime-dir``) may hold other pools."""
    return f"bench-{os.getpid()}-{id(workload) & 0xFFFFFF:x}"


#: Acquire+release cycles per contender per round (kernel mutex: two daemon round trips each).
MUTEX_CYCLES = 100


def mutex_pair(ctx: BenchContext) -> Workload:
    """Two processes taking turns on one kernel mutex (``bench.lockpair``)."""
    from .lockpair import LockPair

    cycles = MUTEX_CYCLES // 4 if ctx.quick else MUTEX_CYCLES
    note = "kernel.mutex(name): acquire + release, each a round trip to the daemon (FIFO, freed if its holder dies)"
    return LockPair(str(ctx.config.runtime_dir), cycles, note)
