"""``llmos.connect("ray://auto")``: one handle on every node's daemon of an llmos cluster on Ray.

Each node's daemon is reached with the cluster key over TCP + CURVE; a ref is the node
kernel's own ref, so calls go straight from this process to the actor, never through a
daemon or Ray. A thread watches Ray's node table: when a node is lost, every ref to an
actor on it fails with ``ActorDiedError(reason="node lost")``, monitors fire, and actors
spawned here with ``restart="permanent"`` are spawned again on another node that fits.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from .. import _spawnspec
from ..client import Kernel, connect
from ..errors import ActorDiedError, ActorNotFound, DaemonUnavailable, NameTaken
from ..refs import ActorRef
from .control import registry
from .keys import write_client_key
from .placement import choose_node
from .registry import alive_nodes

log = logging.getLogger(__name__)

#: Seconds between looks at Ray's node table for lost nodes.
WATCH_PERIOD = 0.2
NODE_LOST = "node lost"


class ClusterKernel:
    """A kernel over all nodes: the ``Kernel`` API plus ``nodes()`` and ``spawn(..., node=...)``."""

    def __init__(self, address: str = "auto") -> None:
        import ray

        self._registry = registry(address)
        keys = ray.get(self._registry.client_keys.remote())
        self._keydir = Path(tempfile.mkdtemp(prefix="llmos-ck-"))
        self._key_file = write_client_key(keys, self._keydir)
        self._server_key = keys.server_public
        self._kernels: dict[str, Kernel] = {}
        self._lost: set[str] = set()
        self._permanent: dict[str, tuple] = {}  # actor id -> (node id, cls, args, kwargs, options)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._closed = False
        self._watcher = threading.Thread(target=self._watch, name="llmos-cluster-watch", daemon=True)
        self._watcher.start()

    # ------------------------------------------------------------------ nodes
    def nodes(self) -> list[dict]:
        """Every node the cluster knows: ``node_id``, ``state`` (up, starting, lost), ``endpoint``, resources."""
        import ray

        return ray.get(self._registry.node_table.remote())

    def node_kernel(self, node_id: str) -> Kernel:
        """The plain kernel handle on one node's daemon (opened on first use)."""
        with self._lock:
            if node_id in self._lost:
                raise DaemonUnavailable(f"node {node_id} was lost")
            info = {n["node_id"]: n for n in self.nodes()}.get(node_id)
            if info is None or info["state"] != "up":
                raise DaemonUnavailable(f"no llmos daemon up on node {node_id}")
            kernel = self._kernels.get(node_id)
            if kernel is not None and kernel.daemon_info.get("pid") != info["pid"]:
                kernel.close()  # its daemon was restarted: the new one knows nothing of this handle
                kernel = None
            if kernel is None:
                kernel = connect(info["endpoint"], key=str(self._key_file), server_key=self._server_key)
                self._kernels[node_id] = kernel
            return kernel

    def node_of(self, ref: ActorRef) -> str:
        """The node id an actor's ref points at."""
        for node_id, kernel in list(self._kernels.items()):
            if ref._kernel is kernel:
                return node_id
        raise ActorNotFound(f"{ref!r} was not made by this cluster kernel")

    def _up_kernels(self) -> dict[str, Kernel]:
        up = [n["node_id"] for n in self.nodes() if n["state"] == "up" and n["node_id"] not in self._lost]
        return {node_id: self.node_kernel(node_id) for node_id in up}

    # ------------------------------------------------------------------ actors
    def spawn(self, cls: Any, /, *args: Any, **kwargs: Any) -> ActorRef:
        """``Kernel.spawn`` with one more option, ``node``: a node id, ``"auto"`` (default) or a label."""
        node = kwargs.pop("node", "auto")
        options = {k: kwargs.pop(k) for k in _spawnspec.SPAWN_OPTIONS if k in kwargs}
        return self.spawn_with(cls, args, kwargs, node=node, **options)

    def spawn_with(
        self, cls: Any, args: tuple | list = (), kwargs: dict | None = None, *, node: Any = "auto", **options: Any
    ) -> ActorRef:
        name = options.get("name")
        if name and self._find(name) is not None:
            raise NameTaken(f"an actor named {name!r} already runs in this cluster")
        load = (
            {nid: sum(1 for r in k.ps(exited=False)) for nid, k in self._up_kernels().items()}
            if node
            in (
                None,
                "auto",
            )
            else {}
        )
        node_id = choose_node(node, [n for n in self.nodes() if n["node_id"] not in self._lost], load, options)
        ref = self.node_kernel(node_id).spawn_with(cls, args, kwargs, **options)
        ref._kernel._core.actor_connection(ref.address)  # opened now: a node loss fails it even if never called
        if options.get("restart") == "permanent":
            with self._lock:
                self._permanent[ref.id] = (node_id, cls, tuple(args), dict(kwargs or {}), dict(options))
        return ref

    def _find(self, name: str, *, reachable: bool = False) -> ActorRef | None:
        """The actor named ``name`` on any node; with ``reachable``, only once it has its TCP endpoint (ready)."""
        for kernel in self._up_kernels().values():
            try:
                ref = kernel.lookup(name)
            except ActorNotFound:
                continue
            if not reachable or ref.address.endpoint.startswith("tcp://"):
                return ref
        return None

    def lookup(self, name: str) -> ActorRef:
        """The ref of the actor with this name, on whichever node it runs.

        Raises:
            ActorNotFound: no node knows it.
        """
        ref = self._find(name, reachable=True)
        if ref is None:
            raise ActorNotFound(f"no ready actor {name!r} on any llmos node")
        return ref

    def kill(self, ref_or_name: Any, **options: Any) -> dict:
        ref = ref_or_name if isinstance(ref_or_name, ActorRef) else self.lookup(ref_or_name)
        with self._lock:
            self._permanent.pop(ref.id, None)
        return ref._kernel.kill(ref, **options)

    def ps(self, *, exited: bool = True) -> list[dict]:
        """Every node's actors, each row with its ``node``."""
        rows = []
        for node_id, kernel in self._up_kernels().items():
            rows += [dict(row, node=node_id) for row in kernel.ps(exited=exited)]
        return rows

    def status(self) -> dict:
        return {node_id: kernel.status() for node_id, kernel in self._up_kernels().items()}

    def monitor(self, ref: ActorRef, **options: Any) -> Any:
        return ref._kernel.monitor(ref, **options)

    # ------------------------------------------------------------------ node loss
    def _watch(self) -> None:
        while not self._stop.wait(WATCH_PERIOD):
            try:
                alive = alive_nodes()
            except Exception:  # Ray itself going away: nothing to decide this tick
                continue
            for node_id in [n for n in list(self._kernels) if n not in alive and n not in self._lost]:
                self._node_lost(node_id)

    def _node_lost(self, node_id: str) -> None:
        log.warning("llmos: node %s lost", node_id)
        with self._lock:
            self._lost.add(node_id)
            kernel = self._kernels.pop(node_id, None)
            again = [(aid, spec) for aid, spec in self._permanent.items() if spec[0] == node_id]
            for aid, _ in again:
                del self._permanent[aid]
        if kernel is not None:
            core = kernel._core
            done = threading.Event()

            def fail() -> None:  # on the kernel's IO thread, where its connections are driven
                try:
                    for aid, conn in list(core.actors.items()):
                        conn.fail_all(ActorDiedError(f"{conn.peer} died: {NODE_LOST}", reason=NODE_LOST, actor=aid))
                    for mref, handler in list(core.monitor_handlers.items()):
                        core.monitor_handlers.pop(mref, None)
                        target = getattr(getattr(handler, "__self__", None), "target", "")
                        handler({"event": "down", "ref": mref, "actor": target, "reason": NODE_LOST})
                    core.control.fail_all(DaemonUnavailable(f"node {node_id} was lost"))
                finally:
                    done.set()

            core.driver.call_soon(fail)
            done.wait(5)
        for _aid, (_node, cls, args, kwargs, options) in again:
            try:
                self.spawn_with(cls, args, kwargs, node="auto", **options)
            except Exception:
                log.exception("llmos: restarting a permanent actor of lost node %s failed", node_id)

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._watcher.join(2)
        with self._lock:
            kernels, self._kernels = list(self._kernels.values()), {}
        for kernel in kernels:
            kernel.close()
        shutil.rmtree(self._keydir, ignore_errors=True)

    def __enter__(self) -> ClusterKernel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ClusterKernel nodes={len(self._kernels)}{' closed' if self._closed else ''}>"
