"""The registry of benchmark cases: what each measures, in which unit, against which peers.

Where Ray's ``ray microbenchmark`` has a case, ours has the same name (spaces and
colons made underscores: "1:1 actor calls sync" is ``1_1_actor_calls_sync``) and
the same shape, so a number here reads against Ray's; ``ray`` says what Ray's
means and where ours differs. The other cases are ours.

Adding a case is one entry in ``CASES`` below: a ``Case`` with its name, unit,
one line on what it measures and the function that opens its workload (a
``workload.Workload``: ``round()`` is what gets timed; write it in ``ours*.py``
or a module of its own). Peers, ``requires`` and the other fields are optional;
``llmos bench``, ``--list``, ``--json``, the report and the pytest-benchmark
suite in ``benchmarks/`` all take it from there. A case that needs something
this machine or daemon may lack (torch, CUDA, Ray, a page pool) says so in
``requires(ctx)``: it is then listed with the reason instead of a number.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import actors, metrics_cases, ours, ours_services
from .context import BenchContext
from .workload import Workload

#: Actors (and clients) in the 1:n and n:n cases: Ray's suite uses cpu_count // 2, at least 2 here.
N_ACTORS = max(2, (os.cpu_count() or 2) // 2)


def _always(ctx: BenchContext) -> str | None:
    return None


def _needs_page_pool(ctx: BenchContext) -> str | None:
    if (ctx.status.get("pages") or {}).get("enabled") is False:
        return "this daemon runs without a page pool ([pages] enabled = false)"
    return _needs_torch(ctx)


def _needs_torch(ctx: BenchContext) -> str | None:
    return None if importlib.util.find_spec("torch") else "torch is not installed (pip install llmos-actors[torch])"


def _tensor_fits(mib: int) -> Callable[[BenchContext], str | None]:
    def check(ctx: BenchContext) -> str | None:
        limit = ctx.config.max_message_bytes
        if mib * ours.MIB + (1 << 20) > limit:
            return f"a {mib} MiB message exceeds this daemon's max_message_bytes ({limit} B)"
        return _needs_torch(ctx)

    return check


@dataclass(frozen=True)
class Case:
    """One benchmark case.

    Attributes:
        name: as Ray names it where Ray has it.
        unit: of the value printed.
        what: what it measures, in one line.
        open: ``open(ctx, **params) -> Workload``: our side.
        kind: "rate" (operations per second over windows; higher is better) or
            "latency" (seconds per operation, shown in ``unit``; lower is better).
        stat: the value printed: "median" of the samples, or "p50" / "p99" for latencies.
        samples: for latencies, the ``Timing`` field that sets how many: "samples", "rounds" or "calls".
        params: passed to ``open`` and to every peer's opener.
        peers: ids in ``peers.PEERS``.
        requires: ``requires(ctx) -> reason or None``: why it cannot run against this daemon.
        ray: what Ray's case of this name measures, and how ours differs.
        measure: cases with the same key share one measurement (p50 and p99 of one series).
        quick: False leaves it out of ``--quick`` runs unless named.
        interleave: contestants take turns (fair under drifting machine load); False measures
            them one after the other, for contestants that load the machine while open, in
            ``Timing.blocks`` alternating blocks.
    """

    name: str
    unit: str
    what: str
    open: Callable[..., Workload]
    kind: str = "rate"
    stat: str = "median"
    samples: str = "samples"
    params: dict = field(default_factory=dict)
    peers: tuple[str, ...] = ()
    requires: Callable[[BenchContext], str | None] = _always
    ray: str = ""
    measure: str = ""
    quick: bool = True
    interleave: bool = True

    @property
    def higher_is_better(self) -> bool:
        return self.kind == "rate"

    @property
    def measure_key(self) -> str:
        return self.measure or self.name

    @property
    def scale(self) -> float:
        """Factor from the samples' unit (ops/s, or seconds) to ``unit``."""
        return {"ms": 1e3, "us": 1e6}.get(self.unit, 1.0)


def _p50_and_p99(
    name50: str, name99: str, what50: str, what99: str, open_: Callable[..., Workload], **common: Any
) -> tuple[Case, Case]:
    """Two cases, the median and the 99th percentile of one series (measured once: ``measure``)."""
    return (
        Case(name50, "ms", what50, open_, kind="latency", stat="p50", **common),
        Case(name99, "ms", what99, open_, kind="latency", stat="p99", **common),
    )


