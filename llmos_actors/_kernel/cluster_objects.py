"""Stored objects across the nodes of a cluster: a ``get`` of another node's object fetches it once.

    getter --object_import(id, home)--> its daemon --object_export(id)--> home daemon
                                        (copies it into this node's pages, once) -> local id

A ref carries its ``home`` (the storing daemon's TCP address). When a process asks its
daemon for an object of another pool, the daemon fetches it from ``home`` over TCP + CURVE
(the cluster's node key), stores the copy in its own pages and remembers it: later gets on
this node, from any process, read the copy. Only the cluster's peers are fetched from (a
client cannot point the daemon anywhere else). Copies stay until ``MAX_COPIES`` newer ones
push them out or the daemon stops; the original's ``free`` does not reach them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from typing import Any

from ..errors import LimitExceeded, ObjectLost, PagesExhausted, ProtocolError
from .service import Service

log = logging.getLogger(__name__)

#: Copies of other nodes' objects kept per daemon (the oldest is dropped beyond it).
MAX_COPIES = 1024
#: Seconds one fetch from a peer may take.
FETCH_TIMEOUT = 120.0


class ClusterObjects(Service):
    """``object_export`` (to peers) and ``object_import`` (for this node's processes)."""

    name = "cluster_objects"

    def __init__(self, pages: Any, relay: Any) -> None:
        self.pages = pages
        self.relay = relay  # knows the peers and the node key
        self.copies: OrderedDict[tuple[str, str], str] = OrderedDict()  # (home, id) -> local id
        self._fetching: dict[tuple[str, str], asyncio.Future] = {}
        self._kernels: dict[str, Any] = {}
        self.counters = {"exported": 0, "imported": 0, "imported_bytes": 0, "hits": 0}

    def handlers(self) -> dict:
        if self.relay.peers_file is None:
            return {}
        return {"object_export": self.h_export, "object_import": self.h_import}

    async def stop(self) -> None:
        for kernel in self._kernels.values():
            await kernel.close()
        self._kernels.clear()

    # ------------------------------------------------------------------ the home side
    def h_export(self, req: Any, oid: Any) -> dict:
        """An object's metadata and bytes (for a peer daemon fetching it)."""
        store, region = self._store()
        try:
            obj = store.lookup(oid)
        except LookupError as exc:
            raise ObjectLost(str(exc)) from None
        if obj.block is None and not store.restore(obj, lambda pages: self.pages._alloc(None, pages)):
            raise PagesExhausted("no room to read the spilled object back for export")
        start = obj.block.start * region.page_size + obj.meta[4]
        self.counters["exported"] += 1
        return {"meta": obj.meta, "data": bytes(memoryview(region.data)[start : start + obj.meta[5]])}

    # ------------------------------------------------------------------ the getter's side
    async def h_import(self, req: Any, oid: Any, home: Any) -> str:
        """This node's id of the object ``oid`` that lives at ``home`` (fetched on first ask)."""
        if type(oid) is not str or type(home) is not str or len(oid) > 200:
            raise ProtocolError("object_import takes an object id and its home address")
        if home in self.relay.network.settings.listen:
            raise ObjectLost(f"object {oid} was stored by an earlier run of this daemon: it is gone")
        if home not in {p.control for p in self.relay.peers.values()}:
            raise ObjectLost(f"object {oid} lives at {home}, which is not a node of this cluster")
        key = (home, oid)
        store, _region = self._store()
        local = self.copies.get(key)
        if local is not None and local in store.objects:
            self.copies.move_to_end(key)
            self.counters["hits"] += 1
            return local
        pending = self._fetching.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        fut = self._fetching[key] = asyncio.get_running_loop().create_future()
        try:
            local = await self._fetch(home, oid)
            fut.set_result(local)
            return local
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # read: nobody else may be waiting
            raise
        finally:
            del self._fetching[key]

    async def _fetch(self, home: str, oid: str) -> str:
        kernel = await self._kernel(home)
        reply = await kernel._control("object_export", oid, timeout=FETCH_TIMEOUT)
        meta, data = (reply.get("meta"), reply.get("data")) if isinstance(reply, dict) else (None, None)
        if type(meta) is not list or len(meta) != 7 or not isinstance(data, bytes) or len(data) != meta[5]:
            raise ProtocolError(f"malformed object export from {home}")
        store, region = self._store()
        ps = region.page_size
        block = self.pages._alloc(None, -(-len(data) // ps) or 1)
        if block is None:
            raise PagesExhausted(f"no room in this node's pages for a {len(data)}-byte object from {home}")
        base = block.start * ps
        memoryview(region.data)[base : base + len(data)] = data
        local_meta = [*meta[:4], 0, *meta[5:]]
        try:
            local_meta = self.pages._check_meta(block, local_meta)
        except ValueError as exc:
            self.pages.table.maybe_free(block)
            raise ProtocolError(f"object export from {home}: {exc}") from None
        local = store.put(os.getpid(), block, local_meta, detached=False)
        self.copies[(home, oid)] = local
        while len(self.copies) > MAX_COPIES:
            _key, old = self.copies.popitem(last=False)
            if old in store.objects:
                store.free(old)
        self.counters["imported"] += 1
        self.counters["imported_bytes"] += len(data)
        return local

    async def _kernel(self, home: str) -> Any:
        kernel = self._kernels.get(home)
        if kernel is None:
            from ..client import connect_async  # the daemon as a client of its peer

            kernel = await connect_async(
                home, key=self.relay.node_key, server_key=self.relay.network.public_key.decode()
            )
            self._kernels[home] = kernel
        return kernel

    def _store(self) -> tuple[Any, Any]:
        if self.pages.region is None:
            raise LimitExceeded("shared-memory pages are disabled on this node: no object store")
        return self.pages.store, self.pages.region

    def status(self) -> dict:
        if self.relay.peers_file is None:
            return {}
        return {**self.counters, "copies": len(self.copies)}
