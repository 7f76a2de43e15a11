"""Calls and tensors between Ray nodes: ours (llmos on Ray) against a Ray actor on the same node.

One simulated Ray cluster (``ray.cluster_utils.Cluster``: a head node and one worker node on
this machine) serves every contestant of these cases; it starts on first use and stops when
the run ends. Ours: ``connect("ray://auto")`` and an ``Echo`` actor spawned on the worker
node, called straight over TCP + CURVE. Ray: an actor pinned to the same node. The floor:
raw pyzmq REQ/REP over TCP with CURVE (``tcp_cases``), one request in flight; for the tensor,
raw pyzmq DEALER/ROUTER over TCP with CURVE passing the same 64 MiB as one zero-copy frame to
another process (the line a CurveZMQ transfer cannot beat: Ray's object transfer is not encrypted).
"""

from __future__ import annotations

import atexit
import importlib.util
import threading
from typing import Any

from ..errors import LlmosError
from . import actors
from .cases import CASES, Case
from .context import BenchContext
from .ours import ASYNC_WINDOW, SYNC_ROUND
from .payload import payload, touch
from .peers import PEERS, Peer
from .workload import Workload

SYNC, ASYNC, TENSOR = "cross_node_calls_sync", "cross_node_calls_async", "cross_node_tensor_64MiB"
TENSOR_BYTES = 64 << 20
#: The raw floor, registered by ``tcp_cases`` (named here, not imported: the two modules load in either order).
CURVE_REQ_REP = "zmq_req_rep_tcp_curve"
#: The raw floor of the tensor case (registered here).
CURVE_TENSOR = "zmq_tensor_64MiB_tcp_curve"


def _needs_ray(_ctx: BenchContext) -> str | None:
    return None if importlib.util.find_spec("ray") else "needs Ray (pip install ray)"


class _SimCluster:
    """The shared simulated cluster: started once, shut down at exit."""

    _lock = threading.Lock()
    _one: _SimCluster | None = None

    def __init__(self) -> None:
        import ray
        from ray.cluster_utils import Cluster

        from .. import cluster

        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        try:
            self.worker = self.cluster.add_node(num_cpus=1)
            ray.init(address=self.cluster.address, namespace="llmos", log_to_driver=False)
            self.cluster.wait_for_nodes()
            cluster.up()
            self.kernel = cluster.connect("ray://auto")
        except BaseException:
            self.close()
            raise

    @classmethod
    def get(cls) -> _SimCluster:
        with cls._lock:
            if cls._one is None:
                cls._one = cls()
                atexit.register(cls._one.close)
            return cls._one

    def close(self) -> None:
        import ray

        from .. import cluster

        try:
            if getattr(self, "kernel", None) is not None:
                self.kernel.close()
            if ray.is_initialized():
                cluster.down()
        finally:
            ray.shutdown()
            self.cluster.shutdown()