def _tensor_cases() -> list[Case]:
    cases = []
    for mib in (1, 64, 256):
        cases.append(
            Case(
                f"tensor_pass_{mib}MiB_copied",
                "ms",
                f"a {mib} MiB float32 tensor as a call argument, receiver reads its last element: time per hand-over",
                lambda ctx, mib: ours.TensorCopied(ctx, mib),
                kind="latency",
                samples="rounds",
                params={"mib": mib},
                peers=("memcpy", "zmq_tensor", "torch_mp_queue", "shm_new_segment", "ray_tensor"),
                requires=_tensor_fits(mib),
                quick=mib < 256,
            )
        )
        cases.append(
            Case(
                f"tensor_pass_{mib}MiB_pool",
                "ms",
                f"a {mib} MiB float32 tensor allocated in shared-memory pages: time per hand-over (no copy)",
                lambda ctx, mib: ours.TensorPool(ctx, mib),
                kind="latency",
                samples="rounds",
                params={"mib": mib},
                peers=("torch_mp_queue_shared", "shm_segment"),
                requires=_needs_page_pool,
                quick=mib < 256,
            )
        )
    return cases


CASES: dict[str, Case] = {
    c.name: c
    for c in (
        Case(
            "1_1_actor_calls_sync",
            "calls/s",
            "one caller, one actor, one call in flight (ref.call)",
            lambda ctx: ours.SyncCalls(ctx),
            peers=("zmq_req_rep", "mp_pipe", "ray_sync"),
            ray="1:1 actor calls sync: ray.get(actor.f.remote()) in a loop (Ray's suite sends no argument)",
        ),
        Case(
            "1_1_actor_calls_async",
            "calls/s",
            f"one caller submits {ours.ASYNC_WINDOW} calls to one actor, then waits for all (asyncio client)",
            lambda ctx: ours.AsyncCalls(ctx),
            peers=("zmq_dealer_router", "ray_async"),
            ray="1:1 actor calls async: ray.get([actor.f.remote() for _ in range(1000)])",
        ),
        Case(
            "1_1_actor_calls_pipelined",
            "calls/s",
            f"one caller starts {ours.ASYNC_WINDOW} calls to one actor with ref.ask, then waits for all "
            "(blocking client)",
            lambda ctx: ours.PipelinedCalls(ctx),
            peers=("zmq_dealer_router",),
        ),
        Case(
            "1_1_actor_calls_concurrent",
            "calls/s",
            "as 1_1_actor_calls_async, to an actor whose method is async def (calls run concurrently)",
            lambda ctx: ours.AsyncCalls(ctx, cls=actors.AsyncEcho),
            peers=("ray_concurrent",),
            ray="1:1 actor calls concurrent: as async, to an actor with max_concurrency=16 (a thread pool)",
        ),
        Case(
            "1_n_actor_calls_async",
            "calls/s",
            f"one caller, {ours.ASYNC_WINDOW} calls at a time spread round-robin over {N_ACTORS} actors",
            lambda ctx, n: ours.AsyncCalls(ctx, n_actors=n),
            params={"n": N_ACTORS},
            peers=("zmq_dealer_router", "ray_1n"),
            ray="1:n actor calls async: a client actor calls cpu_count // 2 actors in batches (here: the "
            "benchmark process is the client)",
        ),
        Case(
            "n_n_actor_calls_async",
            "calls/s",
            f"{N_ACTORS} client actors each drive {ours.ASYNC_WINDOW} calls at a time to {N_ACTORS} actors",
            lambda ctx, n: ours.NNCalls(ctx, n),
            params={"n": N_ACTORS},
            peers=("ray_nn",),
            ray="n:n actor calls async: 4 tasks each make 5000 calls round-robin to cpu_count // 2 actors",
        ),
        Case(
            "single_client_put_gigabytes",
            "GB/s",
            "one client stores an 800 MB array in the object store",
            lambda ctx: ours.PutGigabytes(ctx),
            peers=("ray_put_gigabytes",),
            ray="single client put gigabytes: ray.put(np.zeros(100 Mi, int64)) in a loop",
        ),
        Case(
            "single_client_get_calls",
            "calls/s",
            "one client fetches a small stored object",
            lambda ctx: ours.GetCalls(ctx),
            peers=("llmos_get_not_owner", "ray_get_calls"),
            ray="single client get calls (Plasma Store): ref = ray.put(0), then ray.get(ref) in a loop",
        ),
        Case(
            "tell_throughput",
            "msgs/s",
            f"one-way ref.tell of the 97 B map, {ours.TELL_ROUND} then one call; the actor decodes each",
            lambda ctx: ours.Tells(ctx),
            peers=("zmq_push_pull",),
        ),
        Case(
            "pubsub_fanout_4",
            "msgs/s",
            "kernel.publish to 4 subscriber actors: messages per second each subscriber receives",
            lambda ctx, n: ours.PubSubFanout(ctx, n),
            params={"n": 4},
            peers=("zmq_pub_sub", "zmq_pub_sub_msgpack"),
        ),
        *_tensor_cases(),
        *_p50_and_p99(
            "spawn_latency_p50",
            "spawn_latency_p99",
            "kernel.spawn until the new actor's first reply, median over a series (actors kept up)",
            "the same series: its 99th percentile",
            lambda ctx: ours.Spawns(ctx),
            peers=("fork_torch_parent", "mp_fork_torch_child", "ray_spawn"),
            measure="spawn_latency",
        ),
        *_p50_and_p99(
            "priority_latency_p50_under_load",
            "priority_latency_p99_under_load",
            "a priority-7 call while another process floods the actor with priority-0 calls: median",
            "the same series: its 99th percentile (target: within 2x of the idle actor's p99)",
            lambda ctx: ours_services.PriorityUnderLoad(ctx),
            samples="calls",
            peers=("llmos_fifo_under_load", "llmos_unloaded", "llmos_idle_beside_load"),
            interleave=False,  # each loaded contestant runs its own flood process
            measure="priority_latency",
        ),
        Case(
            "pool_throughput_2",
            "calls/s",
            f"CPU-bound calls ({ours_services.POOL_WORK_S * 1e3:g} ms each) through kernel.pool(size=2), all in flight",
            lambda ctx: ours_services.PoolThroughput(ctx, 2),
            peers=("llmos_single_actor",),
        ),
        Case(
            "pool_grow_ms",
            "ms",
            "a burst of calls hits a pool of 1 (max 2): time until its second member is serving",
            lambda ctx: ours_services.PoolGrowth(ctx),
            kind="latency",
            stat="p50",
            samples="rounds",
        ),
        Case(
            "mutex_cycles_2proc",
            "cycles/s",
            "two processes take turns on one kernel mutex: acquire+release cycles per second, both together",
            lambda ctx: ours_services.mutex_pair(ctx),
            peers=("mp_lock",),
        ),
        Case(
            "restart_latency_p50",
            "ms",
            "SIGKILL a restart=permanent actor until a call to it succeeds again: median",
            lambda ctx: ours_services.Restarts(ctx),
            kind="latency",
            stat="p50",
        ),
    )
}
# What metrics and tracing cost: the 1:1 call cases against daemons with them off and on (own daemons).
CASES.update({fields["name"]: Case(**fields) for fields in metrics_cases.cases()})

# Durable state (recovery, the journal's cost): their own module, registered here.
from .state_cases import state_cases  # noqa: E402  (it needs Case, defined above)

CASES.update((c.name, c) for c in state_cases(Case))


class UnknownCase(ValueError):
    """A case name (or pattern) that matches nothing in the registry."""


def select(patterns: Iterable[str]) -> list[Case]:
    """The cases named by ``patterns`` (exact names or shell patterns), in registry order.

    No pattern: every case.

    Raises:
        UnknownCase: a pattern matched no case (the message lists the known names).
    """
    patterns = list(patterns)
    if not patterns:
        return list(CASES.values())
    chosen: set[str] = set()
    for pattern in patterns:
        hits = fnmatch.filter(CASES, pattern)
        if not hits:
            raise UnknownCase(f"no benchmark case {pattern!r}; known cases: {', '.join(CASES)}")
        chosen.update(hits)
    return [c for name, c in CASES.items() if name in chosen]
