"""The daemon's pages service: owns the page region, answers requests, reclaims on exit.

The page region is a memfd: it has no name in /dev/shm, so no exit of the daemon
(clean, SIGTERM or SIGKILL) can leave a file behind; its memory is gone when the
last process that maps it exits. Processes get its descriptor over the pages
channel (``pages_channel``); when a holder dies (kill -9 included) its pages are
reclaimed. The page table, object store and layout are the shared mechanics in
``_pages``.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import mmap
import os
import secrets
from collections.abc import Callable
from typing import Any

from .._pages import channel as C
from .._pages.layout import SEAL_FUTURE_WRITE, SIZE_SEALS, PageRegion
from .._pages.settings import PagesSettings, human, region_size, settings_from
from .._pages.store import ObjectMissing, ObjectStore
from .._pages.table import Block, PageTable
from ..config import Config
from ..errors import ConfigError
from .pages_channel import PagesChannel, Peer
from .pages_slabs import SlabAccess, enough_descriptors
from .service import Service

log = logging.getLogger(__name__)

#: Seconds between drains of the note rings while processes are busy, and at most when idle.
POLL_BUSY = 0.02
POLL_IDLE = 0.2

META_KINDS = ("n", "t", "v")  # numpy, torch, a packed msgpack value
#: At most this many slabs (one memfd each, held open by the daemon); more for small pools is pointless.
MAX_SLABS = 1024


class PagesService(Service):
    """The shared-memory pool, its page table and object store (see ``_pages``)."""

    name = "pages"

    def __init__(self, config: Config, name_of: Callable[[int], str | None] | None = None) -> None:
        self.config = config
        self.name_of = name_of  # pid -> actor name, for ``largest_holders``
        self.settings: PagesSettings = settings_from(self.config.extra, self.config.state_dir)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.region: PageRegion | None = None
        self.fd = -1
        self.channel: PagesChannel | None = None
        self._poll_delay = POLL_IDLE
        self._poll_handle: asyncio.TimerHandle | None = None
        self.counters = {"exhausted": 0, "bad_frames": 0, "processes_reclaimed": 0, "trimmed_bytes": 0}
        self._tick_handle: asyncio.TimerHandle | None = None
        self.path = self.config.runtime_dir / C.SOCKET_NAME
        #: Per-process store quotas (``quotas.Limits``; the daemon sets it, None: unbounded).
        self.limits: Any = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.path.unlink(missing_ok=True)
        if not self.settings.enabled:
            log.info("shared-memory pages are disabled: arrays and tensors travel inline")
            return
        self.loop = asyncio.get_running_loop()
        size, note = region_size(self.settings)
        if note:
            log.warning(note)
        ps = self.settings.page_size
        n_pages = size // ps
        pool_id = secrets.randbits(63)
        slab_pages = max(self.settings.chunk_size // ps, -(-n_pages // MAX_SLABS))
        enough_descriptors(-(-n_pages // slab_pages))
        fd = os.memfd_create(f"llmos-{self.config.instance}-pages", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        s = self.settings
        try:
            PageRegion.create(fd, pool_id, ps, n_pages, slab_pages)
            self.region = PageRegion(fd, daemon=True)
            # The page table is the daemon's alone: after its own mapping, nobody can map it writable
            # or resize it (that would be SIGBUS for the others), whatever descriptor they hold.
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SIZE_SEALS | SEAL_FUTURE_WRITE | fcntl.F_SEAL_SEAL)
            self.table = PageTable(self.region.table, ttl=s.transfer_ttl, quarantine=s.quarantine)
            self.slabs = SlabAccess(self.region, self.config.instance, self.table)
        except OSError as exc:
            os.close(fd)
            raise ConfigError(f"cannot create the shared-memory pool of {human(size)}: {exc}") from exc
        self.fd = fd
        assert s.spill_dir is not None
        self.store = ObjectStore(self.table, self.region, s.spill_dir)
        self.store.prepare()
        self.channel = PagesChannel(
            self.loop,
            self.path,
            self.config.instance,
            on_note=self._apply_note,
            on_request=self._request,
            on_exit=self._exited,
            bad_frame=self._bad_frame,
        )
        self.channel.listen()
        self._tick_handle = self.loop.call_later(1.0, self._tick)
        self._poll_handle = self.loop.call_later(POLL_IDLE, self._poll)
        log.info("shared-memory pool: %s in %s pages (memfd, id %x)", human(size), human(ps), pool_id)

    async def stop(self) -> None:
        loop = self.loop
        if loop is None:
            return
        for handle in (self._tick_handle, self._poll_handle):
            if handle is not None:
                handle.cancel()
        if self.channel is not None:
            self.channel.close()
        self.store.close()
        self.slabs.close()
        if self.region is not None:
            self.region.close()
            self.region = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.path.unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        if self.region is None:
            return {"enabled": False}
        self._drain_all()
        t = self.table
        ps = self.region.page_size
        return {
            "pool_bytes": self.region.data_bytes,
            "page_bytes": ps,
            "used_bytes": t.used_pages() * ps,
            "resident_bytes": self.resident_bytes(),
            "largest_free_bytes": t.allocator.largest() * ps,
            "blocks": len(t.blocks),
            "holders": t.holders(),
            "transfers": len(t.transfers),
            "largest_holders": self._largest_holders(ps),
            **self.store.numbers(),
            **t.counters,
            **self.slabs.counters,
            **self.counters,
        }

    def _largest_holders(self, page_size: int, count: int = 3) -> str:
        """The processes holding the most pool memory, by actor name (an LLM device's KV cache
        shows here): ``"llm 256.0 MiB, worker 4.0 MiB"``."""
        t = self.table
        held = []
        for pid, starts in t.by_pid.items():
            pages = sum(t.blocks[s].pages for s in starts if s in t.blocks)
            if pages:
                held.append((pages * page_size, pid))
        held.sort(reverse=True)
        parts = []
        for nbytes, pid in held[:count]:
            who = (self.name_of(pid) if self.name_of is not None else None) or f"pid {pid}"
            parts.append(f"{who} {nbytes / (1 << 20):.1f} MiB")
        return ", ".join(parts)

    # ------------------------------------------------------------------ housekeeping
    def _drain_all(self) -> bool:
        return self.channel.drain_all() if self.channel is not None else False

    def _poll(self) -> None:
        """Drain the rings: every few ms while notes come, backing off when idle."""
        busy = self._drain_all()
        self._poll_delay = POLL_BUSY if busy else min(self._poll_delay * 2, POLL_IDLE)
        assert self.loop is not None
        self._poll_handle = self.loop.call_later(self._poll_delay, self._poll)

    def resident_bytes(self) -> int:
        """Memory the pool occupies now (tmpfs pages allocated to the slabs' memfds)."""
        return sum(os.fstat(fd).st_blocks * 512 for fd in self.slabs.fds) if self.fd >= 0 else 0

    def trim(self) -> int:
        """Give free pages back to the system beyond ``trim_above`` resident free bytes."""
        region = self.region
        assert region is not None
        ps = region.page_size
        excess = self.resident_bytes() - self.table.used_pages() * ps - self.settings.trim_above
        trimmed = 0
        # First fit allocates from the bottom: the top of the pool is the least likely to be reused soon.
        for start, length in reversed(self.table.allocator.runs()):
            if excess <= 0:
                break
            try:
                region.data.madvise(mmap.MADV_REMOVE, start * ps, length * ps)
            except OSError as exc:
                log.warning("pages: cannot give free pages back: %s", exc)
                break
            excess -= length * ps
            trimmed += length * ps
        if trimmed:
            self.counters["trimmed_bytes"] += trimmed
        return trimmed

    def _tick(self) -> None:
        self.table.expire()
        self.trim()
        assert self.loop is not None
        self._tick_handle = self.loop.call_later(1.0, self._tick)

    # ------------------------------------------------------------------ processes
    def _bad_frame(self) -> None:
        self.counters["bad_frames"] += 1

    def _exited(self, pid: int) -> None:
        """A holder died and everything it said was read: drop everything it held."""
        freed = self.table.exited(pid)
        objects = self.store.owner_exited(pid)
        self.slabs.exited(pid)
        self.counters["processes_reclaimed"] += 1
        if freed or objects:
            log.info("pages: pid %d exited: %d block(s) freed, %d object(s) dropped", pid, freed, objects)

    # ------------------------------------------------------------------ requests
    def _request(self, peer: Peer, op: str, args: list) -> tuple[dict, list[int] | None]:
        return getattr(self, f"_op_{op}")(peer, *args)

    def _apply_note(self, pid: int, op: str, args: list) -> None:
        t = self.table
        try:
            if op == C.TAKE:
                t.take(pid, *args[:4], adopt=bool(args[4]) if len(args) > 4 else True)
            elif op == C.SEND:
                t.send(pid, *args[:4])
            else:
                t.release(pid, *args[:3])
        except TypeError:
            self.counters["bad_frames"] += 1

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
