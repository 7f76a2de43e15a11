"""The llmos side of every case: workloads that use only the public client API.

Each class acquires its actors and connections in ``__init__`` and releases them
in ``close``; ``round`` is what gets timed. The peers' versions of the same work
are in ``peers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from .. import client
from .._rpc.driver import new_event_loop
from ..errors import LlmosError, RemoteError
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
