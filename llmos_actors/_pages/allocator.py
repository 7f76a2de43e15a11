"""First-fit allocation of runs of pages, coalescing free neighbours.

First fit from the lowest address reuses the same pages over and over, which matters:
pages that were touched before are already backed by memory and mapped in every
process, while fresh ones cost a page fault each (a 4-5x slower first write).
"""

from __future__ import annotations

import bisect


class RunAllocator:
    """Free runs of ``[start, start + length)`` pages out of ``n_pages``."""

    def __init__(self, n_pages: int) -> None:
        self.n_pages = n_pages
        self._starts: list[int] = [0] if n_pages else []
        self._length: dict[int, int] = {0: n_pages} if n_pages else {}
        self.free_pages = n_pages

    def alloc(self, pages: int, lo: int = 0, hi: int | None = None) -> int | None:
        """The start of a run of ``pages`` free pages within ``[lo, hi)`` (now taken), or None."""
        if pages <= 0:
            raise ValueError("allocate at least one page")
        hi = self.n_pages if hi is None else hi
        i = max(bisect.bisect_right(self._starts, lo) - 1, 0)
        starts = self._starts
        while i < len(starts) and starts[i] < hi:
            start = starts[i]
            end = start + self._length[start]
            at = max(start, lo)
            if min(end, hi) - at >= pages:
                self._take(i, start, end, at, pages)
                return at
            i += 1
        return None

    def _take(self, i: int, start: int, end: int, at: int, pages: int) -> None:
        """Take ``[at, at + pages)`` out of the free run ``[start, end)`` (the ``i``-th)."""
        del self._length[start]
        del self._starts[i]
        if at + pages < end:
            self._starts.insert(i, at + pages)
            self._length[at + pages] = end - at - pages
        if start < at:
            self._starts.insert(i, start)
            self._length[start] = at - start
        self.free_pages -= pages

    def is_free(self, start: int, pages: int) -> bool:
        """Whether ``[start, start + pages)`` lies inside one free run."""
        i = bisect.bisect_right(self._starts, start) - 1
        return i >= 0 and self._starts[i] + self._length[self._starts[i]] >= start + pages

    def free(self, start: int, pages: int) -> None:
        """Give back a run taken by ``alloc``; merges with free neighbours."""
        if start < 0 or pages <= 0 or start + pages > self.n_pages:
            raise ValueError(f"run {start}+{pages} is outside the pool")
        i = bisect.bisect_left(self._starts, start)
        if i < len(self._starts) and self._starts[i] < start + pages:
            raise ValueError(f"run {start}+{pages} overlaps a free run")
        if i > 0:
            prev = self._starts[i - 1]
            if prev + self._length[prev] > start:
                raise ValueError(f"run {start}+{pages} overlaps a free run")
        self.free_pages += pages
        nxt = self._starts[i] if i < len(self._starts) else None
        if nxt == start + pages:
            pages += self._length.pop(nxt)
            del self._starts[i]
        if i > 0:
            prev = self._starts[i - 1]
            if prev + self._length[prev] == start:
                self._length[prev] += pages
                return
        self._starts.insert(i, start)
        self._length[start] = pages

    def largest(self) -> int:
        """Length of the largest free run."""
        return max(self._length.values(), default=0)

    def runs(self) -> list[tuple[int, int]]:
        return [(s, self._length[s]) for s in self._starts]
