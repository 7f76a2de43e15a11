"""The daemon's pages service: owns the page region, answers requests, reclaims on exit.

The page region is a memfd: it has no name in /dev/shm, so no exit of the daemon
(clean, SIGTERM or SIGKILL) can leave a file behind; its memory is gone when the
last process that maps it exits. Processes get its descriptor over the pages
channel (``pages_channel``); when a holder dies (kill -9 included) its pages are
reclaimed. The page table, object store and layout are the shared mechanics in
``_pages``; the requests a process makes on the channel are answered in ``pages_requests``.
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
from .._pages.store import ObjectStore
from .._pages.table import PageTable
from ..config import Config
from ..errors import ConfigError
from .pages_channel import PagesChannel
from .pages_requests import PagesRequests
from .pages_slabs import SlabAccess, enough_descriptors
from .service import Service

log = logging.getLogger(__name__)

#: Seconds between drains of the note rings while processes are busy, and at most when idle.
POLL_BUSY = 0.02
POLL_IDLE = 0.2

#: At most this many slabs (one memfd each, held open by the daemon); more for small pools is pointless.
MAX_SLABS = 1024


class PagesService(PagesRequests, Service):
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
