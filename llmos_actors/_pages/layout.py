"""The page region's file: a header, a per-page table, then the data pages; and how a process maps it.

    [preamble 64 B][page table: n_pages x (generation u64, run length u64)] .. padding ..
    [data: n_pages x page_size]

The daemon alone writes the page table: when it hands out a run of pages it writes the
run length, then a generation number that is never reused; when the run is freed it
writes 0. Every process maps the header read-only and checks a handle against it before
it maps anything, so a forged or stale handle is refused (``ProtocolError``) instead of
aliasing pages that now belong to someone else.

Each process maps the data twice, once, both shared: read-write (its own allocations,
writable shares) and read-only (what it receives as a read-only share: the memory
protection guarantees a receiver never changes the sender's data). Both mappings stay for
the life of the process, so pages touched once are never faulted in again, however often
blocks are freed and reused.
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import Any

import numpy as np

MAGIC = b"LLMOSPG1"
_PREAMBLE = struct.Struct("<8sQQQQQ")  # magic, pool id, page size, pages, header bytes, data bytes
PREAMBLE_BYTES = 64
ENTRY_BYTES = 16


def header_bytes(n_pages: int, page_size: int) -> int:
    raw = PREAMBLE_BYTES + n_pages * ENTRY_BYTES
    return -(-raw // page_size) * page_size


def address_of(buf: Any) -> int:
    """The address of a writable buffer (an mmap)."""
    view = np.frombuffer(buf, dtype=np.uint8, count=1)
    return int(view.ctypes.data)


class PageRegion:
    """One process's mappings of the page region (the daemon's memfd of shared pages).

    Args:
        fd: the region's file (a memfd); not kept open (the mappings keep the memory).
        daemon: map the header writable (only the daemon writes the page table) and skip the
            read-only mapping.
    """

    def __init__(self, fd: int, *, daemon: bool = False) -> None:
        raw = os.pread(fd, _PREAMBLE.size, 0)
        magic, pool_id, page_size, n_pages, hbytes, dbytes = _PREAMBLE.unpack(raw)
        if magic != MAGIC:
            raise ValueError("not an llmos page region file")
        self.pool_id = pool_id
        self.page_size = page_size
        self.n_pages = n_pages
        self.header_bytes = hbytes
        self.data_bytes = dbytes
        prot = mmap.PROT_READ | mmap.PROT_WRITE if daemon else mmap.PROT_READ
        self.header = mmap.mmap(fd, hbytes, flags=mmap.MAP_SHARED, prot=prot)
        #: (n_pages, 2) uint64: generation and run length of the run starting at each page.
        self.table = np.frombuffer(self.header, dtype=np.uint64, count=2 * n_pages, offset=PREAMBLE_BYTES).reshape(
            n_pages, 2
        )
        # The same table as a flat memoryview: indexing it is ~20x cheaper than numpy's (decode hot path).
        self._words = memoryview(self.header).cast("Q")
        self.data = mmap.mmap(fd, dbytes, flags=mmap.MAP_SHARED, offset=hbytes)
        self.base = address_of(self.data)
        self.rodata: mmap.mmap | None = None
        self.robase = 0
        if not daemon:
            self.rodata = mmap.mmap(fd, dbytes, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=hbytes)
            self.robase = address_of(self.rodata)

    @staticmethod
    def create(fd: int, pool_id: int, page_size: int, n_pages: int) -> None:
        """Size a fresh pool file and write its preamble (the daemon, once)."""
        hbytes = header_bytes(n_pages, page_size)
        dbytes = n_pages * page_size
        os.ftruncate(fd, hbytes + dbytes)
        os.pwrite(fd, _PREAMBLE.pack(MAGIC, pool_id, page_size, n_pages, hbytes, dbytes), 0)

    def run(self, page: int) -> tuple[int, int]:
        """``(generation, run length)`` recorded for a run starting at ``page`` (0, 0 if none)."""
        i = PREAMBLE_BYTES // 8 + 2 * page
        words = self._words
        return words[i], words[i + 1]

    def close(self) -> None:
        """Drop the mappings; memory still viewed by live arrays stays mapped until they die."""
        self.table = None  # type: ignore[assignment]
        self._words.release()
        for mm in (self.header, self.data, self.rodata):
            if mm is not None:
                try:
                    mm.close()
                except BufferError:
                    pass  # exported to live arrays: unmapped when the last one dies
