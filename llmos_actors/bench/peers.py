"""The peers: the same work as each case, done with what a user would pick instead.

raw pyzmq (always there: it is our own dependency; ``peer_zmq``), multiprocessing,
torch.multiprocessing and shared memory (if torch is installed; ``peer_local``) and Ray
(if it is installed, here or for ``--ray-python``; ``ray_session``). Each peer is a
``Workload`` like ours; this module is their registry.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import metrics_cases
from .context import BenchContext
from .ours import ASYNC_WINDOW, nn_calls, tensor_round
from .peer_local import ForkStart, Memcpy, MpPipe, ShmNewSegment, ShmSegment, TorchQueue
from .peer_zmq import ZmqDealerRouter, ZmqPubSub, ZmqPushPull, ZmqReqRep, ZmqTensor
from .workload import Workload

# ---------------------------------------------------------------------------- Ray


def _ray(kind: str, **fixed: Any) -> Callable[..., Workload]:
    """A peer opener for a Ray workload ``kind`` (see ``ray_driver``)."""

    def open_ray(ctx: BenchContext, **params: Any) -> Workload:
        assert ctx.ray is not None
        return ctx.ray.open(kind, **{**fixed, **params})

    return open_ray


def _ray_tensor(ctx: BenchContext, mib: int) -> Workload:
    assert ctx.ray is not None
    return ctx.ray.open("tensor_arg", mib=mib, per_round=tensor_round(ctx, mib))


# ---------------------------------------------------------------------------- registry


def _needs_torch(ctx: BenchContext) -> str | None:
    return None if importlib.util.find_spec("torch") else "torch is not installed (pip install llmos-actors[torch])"


def _needs_ray(ctx: BenchContext) -> str | None:
    if ctx.ray is None:
        return "Ray peers are off"
    reason = ctx.ray.unavailable()
    return f"{reason}; pip install 'llmos-actors[peers]' or pass --ray-python" if reason else None


def _always(ctx: BenchContext) -> str | None:
    return None


@dataclass(frozen=True)
class Peer:
    """Another way to do a case's work.

    Attributes:
        id: registry key (cases list peers by id).
        label: what the table calls it.
        open: ``open(ctx, **case_params) -> Workload``.
        requires: ``requires(ctx) -> reason or None``: why it cannot run here.
        group: "ray" for peers that run in the Ray driver (they run after all others,
            so Ray's background processes never disturb the rest).
    """

    id: str
    label: str
    open: Callable[..., Workload]
    requires: Callable[[BenchContext], str | None] = _always
    group: str = ""


def _llmos_priority(ctx: BenchContext, policy: str, loaded: bool, beside: bool = False) -> Workload:
    """Our own actor as the comparison: with a FIFO mailbox, without load, or idle beside the load."""
    from .ours_services import PriorityUnderLoad

    return PriorityUnderLoad(ctx, policy, loaded, beside)


def _llmos_single_actor(ctx: BenchContext) -> Workload:
    """The pool case's work sent to one actor: what the pool is for."""
    from .ours_services import PoolThroughput

    return PoolThroughput(ctx, single=True)


def _llmos_get_not_owner(ctx: BenchContext) -> Workload:
    """The get case from a process that did not put the object: the daemon's store is asked."""
    from .ours import GetCalls

    return GetCalls(ctx, owner=False)


#: Acquire+release cycles per contender per round for ``multiprocessing.Lock`` (a futex: ~µs each).
MP_LOCK_CYCLES = 20_000


def _mp_lock_pair(ctx: BenchContext) -> Workload:
    from .lockpair import LockPair

    cycles = MP_LOCK_CYCLES // 4 if ctx.quick else MP_LOCK_CYCLES
    note = "multiprocessing.Lock: a semaphore in shared memory, no daemon (not freed if its holder dies)"
    return LockPair(None, cycles, note)


PEERS: dict[str, Peer] = {
    p.id: p
    for p in (
        Peer("zmq_req_rep", "pyzmq REQ/REP", lambda ctx, **_: ZmqReqRep(ctx)),
        Peer("mp_pipe", "multiprocessing.Pipe", lambda ctx, **_: MpPipe(ctx)),
        Peer("zmq_dealer_router", "pyzmq DEALER/ROUTER", lambda ctx, **kw: ZmqDealerRouter(ctx, kw.get("n", 1))),
        Peer("zmq_push_pull", "pyzmq PUSH/PULL", lambda ctx, **_: ZmqPushPull(ctx)),
        Peer("zmq_pub_sub", "pyzmq PUB/SUB", lambda ctx, **kw: ZmqPubSub(ctx, kw.get("n", 4))),
        Peer(
            "zmq_pub_sub_msgpack",
            "pyzmq PUB/SUB + unpack",
            lambda ctx, **kw: ZmqPubSub(ctx, kw.get("n", 4), decode=True),
        ),
        Peer(
            "fork_torch_parent",
            "os.fork, torch in parent",
            lambda ctx, **_: ForkStart(ctx, preload_torch=True),
            _needs_torch,
        ),
        Peer(
            "mp_fork_torch_child",
            "mp fork, child imports torch",
            lambda ctx, **_: ForkStart(ctx, preload_torch=False),
            _needs_torch,
        ),
        Peer("zmq_tensor", "pyzmq copy=False", lambda ctx, mib, **_: ZmqTensor(ctx, mib), _needs_torch),
        Peer("llmos_fifo_under_load", "llmos, FIFO mailbox", lambda ctx, **_: _llmos_priority(ctx, "fifo", True)),
        Peer("llmos_unloaded", "llmos, idle actor", lambda ctx, **_: _llmos_priority(ctx, "priority", False)),
        Peer(
            "llmos_idle_beside_load",
            "llmos, idle actor beside the flood",
            lambda ctx, **_: _llmos_priority(ctx, "priority", True, beside=True),
        ),
        Peer("llmos_single_actor", "llmos, one actor", lambda ctx, **_: _llmos_single_actor(ctx)),
        Peer("llmos_get_not_owner", "llmos, not the owner", lambda ctx, **_: _llmos_get_not_owner(ctx)),
        Peer("mp_lock", "multiprocessing.Lock", lambda ctx, **_: _mp_lock_pair(ctx)),
        Peer(
            "torch_mp_queue",
            "torch.mp.Queue (fresh)",
            lambda ctx, mib, **_: TorchQueue(ctx, mib, shared=False),
            _needs_torch,
        ),
        Peer(
            "torch_mp_queue_shared",
            "torch.mp.Queue (in shm)",
            lambda ctx, mib, **_: TorchQueue(ctx, mib, shared=True),
            _needs_torch,
        ),
        Peer("shm_segment", "mapped /dev/shm file", lambda ctx, mib, **_: ShmSegment(ctx, mib), _needs_torch),
        Peer("shm_new_segment", "new shm segment each", lambda ctx, mib, **_: ShmNewSegment(ctx, mib), _needs_torch),
        Peer("memcpy", "memcpy (one copy_)", lambda ctx, mib, **_: Memcpy(ctx, mib), _needs_torch),
        Peer("ray_sync", "Ray", _ray("calls_sync", per_round=100), _needs_ray, "ray"),
        Peer("ray_async", "Ray", _ray("calls_async", window=ASYNC_WINDOW), _needs_ray, "ray"),
        Peer(
            "ray_concurrent",
            "Ray (max_concurrency=16)",
            _ray("calls_async", window=ASYNC_WINDOW, max_concurrency=16),
            _needs_ray,
            "ray",
        ),
        Peer(
            "ray_1n",
            "Ray",
            lambda ctx, n=2, **_: _ray("calls_async", window=ASYNC_WINDOW, n_actors=n)(ctx),
            _needs_ray,
            "ray",
        ),
        Peer(
            "ray_nn",
            "Ray",
            lambda ctx, n=2, **_: _ray("nn_calls", n=n, calls=nn_calls(ctx), window=ASYNC_WINDOW)(ctx),
            _needs_ray,
            "ray",
        ),
        Peer("ray_spawn", "Ray", _ray("spawn"), _needs_ray, "ray"),
        Peer("ray_tensor", "Ray (actor arg)", lambda ctx, mib, **_: _ray_tensor(ctx, mib), _needs_ray, "ray"),
        Peer("ray_put_gigabytes", "Ray", _ray("put_gigabytes"), _needs_ray, "ray"),
        Peer("ray_get_calls", "Ray", _ray("get_calls", per_round=1000), _needs_ray, "ray"),
    )
}
# Our own daemon with metrics / tracing on, beside the same with them off (see metrics_cases).
PEERS.update({fields[0]: Peer(*fields) for fields in metrics_cases.peers()})
