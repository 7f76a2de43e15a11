"""``llmos.connect("ray://auto")``: one handle on every node's daemon of an llmos cluster on Ray.

Each node's daemon is reached with the cluster key over TCP + CURVE; a ref is the node
kernel's own ref, so calls go straight from this process to the actor, never through a
daemon or Ray. A thread watches Ray's node table: when a node is lost, every ref to an
actor on it fails with ``ActorDiedError(reason="node lost")`` and monitors fire. Actors
spawned with ``restart="permanent"`` are handed to the registry's supervisor, which spawns
them again on another node that fits (this kernel may be closed by then).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from .. import _spawnspec
from ..client import Kernel
from ..errors import ActorDiedError, ActorNotFound, DaemonUnavailable, NameTaken
from ..refs import ActorRef
from .control import ask, registry
from .nodes import NodeKernels
from .registry import alive_nodes

log = logging.getLogger(__name__)

#: Seconds between looks at Ray's node table for lost nodes.
WATCH_PERIOD = 0.2
NODE_LOST = "node lost"


class ClusterKernel:
    """A kernel over all nodes: the ``Kernel`` API plus ``nodes()`` and ``spawn(..., node=...)``."""

    def __init__(self, address: str = "auto") -> None:

        self._registry = registry(address)
        keys = ask(self._registry, "client_keys")
        self._nodes = NodeKernels(keys, self.nodes, RegistryNames(self._registry))
        self._kernels = self._nodes.kernels
        self._lock = self._nodes.lock
        self._stop = threading.Event()
        self._closed = False
        #: ``fn(node_id)`` called (on the watcher thread) after a node's refs here have failed.
        self.on_node_lost: list[Any] = []
        self._watcher = threading.Thread(target=self._watch, name="llmos-cluster-watch", daemon=True)
        self._watcher.start()

    # ------------------------------------------------------------------ nodes
    def nodes(self) -> list[dict]:
        """Every node the cluster knows: ``node_id``, ``state`` (up, starting, lost), ``endpoint``, resources."""
        return ask(self._registry, "node_table")

    def node_kernel(self, node_id: str) -> Kernel:
        """The plain kernel handle on one node's daemon (opened on first use)."""
        return self._nodes.kernel(node_id)

    def node_of(self, ref: ActorRef) -> str:
        """The node id an actor's ref points at."""
        return self._nodes.node_of(ref)

    def _up_kernels(self) -> dict[str, Kernel]:
        return self._nodes.up()

    # ------------------------------------------------------------------ actors
    def spawn(self, cls: Any, /, *args: Any, **kwargs: Any) -> ActorRef:
        """``Kernel.spawn`` with one more option, ``node``: a node id, ``"auto"`` (default) or a label."""
        node = kwargs.pop("node", "auto")
        options = {k: kwargs.pop(k) for k in _spawnspec.SPAWN_OPTIONS if k in kwargs}
        return self.spawn_with(cls, args, kwargs, node=node, **options)

    def spawn_with(
        self, cls: Any, args: tuple | list = (), kwargs: dict | None = None, *, node: Any = "auto", **options: Any
    ) -> ActorRef:
        """``Kernel.spawn_with`` on the node ``node`` names.

        A ``restart="permanent"`` actor is handed to the registry's supervisor, which spawns it
        again on another node that fits if its node is lost (whether or not this kernel is open).
        """

        node_id, ref = self._nodes.spawn(cls, args, kwargs, node, options)
        if options.get("restart") == "permanent":
            cls_path = _spawnspec.describe_class(cls)[0]
            spec = {
                "node": node_id,
                "cls": cls_path,
                "args": list(args),
                "kwargs": dict(kwargs or {}),
                "options": options,
            }
            ask(self._registry, "supervise", ref.id, spec)
        return ref

    def lookup(self, name: str) -> ActorRef:
        """The ref of the actor with this name, on whichever node it runs.

        Raises:
            ActorNotFound: no node knows it.
        """
        ref = self._nodes.find(name, reachable=True)
        if ref is None:
            raise ActorNotFound(f"no ready actor {name!r} on any llmos node")
        return ref

    def kill(self, ref_or_name: Any, **options: Any) -> dict:
        ref = ref_or_name if isinstance(ref_or_name, ActorRef) else self.lookup(ref_or_name)
        ask(self._registry, "unsupervise", ref.id)
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
            for node_id in [n for n in list(self._kernels) if n not in alive and n not in self._nodes.lost]:
                self._node_lost(node_id)

    def _node_lost(self, node_id: str) -> None:
        log.warning("llmos: node %s lost", node_id)
        kernel = self._nodes.forget(node_id)
        if kernel is not None:
            fail_refs(kernel, f"node {node_id} was lost")
        for hook in self.on_node_lost:
            hook(node_id)

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._watcher.join(2)
        self._nodes.close()

    def __enter__(self) -> ClusterKernel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ClusterKernel nodes={len(self._kernels)}{' closed' if self._closed else ''}>"


class RegistryNames:
    """A driver's name claims, made at the registry (through Ray) so that names are unique per cluster."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def claim(self, name: str, node_id: str) -> str:
        answer = ask(self._registry, "claim_name", name, node_id)
        if "taken" in answer:
            raise NameTaken(answer["taken"])
        return answer["token"]

    def confirm(self, name: str, token: str, actor_id: str) -> None:
        ask(self._registry, "confirm_name", name, token, actor_id)

    def release(self, name: str, token: str) -> None:
        self._registry.release_name.remote(name, token)


def fail_refs(kernel: Kernel, why: str) -> None:
    """Fail every call and monitor of ``kernel``'s actors with ``ActorDiedError(reason="node lost")``."""
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
            core.control.fail_all(DaemonUnavailable(why))
        finally:
            done.set()

    core.driver.call_soon(fail)
    done.wait(5)
