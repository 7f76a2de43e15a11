"""The object store (``kernel.put`` / ``kernel.get``) and its spill directory.

An object is a block of pages plus how to view it (kind, dtype, shape, strides). The store
references the block, so it outlives the process that put it only if ``detached``;
otherwise it goes when its owner exits (like Ray's owner-based lifetime) or on ``free``.

Page replacement: when an allocation does not fit, the least recently used objects that
no process maps and no message carries are written to the spill directory and their
pages freed; ``get`` reads a spilled object back into fresh pages.
"""

from __future__ import annotations

import itertools
import mmap
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .layout import PageRegion
from .table import Block, PageTable


class ObjectMissing(LookupError):
    """No object with that id (freed, its owner exited, or another daemon's)."""


@dataclass(eq=False)
class StoredObject:
    oid: str
    owner: int | None
    meta: list
    block: Block | None
    last_used: float
    path: Path | None = None
    creator: int | None = None  # the process that stored it (only it, while it lives, may free it)


class ObjectStore:
    """Objects by id, with LRU spill to ``spill_dir``."""

    def __init__(
        self,
        table: PageTable,
        region: PageRegion,
        spill_dir: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self.region = region
        self.spill_dir = spill_dir
        self.clock = clock
        self.objects: dict[str, StoredObject] = {}
        #: ``(objects, bytes)`` per storing process, for the per-process quotas (``[limits]``).
        self.by_creator: dict[int, tuple[int, int]] = {}
        self._ids = itertools.count(1)
        self.counters = {"spills": 0, "restores": 0, "spilled_bytes": 0, "restored_bytes": 0}

    def prepare(self) -> None:
        """Start with an empty spill directory (spilled objects belong to one daemon run)."""
        shutil.rmtree(self.spill_dir, ignore_errors=True)
        self.spill_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def close(self) -> None:
        self.objects.clear()
        shutil.rmtree(self.spill_dir, ignore_errors=True)

    # ------------------------------------------------------------------ operations
    def put(self, pid: int, block: Block, meta: list, *, detached: bool) -> str:
        # The random tail makes ids unguessable: holding an id means having been given it.
        oid = f"{self.region.pool_id:016x}-{next(self._ids)}-{secrets.token_hex(8)}"
        block.store += 1
        self.objects[oid] = StoredObject(oid, None if detached else pid, meta, block, self.clock(), creator=pid)
        count, size = self.by_creator.get(pid, (0, 0))
        self.by_creator[pid] = (count + 1, size + _extent(meta))
        return oid

    def held_by(self, pid: int) -> tuple[int, int]:
        """``(objects, bytes)`` that process ``pid`` stored and that are still here."""
        return self.by_creator.get(pid, (0, 0))

    def lookup(self, oid: Any) -> StoredObject:
        obj = self.objects.get(oid) if isinstance(oid, str) else None
        if obj is None:
            raise ObjectMissing(f"no object {oid!r} in this daemon's store (freed, or its owner exited)")
        return obj

    def restore(self, obj: StoredObject, alloc: Callable[[int], Block | None]) -> bool:
        """Read a spilled object back into fresh pages; False if the pool has no room."""
        assert obj.path is not None
        ps = self.region.page_size
        size = obj.path.stat().st_size
        block = alloc(-(-size // ps) or 1)
        if block is None:
            return False
        view = memoryview(self.region.data)
        try:
            with open(obj.path, "rb") as fh:
                fh.readinto(view[block.start * ps : block.start * ps + size])
        finally:
            view.release()
        obj.path.unlink(missing_ok=True)
        obj.path = None
        obj.block = block
        block.store += 1
        self.counters["restores"] += 1
        self.counters["restored_bytes"] += size
        return True

    def free(self, oid: Any) -> None:
        obj = self.lookup(oid)
        del self.objects[obj.oid]
        self._drop(obj)

    def owner_exited(self, pid: int) -> int:
        gone = [o for o in self.objects.values() if o.owner == pid]
        for obj in gone:
            del self.objects[obj.oid]
            self._drop(obj)
        return len(gone)

    def _drop(self, obj: StoredObject) -> None:
        if obj.creator is not None and obj.creator in self.by_creator:
            count, size = self.by_creator[obj.creator]
            if count <= 1:
                del self.by_creator[obj.creator]
            else:
                self.by_creator[obj.creator] = (count - 1, size - _extent(obj.meta))
        if obj.block is not None:
            obj.block.store -= 1
            self.table.maybe_free(obj.block)
            obj.block = None
        if obj.path is not None:
            obj.path.unlink(missing_ok=True)
            obj.path = None

    # ------------------------------------------------------------------ page replacement
    def spillable(self) -> list[StoredObject]:
        """Objects whose pages only the store references, least recently used first."""
        out = [
            o
            for o in self.objects.values()
            if o.block is not None
            and o.block.store == 1
            and not o.block.holds
            and not o.block.tokens
            and o.block.quarantined is None
        ]
        out.sort(key=lambda o: o.last_used)
        return out

    def spill_for(self, pages: int) -> bool:
        """Spill LRU objects until a run of ``pages`` is free; False if it cannot be done."""
        alloc = self.table.allocator
        if alloc.largest() >= pages:
            return True
        for obj in self.spillable():
            self._spill(obj)
            if alloc.largest() >= pages:
                return True
        return alloc.largest() >= pages

    def _spill(self, obj: StoredObject) -> None:
        block = obj.block
        assert block is not None
        ps = self.region.page_size
        _kind, _dtype, _shape, _strides, base_off, span, _first = obj.meta
        size = base_off + span
        path = self.spill_dir / f"{obj.oid}.bin"
        view = memoryview(self.region.data)
        try:
            with open(path, "wb") as fh:
                fh.write(view[block.start * ps : block.start * ps + size])
        finally:
            view.release()
        obj.path = path
        obj.block = None
        block.store -= 1
        self.table.maybe_free(block)
        # Give the memory back too: the pages are free, their contents are on disk.
        try:
            self.region.data.madvise(_MADV_REMOVE, block.start * ps, block.pages * ps)
        except (AttributeError, OSError, ValueError):
            pass
        self.counters["spills"] += 1
        self.counters["spilled_bytes"] += size

    def numbers(self) -> dict[str, int]:
        spilled = sum(1 for o in self.objects.values() if o.path is not None)
        return {"objects": len(self.objects), "objects_spilled": spilled, **self.counters}


_MADV_REMOVE = getattr(mmap, "MADV_REMOVE", 9)


def _extent(meta: list) -> int:
    """Bytes an object's data spans (from its metadata: offset and span in its block)."""
    return int(meta[5]) if len(meta) > 5 and type(meta[5]) is int else 0