class OursCrossNode(Workload):
    """Our actor on the worker node, called from the head node's driver."""

    def __init__(self, ctx: BenchContext, mode: str) -> None:
        self.sim = _SimCluster.get()
        self.mode = mode
        cls = actors.TensorReader if mode == "tensor" else actors.Echo
        self.ref = self.sim.kernel.spawn(cls, node=self.sim.worker.node_id)
        self.ops = {"sync": SYNC_ROUND, "async": ASYNC_WINDOW, "tensor": 1}[mode]
        self.note = {
            "sync": "ref.call(echo) to the other node over TCP+CURVE, one in flight",
            "async": f"{ASYNC_WINDOW} x ref.ask then wait, to the other node over TCP+CURVE",
            "tensor": "ref.call(last, 64 MiB float32 array) to the other node (sent by value)",
        }[mode]
        if mode == "tensor":
            import numpy as np

            self.tensor = np.ones(TENSOR_BYTES // 4, dtype=np.float32)
        self.seq = 0

    def round(self) -> None:
        ref = self.ref
        if self.mode == "tensor":
            if ref.call("last", self.tensor) != 1.0:
                raise LlmosError("wrong tensor")
            return
        if self.mode == "sync":
            for _ in range(SYNC_ROUND):
                self.seq += 1
                if ref.call("echo", payload(self.seq))["seq"] != self.seq:
                    raise LlmosError("reply out of order")
            return
        futs = [ref.ask("echo", payload(i)) for i in range(ASYNC_WINDOW)]
        for fut in futs:
            fut.result(60)

    def close(self) -> None:
        if getattr(self, "ref", None) is not None:
            self.sim.kernel.kill(self.ref, force=True)


class _RayEcho:
    def echo(self, d: dict) -> dict:
        return touch(d)

    def last(self, t: Any) -> float:
        return float(t[-1])


class RayCrossNode(Workload):
    """A Ray actor pinned to the same worker node, called from the same driver."""

    def __init__(self, ctx: BenchContext, mode: str) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.sim = _SimCluster.get()
        self.mode = mode
        strategy = NodeAffinitySchedulingStrategy(node_id=self.sim.worker.node_id, soft=False)
        actor: Any = ray.remote(_RayEcho).options(num_cpus=0, scheduling_strategy=strategy).remote()
        self.actor = actor
        ray.get(actor.echo.remote({"seq": 0}))
        self.ops = {"sync": SYNC_ROUND, "async": ASYNC_WINDOW, "tensor": 1}[mode]
        self.note = "Ray actor on the same node (NodeAffinity, hard)"
        if mode == "tensor":
            import numpy as np

            self.tensor = np.ones(TENSOR_BYTES // 4, dtype=np.float32)

    def round(self) -> None:
        import ray

        a = self.actor
        if self.mode == "tensor":
            if ray.get(a.last.remote(self.tensor)) != 1.0:
                raise LlmosError("wrong tensor")
        elif self.mode == "sync":
            for i in range(SYNC_ROUND):
                ray.get(a.echo.remote(payload(i)))
        else:
            ray.get([a.echo.remote(payload(i)) for i in range(ASYNC_WINDOW)])

    def close(self) -> None:
        import ray

        if getattr(self, "actor", None) is not None:
            ray.kill(self.actor)


def curve_tensor_server(secret: bytes, ready: Any) -> None:
    """ROUTER over TCP with CURVE: reads each array frame in place and answers with its last value."""
    import numpy as np
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    ready.send(sock.bind_to_random_port("tcp://127.0.0.1"))
    try:
        while True:
            ident, data = sock.recv_multipart(copy=False)
            if len(data) < 4:  # the stop message
                return
            sock.send_multipart([ident, np.frombuffer(data.buffer, dtype=np.float32)[-1:].tobytes()])
    finally:
        sock.close(linger=0)
        ctx.term()


class ZmqCurveTensor(Workload):
    """pyzmq DEALER -> ROUTER in another process, TCP + CURVE on loopback, the 64 MiB array as one frame."""

    ops = 1
    note = "DEALER/ROUTER tcp + CURVE, 64 MiB float32 as one zero-copy frame, 4 B reply"

    def __init__(self, ctx: BenchContext) -> None:
        import numpy as np
        import zmq

        from .peer_procs import start_curve_peer, stop_proc

        server_public, server_secret = zmq.curve_keypair()
        client_public, client_secret = zmq.curve_keypair()
        self._stop = stop_proc
        self.proc, self.zctx, self.sock = start_curve_peer(
            curve_tensor_server, (server_secret,), zmq.DEALER, (server_public, client_public, client_secret)
        )
        self.tensor = np.ones(TENSOR_BYTES // 4, dtype=np.float32)

    def round(self) -> None:
        self.sock.send(memoryview(self.tensor).cast("B"), copy=False)
        if self.sock.recv() != self.tensor[-1:].tobytes():
            raise LlmosError("wrong tensor")

    def close(self) -> None:
        if getattr(self, "sock", None) is not None:
            self.sock.send(b"")
            self.sock.close(linger=0)
            self.zctx.term()
        self._stop(self.proc)


PEERS[CURVE_TENSOR] = Peer(CURVE_TENSOR, "pyzmq DEALER/ROUTER tcp+CURVE", lambda ctx, **_: ZmqCurveTensor(ctx))
#: Each case's raw CURVE line (none for pipelined calls).
_FLOORS = {"sync": CURVE_REQ_REP, "tensor": CURVE_TENSOR}

for _mode, _name, _unit, _what in (
    ("sync", SYNC, "calls/s", "one caller, an actor on another Ray node, one call in flight"),
    ("async", ASYNC, "calls/s", f"one caller, an actor on another Ray node, {ASYNC_WINDOW} calls in flight"),
    ("tensor", TENSOR, "tensors/s", "a 64 MiB float32 array passed to an actor on another Ray node"),
):
    _peer = f"ray_actor_other_node_{_mode}"
    PEERS[_peer] = Peer(_peer, "Ray actor on that node", lambda ctx, _m=_mode, **_: RayCrossNode(ctx, _m), _needs_ray)
    CASES[_name] = Case(
        _name,
        _unit,
        _what,
        lambda ctx, _m=_mode: OursCrossNode(ctx, _m),
        peers=(_peer, _FLOORS[_mode]) if _mode in _FLOORS else (_peer,),
        requires=_needs_ray,
        ray="a Ray actor pinned to the same node, called from the same driver",
        quick=False,
    )
