"""The page region's files: a header with the page table, then slabs of data pages; how a process maps them.

    header memfd: [preamble 64 B][page table: n_pages x (generation u64, run length u64)]
                  [slab table: n_slabs x u64 (incarnation << 1 | sealed)]
    slab memfds:  one per ``slab_pages`` pages of data; slab ``i`` holds pages
                  ``[i * slab_pages, (i + 1) * slab_pages)``

The daemon alone writes the header: when it hands out a run of pages it writes the run
length, then a generation number that is never reused; when the run is freed it writes 0.
It maps the header writable and then seals it (``F_SEAL_FUTURE_WRITE``): every other process
can map it read-only and nothing else, and checks a handle against it before mapping
anything, so a forged or stale handle is refused (``ProtocolError``).

Data lives in slabs, one memfd each, so that access can be given slab by slab (a descriptor
is all-or-nothing for its file): a process holds the descriptor of a slab only if it allocated
there (it *owns* the slab: write access) or was given a page of it (``_kernel.pages_slabs``).
Each process reserves the data's address range twice (read-write and read-only views, same
layout as the page numbers) and maps each slab it was given into place (``MAP_FIXED``), once:
pages touched once are never faulted in again, however often blocks are freed and reused.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import struct
from typing import Any

import numpy as np

MAGIC = b"LLMOSPG2"
# magic, pool id, page size, pages, header bytes, data bytes, pages per slab
_PREAMBLE = struct.Struct("<8sQQQQQQ")
PREAMBLE_BYTES = 64
ENTRY_BYTES = 16
#: Seals on every slab and on the header: nobody may resize them under the others' mappings.
SIZE_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
#: No new writable mapping and no ``write()`` from anyone; mappings made before keep writing.
SEAL_FUTURE_WRITE = getattr(fcntl, "F_SEAL_FUTURE_WRITE", 0x10)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_MAP_FIXED = 0x10
_MAP_FAILED = ctypes.c_void_p(-1).value


def header_bytes(n_pages: int, page_size: int, n_slabs: int = 0) -> int:
    raw = PREAMBLE_BYTES + n_pages * ENTRY_BYTES + n_slabs * 8
    return -(-raw // page_size) * page_size


def map_fixed(addr: int, length: int, fd: int, *, writable: bool) -> None:
    """Map ``length`` bytes of ``fd`` shared at ``addr`` (inside a reservation of ours), replacing what was there.

    Raises:
        OSError: the kernel refused (e.g. a writable mapping of a sealed or read-only file).
    """
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
    if _libc.mmap(addr, length, prot, mmap.MAP_SHARED | _MAP_FIXED, fd, 0) == _MAP_FAILED:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot map a slab: {os.strerror(err)}")


def _reserve(length: int) -> tuple[mmap.mmap, int]:
    """An address range of ``length`` bytes that maps nothing yet (a writable buffer to Python,
    ``PROT_NONE`` to the hardware until slabs are mapped into it); closing it unmaps them all."""
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0)
    mm = mmap.mmap(-1, max(length, 1), flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    base = address_of(mm)
    _libc.mprotect(base, max(length, 1), 0)
    return mm, base


def address_of(buf: Any) -> int:
    """The address of a writable buffer (an mmap)."""
    view = np.frombuffer(buf, dtype=np.uint8, count=1)
    return int(view.ctypes.data)


class PageRegion:
    """One process's mappings of the page region: the header, and its views of the slabs it was given.

    Args:
        fd: the header's file (a memfd); not kept open (the mappings keep the memory).
        daemon: map the header writable (only the daemon writes the page table) and skip the
            read-only view.
    """

    def __init__(self, fd: int, *, daemon: bool = False) -> None:
        raw = os.pread(fd, _PREAMBLE.size, 0)
        magic, pool_id, page_size, n_pages, hbytes, dbytes, slab_pages = _PREAMBLE.unpack(raw)
        if magic != MAGIC or not slab_pages:
            raise ValueError("not an llmos page region file")
        self.pool_id = pool_id
        self.page_size = page_size
        self.n_pages = n_pages
        self.header_bytes = hbytes
        self.data_bytes = dbytes
        self.slab_pages = slab_pages
        self.slab_bytes = slab_pages * page_size
        self.n_slabs = -(-n_pages // slab_pages)
        prot = mmap.PROT_READ | mmap.PROT_WRITE if daemon else mmap.PROT_READ
        self.header = mmap.mmap(fd, hbytes, flags=mmap.MAP_SHARED, prot=prot)
        #: (n_pages, 2) uint64: generation and run length of the run starting at each page.
        self.table = np.frombuffer(self.header, dtype=np.uint64, count=2 * n_pages, offset=PREAMBLE_BYTES).reshape(
            n_pages, 2
        )
        #: n_slabs uint64: incarnation << 1 | sealed, per slab (the daemon writes it).
        self.slabs = np.frombuffer(
            self.header, dtype=np.uint64, count=self.n_slabs, offset=PREAMBLE_BYTES + n_pages * ENTRY_BYTES
        )
        # The same table as a flat memoryview: indexing it is ~20x cheaper than numpy's (decode hot path).
        self._words = memoryview(self.header).cast("Q")
        self._slab_word = (PREAMBLE_BYTES + n_pages * ENTRY_BYTES) // 8
        self.data, self.base = _reserve(dbytes)
        self.rodata: mmap.mmap | None = None
        self.robase = 0
        if not daemon:
            self.rodata, self.robase = _reserve(dbytes)
        #: slab -> incarnation mapped in each view (this process's own bookkeeping).
        self.mapped_rw: dict[int, int] = {}
        self.mapped_ro: dict[int, int] = {}

    @staticmethod
    def create(fd: int, pool_id: int, page_size: int, n_pages: int, slab_pages: int) -> None:
        """Size a fresh header file and write its preamble (the daemon, once)."""
        n_slabs = -(-n_pages // slab_pages)
        hbytes = header_bytes(n_pages, page_size, n_slabs)
        dbytes = n_pages * page_size
        os.ftruncate(fd, hbytes)
        os.pwrite(fd, _PREAMBLE.pack(MAGIC, pool_id, page_size, n_pages, hbytes, dbytes, slab_pages), 0)

    def run(self, page: int) -> tuple[int, int]:
        """``(generation, run length)`` recorded for a run starting at ``page`` (0, 0 if none)."""
        i = PREAMBLE_BYTES // 8 + 2 * page
        words = self._words
        return words[i], words[i + 1]

    def slab_state(self, slab: int) -> tuple[int, bool]:
        """``(incarnation, sealed)`` of a slab, as the daemon recorded it."""
        word = self._words[self._slab_word + slab]
        return word >> 1, bool(word & 1)

    def slab_range(self, start: int, pages: int) -> range:
        """The slabs a run of pages lies in."""
        return range(start // self.slab_pages, (start + pages - 1) // self.slab_pages + 1)

    def slab_length(self, slab: int) -> int:
        """Bytes of slab ``slab`` (the last one may be short)."""
        return min(self.slab_bytes, self.data_bytes - slab * self.slab_bytes)

    def map_slab(self, slab: int, fd: int, incarnation: int, *, writable: bool) -> None:
        """Map slab ``slab`` (its descriptor ``fd``) into the read-only view, and into the
        read-write one when ``writable`` (the kernel refuses that for a sealed slab)."""
        offset, length = slab * self.slab_bytes, self.slab_length(slab)
        if writable:
            map_fixed(self.base + offset, length, fd, writable=True)
            self.mapped_rw[slab] = incarnation
        if self.rodata is not None:
            map_fixed(self.robase + offset, length, fd, writable=False)
            self.mapped_ro[slab] = incarnation

    def close(self) -> None:
        """Drop the mappings; memory still viewed by live arrays stays mapped until they die."""
        self.table = None  # type: ignore[assignment]
        self.slabs = None  # type: ignore[assignment]
        self._words.release()
        for mm in (self.header, self.data, self.rodata):
            if mm is not None:
                try:
                    mm.close()
                except BufferError:
                    pass  # exported to live arrays: unmapped when the last one dies
