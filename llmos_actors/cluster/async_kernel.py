"""``llmos.connect_async("ray://auto")``: the asyncio flavour of the cluster kernel.

Placement, the node table and the registry stay with a ``ClusterKernel`` (their Ray calls
run in a worker thread, never on the loop); calls go through an ``AsyncKernel`` per node,
so refs are ``AsyncActorRef``s whose calls go straight to the actor from this loop. A lost
node fails their calls with ``ActorDiedError(reason="node lost")`` as in the sync flavour.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..client import AsyncKernel, connect_async
from ..errors import ActorNotFound, ClosedError
from .control import ask
from .kernel import ClusterKernel, fail_refs


class AsyncClusterKernel:
    """``await connect_async("ray://auto")`` or ``async with connect_async("ray://auto") as k``."""

    def __init__(self, address: str = "auto") -> None:
        self._address = address
        self._sync: ClusterKernel | None = None
        self._kernels: dict[str, AsyncKernel] = {}  # node id -> async kernel (its daemon's pid in _pids)
        self._pids: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _connect(self) -> AsyncClusterKernel:
        if self._sync is None:
            self._loop = asyncio.get_running_loop()
            self._sync = await asyncio.to_thread(ClusterKernel, self._address)
            self._sync.on_node_lost.append(self._node_lost)
        return self

    def __await__(self):
        return self._connect().__await__()

    async def __aenter__(self) -> AsyncClusterKernel:
        return await self._connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def sync(self) -> ClusterKernel:
        if self._sync is None:
            raise ClosedError("this async cluster kernel is not connected: await it or use `async with`")
        return self._sync

    # ------------------------------------------------------------------ nodes
    async def nodes(self) -> list[dict]:
        return await asyncio.to_thread(self.sync.nodes)

    async def node_kernel(self, node_id: str) -> AsyncKernel:
        """The asyncio kernel on one node's daemon (opened on first use; reopened after its daemon restarts)."""
        sync = self.sync
        plain = await asyncio.to_thread(sync.node_kernel, node_id)  # checks the node is up, and its daemon's pid
        pid = plain.daemon_info.get("pid")
        kernel = self._kernels.get(node_id)
        if kernel is not None and self._pids.get(node_id) != pid:
            await kernel.close()
            kernel = None
        if kernel is None:
            nodes = sync._nodes
            kernel = await connect_async(plain.config.connect, key=str(nodes._key_file), server_key=nodes._server_key)
            self._kernels[node_id], self._pids[node_id] = kernel, pid
        return kernel

    def node_of(self, ref: Any) -> str:
        for node_id, kernel in self._kernels.items():
            if ref._kernel is kernel:
                return node_id
        raise ActorNotFound(f"{ref!r} was not made by this cluster kernel")

    async def _rebind(self, ref: Any) -> Any:
        """The async ref, bound to this loop's kernel of the node, of a ref the sync kernel made."""
        kernel = await self.node_kernel(self.sync.node_of(ref))
        aref = kernel.ref(ref.address)
        kernel._core.actor_connection(ref.address)  # opened now: a node loss fails it even if never called
        return aref

    # ------------------------------------------------------------------ actors
    async def spawn(self, cls: Any, /, *args: Any, **kwargs: Any) -> Any:
        """``ClusterKernel.spawn`` (with ``node=``), returning an ``AsyncActorRef``."""
        return await self._rebind(await asyncio.to_thread(self.sync.spawn, cls, *args, **kwargs))

    async def spawn_with(self, cls: Any, args: Any = (), kwargs: dict | None = None, **options: Any) -> Any:
        return await self._rebind(await asyncio.to_thread(self.sync.spawn_with, cls, args, kwargs, **options))

    async def lookup(self, name: str) -> Any:
        return await self._rebind(await asyncio.to_thread(self.sync.lookup, name))

    async def kill(self, ref_or_name: Any, **options: Any) -> dict:
        if not isinstance(ref_or_name, str):
            await asyncio.to_thread(ask, self.sync._registry, "unsupervise", ref_or_name.id)
            return await ref_or_name._kernel.kill(ref_or_name, **options)
        return await asyncio.to_thread(self.sync.kill, ref_or_name, **options)

    async def ps(self, *, exited: bool = True) -> list[dict]:
        return await asyncio.to_thread(self.sync.ps, exited=exited)

    async def status(self) -> dict:
        return await asyncio.to_thread(self.sync.status)

    # ------------------------------------------------------------------ node loss, closing
    def _node_lost(self, node_id: str) -> None:  # on the sync kernel's watcher thread
        kernel = self._kernels.pop(node_id, None)
        if kernel is not None:
            fail_refs(kernel, f"node {node_id} was lost")

    async def close(self) -> None:
        kernels, self._kernels = list(self._kernels.values()), {}
        for kernel in kernels:
            await kernel.close()
        if self._sync is not None:
            sync, self._sync = self._sync, None
            await asyncio.to_thread(sync.close)

    def __repr__(self) -> str:
        return f"<AsyncClusterKernel nodes={len(self._kernels)}{'' if self._sync else ' closed'}>"
