"""What the pages service answers on the channel: hello, alloc, map, put, get, drain, free.

A mixin of ``PagesService`` (its region, table, slabs, store and counters). Each ``_op_<name>``
takes the peer (its pid from the kernel's credentials, never from the message) and the
request's arguments, checks them, and returns ``(reply, descriptors)``; a refusal is a reply
with ``error`` and a message that says why, never an exception.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .._pages.layout import PageRegion
from .._pages.settings import PagesSettings, human
from .._pages.store import ObjectMissing, ObjectStore
from .._pages.table import Block, PageTable
from ..config import Config
from .pages_channel import PagesChannel, Peer
from .pages_slabs import SlabAccess

META_KINDS = ("n", "t", "v")  # numpy, torch, a packed msgpack value


class PagesRequests:
    """The channel's request handlers, by name (``_op_`` + the request's op)."""

    config: Config
    settings: PagesSettings
    region: PageRegion | None
    fd: int
    channel: PagesChannel | None
    table: PageTable
    slabs: SlabAccess
    store: ObjectStore
    counters: dict[str, int]
    limits: Any
    _drain_all: Callable[[], bool]

    def _request(self, peer: Peer, op: str, args: list) -> tuple[dict, list[int] | None]:
        return getattr(self, f"_op_{op}")(peer, *args)

    def _op_hello(self, conn: Peer, info: Any = None) -> tuple[dict, list[int]]:
        region = self.region
        assert region is not None
        s = self.settings
        reply = {
            "pool_id": region.pool_id,
            "page_size": region.page_size,
            "pages": region.n_pages,
            "chunk_size": s.chunk_size,
            "inline_threshold": s.inline_threshold,
            "alloc_timeout": s.alloc_timeout,
            "instance": self.config.instance,
            "pid": conn.pid,
        }
        assert self.channel is not None
        # A process attaches with no slab mapped: those it owned before (sealed, perhaps) are not its any more.
        self.slabs.exited(conn.pid)
        return reply, [self.fd, self.channel.ring_for(conn.pid).fd]

    def _alloc(self, pid: int | None, pages: int, unsealed: bool = False) -> Block | None:
        """A block in slabs of ``pid``'s own (None: the daemon's), claiming more when they are full.

        ``unsealed``: for a copy that will be moved (its receiver maps it writable), new slabs
        come before sealed ones (those would make every receiver copy it again).
        """
        # Releases not read yet first: first fit then reuses pages that are already touched and
        # mapped there (fresh ones cost a page fault each, 4-5x slower than a memcpy).
        self._drain_all()
        block = self.slabs.alloc(pid, pages, unsealed)
        if block is None and self.store.spill_for(pages):
            block = self.slabs.alloc(pid, pages, unsealed)
        return block

    def _full(self, nbytes: int) -> dict:
        t = self.table
        ps = self.region.page_size  # type: ignore[union-attr]
        self.counters["exhausted"] += 1
        pinned = sum(1 for o in self.store.objects.values() if o.block is not None)
        holders = sorted(pid for pid, starts in t.by_pid.items() if starts)
        message = (
            f"need {human(nbytes)}, largest free run {human(t.allocator.largest() * ps)}, "
            f"free {human(t.allocator.free_pages * ps)} of {human(t.n_pages * ps)}; "
            f"{len(t.blocks)} block(s) held by {len(holders)} process(es) {holders[:8]}, "
            f"{len(t.transfers)} transfer(s) in flight, {pinned} stored object(s) in memory that cannot be "
            "spilled (mapped by a process or in a message)"
        )
        return {"error": "full", "message": message}

    def _op_alloc(self, conn: Peer, nbytes: Any, unsealed: Any = False) -> tuple[dict, list[int] | None]:
        ps = self.region.page_size  # type: ignore[union-attr]
        if type(nbytes) is not int or nbytes <= 0:
            return {"error": "bad", "message": f"alloc needs a positive byte count, not {nbytes!r}"}, None
        if nbytes > self.table.n_pages * ps:
            message = f"{human(nbytes)} is larger than the whole pool ({human(self.table.n_pages * ps)})"
            return {"error": "too_big", "message": message}, None
        block = self._alloc(conn.pid, -(-nbytes // ps), bool(unsealed))
        if block is None:
            return self._full(nbytes), None
        slabs = self.slabs.new_to(conn.pid, block.start, block.pages)
        reply = {"start": block.start, "pages": block.pages, "gen": block.gen}
        if slabs:
            reply["slabs"] = [[slab, inc] for slab, _fd, inc in slabs]  # their descriptors, in this order
        return reply, [fd for _slab, fd, _inc in slabs] or None

    def _op_map(self, conn: Peer, slab: Any, writable: Any = False) -> tuple[dict, list[int] | None]:
        """A process asks for a slab it was given a page of (see ``pages_slabs``)."""
        slabs = self.slabs
        if type(slab) is not int or not 0 <= slab < len(slabs.fds):
            return {"error": "bad", "message": f"no slab {slab!r}"}, None
        self._drain_all()  # the take that gave it the page may still sit in a ring
        if not slabs.holds_in(conn.pid, slab):
            slabs.counters["slab_requests_refused"] += 1
            message = f"process {conn.pid} holds no page of slab {slab}: it was given none there"
            return {"error": "denied", "message": message}, None
        granted = slabs.grant(conn.pid, slab, writable=bool(writable))
        if isinstance(granted, str):
            return {"error": "sealed", "message": granted}, None
        fd, inc = granted
        return {"slab": slab, "incarnation": inc}, [fd]

    def _check_meta(self, block: Block, meta: Any) -> list:
        ps = self.region.page_size  # type: ignore[union-attr]
        if type(meta) is not list or len(meta) != 7 or meta[0] not in META_KINDS:
            raise ValueError("malformed object metadata")
        base_off, span = meta[4], meta[5]
        if type(base_off) is not int or type(span) is not int or base_off < 0 or span < 0:
            raise ValueError("malformed object extent")
        if base_off + span > block.pages * ps:
            raise ValueError("object extent lies outside its block")
        return meta

    def _op_put(self, conn: Peer, start: Any, gen: Any, meta: Any, detached: Any = False) -> tuple[dict, None]:
        block = self.table.find(start, gen)
        if block is None:
            return {"error": "bad", "message": "put of pages that are not allocated (stale handle)"}, None
        try:
            meta = self._check_meta(block, meta)
        except ValueError as exc:
            return {"error": "bad", "message": str(exc)}, None
        count, size = self.store.held_by(conn.pid)
        limits = self.limits
        if limits is not None:
            for name, value, limit in (
                ("stored_objects", count + 1, limits.stored_objects),
                ("stored_bytes", size + meta[5], limits.stored_bytes),
            ):
                if value > limit:
                    message = f"put refused: process {conn.pid} would store {value}: limit [limits] {name} = {limit}"
                    return {"error": "limit", "message": message}, None
        return {"oid": self.store.put(conn.pid, block, meta, detached=bool(detached))}, None

    def _op_get(self, conn: Peer, oid: Any) -> tuple[dict, None]:
        try:
            obj = self.store.lookup(oid)
        except ObjectMissing as exc:
            return {"error": "missing", "message": str(exc)}, None
        if obj.block is None and not self.store.restore(obj, lambda pages: self._alloc(None, pages)):
            return self._full(obj.meta[4] + obj.meta[5]), None
        block = obj.block
        assert block is not None
        self.table.hold(block, conn.pid)
        obj.last_used = block.last_used
        return {"start": block.start, "pages": block.pages, "gen": block.gen, "meta": obj.meta}, None

    def _op_drain(self, conn: Peer) -> tuple[dict, None]:
        return {}, None  # _handle drained its ring before this request

    def _op_free(self, conn: Peer, oid: Any) -> tuple[dict, None]:
        try:
            obj = self.store.lookup(oid)
            creator = obj.creator
            if creator is not None and creator != conn.pid and _alive(creator):
                message = f"object {oid} belongs to process {creator}: only it may free it (others may read it)"
                return {"error": "denied", "message": message}, None
            self.store.free(oid)
        except ObjectMissing as exc:
            return {"error": "missing", "message": str(exc)}, None
        return {}, None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
