"""Who may map which slab of the page region, and how: the daemon's side of page access.

A slab is one memfd of ``slab_pages`` pages; a descriptor gives its whole file, so access
is handed out slab by slab and only over the pages channel (``SCM_RIGHTS``):

- a process that allocates gets slabs of its own (its *owner*ship lasts while it lives):
  their descriptor, read-write; nobody else's allocations ever land in them;
- a process that was given a page (it holds a block there: a transfer it took, or an object
  it got) may ask for the slab's descriptor; a writable share or a move gets it read-write
  while the slab is unsealed; a read-only receiver first has the slab sealed
  (``F_SEAL_FUTURE_WRITE``): from then on no process can map it writable or ``write()`` it,
  whatever descriptor it holds or reopens through ``/proc``; the mappings made before
  (its owner's, the daemon's, earlier writable receivers') keep working;
- when its owner has exited and its last block is gone, a slab whose descriptor ever left the
  daemon is replaced by a fresh memfd before anyone else allocates there (its pages are
  given back first), so what a past holder still maps is never anyone's data again.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import resource

from .._pages.channel import MAX_FDS
from .._pages.layout import SEAL_FUTURE_WRITE, SIZE_SEALS, PageRegion
from .._pages.table import Block, PageTable

#: ``owner`` of a slab holding the daemon's own blocks (objects read back from the spill directory).
DAEMON = 0


class SlabAccess:
    """The slabs' descriptors, owners and seals (see the module docstring).

    Args:
        region: the daemon's mappings (its read-write view gets every slab).
        instance: names the memfds (``/proc/<pid>/fd`` listings).
        table: the page table (blocks, their holders, free runs).
    """

    def __init__(self, region: PageRegion, instance: str, table: PageTable) -> None:
        self.region = region
        self.instance = instance
        self.table = table
        self.is_free = table.allocator.is_free
        n = region.n_slabs
        self.fds: list[int] = [-1] * n
        self.owner: list[int | None] = [None] * n
        self.handed = [False] * n  # its descriptor left the daemon (renew before another owner)
        self.incarnation = [0] * n
        self.by_owner: dict[int, list[int]] = {}
        self.given: dict[int, dict[int, int]] = {}  # pid -> {slab: incarnation} sent it read-write as owner
        self.counters = {"slabs_sealed": 0, "slabs_renewed": 0, "slab_requests_refused": 0}
        for slab in range(n):
            self._fresh(slab)

    def close(self) -> None:
        for fd in self.fds:
            if fd >= 0:
                os.close(fd)
        self.fds = []

    # ------------------------------------------------------------------ allocation
    def alloc(self, pid: int | None, pages: int, unsealed: bool) -> Block | None:
        """A block held by ``pid`` in slabs it owns (None: the daemon's), claiming more when they are full.

        ``unsealed``: for a copy that will be moved (its receiver maps it writable), new slabs
        come before sealed ones (those would make every receiver copy it again).
        """
        owner = DAEMON if pid is None else pid
        table = self.table
        ranges = self.owned(owner)
        for sealed, lo, hi in ranges:
            if unsealed and sealed:
                break  # unsealed ranges come first
            block = table.alloc(pid, pages, lo, hi)
            if block is not None:
                return block
        claimed = self.claim(owner, pages)
        if claimed is not None:
            return table.alloc(pid, pages, *claimed)
        for sealed, lo, hi in ranges if unsealed else ():
            block = table.alloc(pid, pages, lo, hi) if sealed else None
            if block is not None:
                return block
        return None

    def holds_in(self, pid: int, slab: int) -> bool:
        """Whether ``pid`` holds a block with a page in ``slab`` (it was given one, or made it)."""
        lo = slab * self.region.slab_pages
        hi = lo + self.region.slab_pages
        blocks = self.table.blocks
        for start in self.table.by_pid.get(pid, ()):
            block = blocks.get(start)
            if block is not None and block.start < hi and block.start + block.pages > lo:
                return True
        return False

    # ------------------------------------------------------------------ owners
    def owned(self, pid: int) -> list[tuple[bool, int, int]]:
        """``pid``'s slabs as ``(sealed, lo, hi)`` page ranges, adjacent ones merged, unsealed ones first."""
        sp, n_pages = self.region.slab_pages, self.region.n_pages
        ranges: list[tuple[bool, int, int]] = []
        for slab in sorted(self.by_owner.get(pid, ())):
            sealed = self.sealed(slab)
            lo, hi = slab * sp, min((slab + 1) * sp, n_pages)
            if ranges and ranges[-1][2] == lo and ranges[-1][0] == sealed:
                ranges[-1] = (sealed, ranges[-1][1], hi)
            else:
                ranges.append((sealed, lo, hi))
        ranges.sort(key=lambda r: r[0])
        return ranges

    def claim(self, pid: int, pages: int) -> tuple[int, int] | None:
        """Make ``pid`` the owner of enough adjacent slabs without blocks for ``pages``; their page range.

        Unowned slabs first; then empty slabs of other owners (taken from them: renewed, so
        their old mappings see none of the new owner's data).
        """
        sp, n_pages = self.region.slab_pages, self.region.n_pages
        need = -(-pages // sp)
        for steal in (False, True):
            run = 0
            for slab in range(self.region.n_slabs):
                owner = self.owner[slab]
                ok = owner is None or (steal and owner != pid)
                ok = ok and self.is_free(slab * sp, min(sp, n_pages - slab * sp))
                run = run + 1 if ok else 0
                if run == need:
                    first = slab - need + 1
                    for s in range(first, slab + 1):
                        self._own(s, pid)
                    return first * sp, min((slab + 1) * sp, n_pages)
        return None

    def _own(self, slab: int, pid: int) -> None:
        old = self.owner[slab]
        if old is not None:
            self.by_owner[old].remove(slab)
        if self.handed[slab]:
            self._renew(slab)
        self.owner[slab] = pid
        self.by_owner.setdefault(pid, []).append(slab)

    def exited(self, pid: int) -> None:
        for slab in self.by_owner.pop(pid, ()):
            self.owner[slab] = None
        self.given.pop(pid, None)

    def new_to(self, pid: int, start: int, pages: int) -> list[tuple[int, int, int]]:
        """``(slab, fd, incarnation)`` of ``pid``'s own slabs under a block it was just given whose
        current descriptor it has not had yet (sent with the allocation's answer; at most
        ``MAX_FDS``: the process maps the others with ``map``, as their owner)."""
        given = self.given.setdefault(pid, {})
        out = []
        for slab in self.region.slab_range(start, pages):
            if len(out) == MAX_FDS:
                break
            inc = self.incarnation[slab]
            if given.get(slab) != inc:
                given[slab] = inc
                self.handed[slab] = True
                out.append((slab, self.fds[slab], inc))
        return out

    # ------------------------------------------------------------------ descriptors
    def grant(self, pid: int, slab: int, *, writable: bool) -> tuple[int, int] | str:
        """The descriptor (the daemon's own; the channel sends a copy) and incarnation of ``slab`` for
        ``pid``, which holds a page there; or why not."""
        if writable and self.owner[slab] != pid and self.sealed(slab):
            self.counters["slab_requests_refused"] += 1
            return "its pages were shared read-only already: nobody may map them writable any more"
        if not writable and self.owner[slab] != pid and not self.sealed(slab):
            fcntl.fcntl(self.fds[slab], fcntl.F_ADD_SEALS, SEAL_FUTURE_WRITE)
            self._publish(slab, sealed=True)
            self.counters["slabs_sealed"] += 1
        self.handed[slab] = True
        return self.fds[slab], self.incarnation[slab]

    def sealed(self, slab: int) -> bool:
        return self.region.slab_state(slab)[1]

    # ------------------------------------------------------------------ memfds
    def _fresh(self, slab: int) -> None:
        region = self.region
        length = region.slab_length(slab)
        name = f"llmos-{self.instance}-pool-{slab}"
        fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, length)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SIZE_SEALS)
            self.incarnation[slab] += 1
            region.map_slab(slab, fd, self.incarnation[slab], writable=True)
        except OSError:
            os.close(fd)
            raise
        self.fds[slab] = fd
        self.handed[slab] = False
        self._publish(slab, sealed=False)

    def _renew(self, slab: int) -> None:
        """A fresh memfd for a slab whose old one others may still map; the old pages are given back."""
        region = self.region
        offset = slab * region.slab_bytes
        try:
            region.data.madvise(mmap.MADV_REMOVE, offset, region.slab_length(slab))
        except (AttributeError, OSError, ValueError):
            pass
        old = self.fds[slab]
        self._fresh(slab)
        os.close(old)
        self.counters["slabs_renewed"] += 1

    def _publish(self, slab: int, *, sealed: bool) -> None:
        self.region.slabs[slab] = (self.incarnation[slab] << 1) | int(sealed)


def enough_descriptors(slabs: int) -> None:
    """The daemon keeps a descriptor per slab: raise the soft limit towards the hard one if needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = slabs + 1024
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
