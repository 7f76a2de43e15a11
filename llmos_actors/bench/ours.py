"""The llmos side of every case: workloads that use only the public client API.

Each class acquires its actors and connections in ``__init__`` and releases them
in ``close``; ``round`` is what gets timed. The peers' versions of the same work
are in ``peers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

from .. import client
from .._rpc.driver import new_event_loop
from .._spawnspec import RestartPolicy
from ..errors import ActorDiedError, CallTimeout, LlmosError, RemoteError
from . import actors
from .context import Actors, BenchContext
from .payload import payload
from .workload import Workload

MIB = 1 << 20

#: Synchronous calls per round (a round must be long against the clock's resolution).
SYNC_ROUND = 200
#: Calls submitted before waiting for all of them: Ray's "async" cases use 1000.
ASYNC_WINDOW = 1000
#: One-way messages per round (then one call, which runs after all of them).
TELL_ROUND = 5000
#: Calls each client makes per round in the n:n case (``--quick``: a quarter).
NN_CALLS = 2000
#: Tensor hand-overs per round, by size in MiB (the per-transfer time is the mean).
TENSOR_ROUND = {1: 20, 64: 3, 256: 1}


def nn_calls(ctx: BenchContext) -> int:
    return NN_CALLS // 4 if ctx.quick else NN_CALLS


def tensor_round(ctx: BenchContext, mib: int, *, zero_copy: bool = False) -> int:
    """Hand-overs per round: enough to time small tensors, one for big ones (fewer with ``--quick``).

    ``zero_copy``: a hand-over whose cost does not grow with the size gets as many as the
    smallest size at every size. A lone call after the other contestants' turn pays for
    waking both sides (~1 ms here against ~0.5 ms in a run of calls): timed alone, a
    256 MiB hand-over would measure that, not the size.
    """
    n = TENSOR_ROUND[min(TENSOR_ROUND)] if zero_copy else TENSOR_ROUND.get(mib, 1 if mib > 64 else 3)
    return max(1, n // 4) if ctx.quick else n


def call_round(call: Any, seq: int, n: int) -> int:
    """``n`` blocking ``echo`` calls of the payload; returns the last seq (what every sync call case times)."""
    for _ in range(n):
        seq += 1
        if call("echo", payload(seq))["seq"] != seq:
            raise LlmosError("reply out of order")
    return seq


class _AsyncClient:
    """An asyncio kernel on a private loop, for workloads whose rounds are coroutines."""

    def __init__(self, ctx: BenchContext) -> None:
        self.loop = new_event_loop()
        self.kernel: client.AsyncKernel | None = None
        try:
            self.kernel = self.loop.run_until_complete(self._connect(ctx))
        except BaseException:
            self.loop.close()
            raise

    @staticmethod
    async def _connect(ctx: BenchContext) -> client.AsyncKernel:
        return await client.connect_async(config=ctx.config)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        try:
            if self.kernel is not None:
                self.run(self.kernel.close())
        finally:
            self.loop.close()


class SyncCalls(Workload):
    """``ref.call`` in a loop: one request in flight."""

    ops = SYNC_ROUND
    note = "ref.call(echo, 97 B map), one in flight"

    def __init__(self, ctx: BenchContext) -> None:
        self.actors = Actors(ctx.kernel)
        with self.actors.on_error_close():
            self.ref = self.actors.spawn(actors.Echo)
        self.seq = 0

    def round(self) -> None:
        self.seq = call_round(self.ref.call, self.seq, SYNC_ROUND)

    def close(self) -> None:
        self.actors.close()


class PipelinedCalls(Workload):
    """Rounds of ``ASYNC_WINDOW`` ``ref.ask`` from the blocking client, then every ``result()``:
    the pipelining the synchronous client offers (``futures = [ref.ask(...) for ...]``)."""

    ops = ASYNC_WINDOW
    note = f"blocking client, {ASYNC_WINDOW} x ref.ask then result(), 1 Echo actor"

    def __init__(self, ctx: BenchContext) -> None:
        self.actors = Actors(ctx.kernel)
        with self.actors.on_error_close():
            self.ref = self.actors.spawn(actors.Echo)
        self.d = payload()

    def round(self) -> None:
        ask, d = self.ref.ask, self.d
        for fut in [ask("echo", d) for _ in range(ASYNC_WINDOW)]:
            fut.result()

    def close(self) -> None:
        self.actors.close()


class AsyncCalls(Workload):
    """Rounds of ``ASYNC_WINDOW`` calls submitted at once from the asyncio client, then awaited.

    ``ref.ask`` starts a call and returns its future, as Ray's ``actor.f.remote()``
    returns an object ref; gathering plain futures also spares a Task per call,
    which ``await ref.call(...)`` coroutines would each need under ``gather``.

    Args:
        n_actors: the calls go round-robin to this many actors (1:1 or 1:n).
        cls: ``Echo`` (plain method, one call at a time) or ``AsyncEcho`` (concurrent).
    """

    ops = ASYNC_WINDOW

    def __init__(self, ctx: BenchContext, n_actors: int = 1, cls: type = actors.Echo) -> None:
        self.note = f"asyncio client, {ASYNC_WINDOW} x ref.ask then gather, {n_actors} {cls.__name__} actor(s)"
        self.actors = Actors(ctx.kernel)
        self.client: _AsyncClient | None = None
        try:
            refs = [self.actors.spawn(cls) for _ in range(n_actors)]
            self.client = _AsyncClient(ctx)
            assert self.client.kernel is not None
            self.refs = [self.client.kernel.ref(r.address) for r in refs]
        except BaseException:
            self.close()
            raise
        self.d = payload()

    async def _round(self) -> None:
        refs, d = self.refs, self.d
        n = len(refs)
        await asyncio.gather(*[refs[i % n].ask("echo", d) for i in range(ASYNC_WINDOW)])

    def round(self) -> None:
        assert self.client is not None
        self.client.run(self._round())

    def close(self) -> None:
        try:
            if self.client is not None:
                self.client.close()
        finally:
            self.actors.close()


class NNCalls(Workload):
    """``n`` client actors each drive calls to ``n`` echo actors (Ray's n:n shape)."""

    def __init__(self, ctx: BenchContext, n: int = 2) -> None:
        self.note = f"{n} Caller actors x {n} Echo actors, {ASYNC_WINDOW} in flight per caller"
        self.calls = nn_calls(ctx)
        self.ops = n * self.calls
        self.actors = Actors(ctx.kernel)
        with self.actors.on_error_close():
            self.servers = [self.actors.spawn(actors.Echo) for _ in range(n)]
            self.callers = [self.actors.spawn(actors.Caller) for _ in range(n)]
        self.d = payload()

    def round(self) -> None:
        futs = [c.ask("drive", self.servers, self.calls, ASYNC_WINDOW, self.d) for c in self.callers]
        for fut in futs:
            fut.result(timeout=120)

    def close(self) -> None:
        self.actors.close()


class Tells(Workload):
    """``ref.tell`` bursts, then one ``call`` that runs after all of them (per-sender FIFO)."""

    ops = TELL_ROUND
    note = f"{TELL_ROUND} x ref.tell(hit, 97 B map) + 1 call; the actor decodes each"

    def __init__(self, ctx: BenchContext) -> None:
        self.actors = Actors(ctx.kernel)
        with self.actors.on_error_close():
            self.ref = self.actors.spawn(actors.Echo)
        self.d = payload()
        self.expected = 0

    def round(self) -> None:
        tell, d = self.ref.tell, self.d
        for _ in range(TELL_ROUND):
            tell("hit", d)
        self.expected += TELL_ROUND
        seen = self.ref.call("seen_count")
        if seen != self.expected:
            raise LlmosError(f"actor saw {seen} tells, {self.expected} were sent")

    def close(self) -> None:
        self.actors.close()


class Spawns(Workload):
    """``kernel.spawn`` until the actor's first reply; every actor stays up until ``close``."""

    def __init__(self, ctx: BenchContext) -> None:
        preloaded = (ctx.status.get("fork_server") or {}).get("preloaded") or []
        self.note = f"spawn(Echo) -> first call returns; fork server preloaded: {', '.join(preloaded) or 'nothing'}"
        self.actors = Actors(ctx.kernel)

    def round(self) -> None:
        ref = self.actors.spawn(actors.Echo)
        ref.call("ping")

    def close(self) -> None:
        self.actors.close()


class TensorCopied(Workload):
    """A float32 tensor as a call argument (out-of-band frame); the actor reads its last element."""

    def __init__(self, ctx: BenchContext, mib: int) -> None:
        import torch

        self.ops = self.per_round = tensor_round(ctx, mib)
        self.note = "ref.call(last, tensor): the bytes travel in a zmq frame"
        self.t = torch.ones(mib * MIB // 4, dtype=torch.float32)
        self.actors = Actors(ctx.kernel)
        with self.actors.on_error_close():
            self.ref = self.actors.spawn(actors.TensorReader)

    def round(self) -> None:
        t, call = self.t, self.ref.call
        for i in range(self.per_round):
            t[-1] = i
            if call("last", t) != i:
                raise LlmosError("the actor read a stale tensor")

    def close(self) -> None:
        self.actors.close()


class TensorPool(TensorCopied):
    """As ``TensorCopied``, with the tensor allocated in the daemon's shared-memory pages."""

    def __init__(self, ctx: BenchContext, mib: int) -> None:
        import torch

        import llmos_actors

        super().__init__(ctx, mib)
        self.ops = self.per_round = tensor_round(ctx, mib, zero_copy=True)
        self.note = "ref.call(last, pool tensor): a page handle travels, not the bytes"
        self.t = llmos_actors.zeros(mib * MIB // 4, dtype=torch.float32)


class PubSubFanout(Workload):
    """``kernel.publish`` to ``n`` subscriber actors; rate per subscriber (all must receive all)."""

    def __init__(self, ctx: BenchContext, n: int = 4, per_round: int = 5000) -> None:
        self.ops = self.per_round = per_round
        self.note = f"kernel.publish(97 B map) -> {n} Subscriber actors; rate each receives"
        self.kernel = ctx.kernel
        self.topic = f"bench-{os.getpid()}-{id(self)}"
        self.actors = Actors(ctx.kernel)
        with self.actors.on_error_close():
            self.subs = [self.actors.spawn(actors.Subscriber) for _ in range(n)]
            for s in self.subs:
                s.call("listen", self.topic)
        self.d = payload()
        self.expected = 0

    def round(self) -> None:
        publish = self.kernel.publish
        for _ in range(self.per_round):
            publish(self.topic, self.d)
        self.expected += self.per_round
        # Asked all at once, as the raw peer's subscribers all report at its END marker.
        waits = [s.ask("wait_count", self.expected, 60.0) for s in self.subs]
        for wait in waits:
            try:
                wait.result(timeout=70)
            except RemoteError as exc:
                raise LlmosError("subscribers did not receive every message within 60 s") from exc

    def close(self) -> None:
        self.actors.close()


class PutGigabytes(Workload):
    """``kernel.put`` of an 800 MB int64 array, as Ray's "single client put gigabytes"."""

    note = "kernel.put(np.zeros(100 Mi, int64)) = 0.8 GB per put, then kernel.free (Ray frees on refcount)"

    def __init__(self, ctx: BenchContext) -> None:
        import numpy as np

        self.kernel = ctx.kernel
        self.arr = np.zeros(100 * MIB, dtype=np.int64)
        self.ops = self.arr.nbytes / 1e9  # GB per round: the rate is GB/s

    def round(self) -> None:
        # Objects live until freed (or their owner exits): without the free, rounds would
        # fill the pool and measure spilling to disk instead.
        self.kernel.free(self.kernel.put(self.arr))


class GetCalls(Workload):
    """``kernel.get`` of a small stored object, as Ray's "single client get calls".

    ``owner=False``: the object was put by an actor, so every ``get`` asks the daemon's
    store and reads the pool (the path any process but the owner takes).
    """

    ops = 1000

    def __init__(self, ctx: BenchContext, owner: bool = True) -> None:
        self.kernel = ctx.kernel
        self.actors = Actors(ctx.kernel)
        with self.actors.on_error_close():
            if owner:
                self.note = "kernel.get(ref to a stored 0) by the process that put it (its own copy, as Ray's owner)"
                self.ref = ctx.kernel.put(0)
            else:
                self.ops = 200
                self.note = "kernel.get(ref to a 0 an actor stored): a round trip to the daemon's store"
                self.ref = self.actors.spawn(actors.Echo).call("store", 0)

    def round(self) -> None:
        get, ref = self.kernel.get, self.ref
        for _ in range(self.ops):
            get(ref)

    def close(self) -> None:
        with contextlib.suppress(LlmosError):
            self.kernel.free(self.ref)
        self.actors.close()


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
