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

    def alloc(self, pages: int) -> int | None:
        """The start of a run of ``pages`` free pages (now taken), or None."""
        if pages <= 0:
            raise ValueError("allocate at least one page")
        for i, start in enumerate(self._starts):
            length = self._length[start]
            if length >= pages:
                del self._length[start]
                if length == pages:
                    del self._starts[i]
                else:
                    self._starts[i] = start + pages
                    self._length[start + pages] = length - pages
                self.free_pages -= pages
                return start
        return None

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
