"""Where a preempted sequence's KV blocks wait: pool pages outside the budget, then disk.

A swapped-out sequence's blocks are copied into a tensor of their own (``alloc``: pool pages
for the device actor), so its budget blocks can serve others. Past ``limit_bytes`` of such
tensors, the least recently swapped are written to ``spill_dir`` and their pages let go; a
swap-in reads a spilled one back. The copy rates are measured, so the engine can weigh a swap
against recomputing the prefix.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


class SwapStore:
    """Swapped-out KV data by key (see the module docstring)."""

    def __init__(self, limit_bytes: int, alloc: Callable[..., torch.Tensor], spill_dir: str | None = None) -> None:
        self.limit_bytes = limit_bytes
        self.alloc = alloc
        self._spill_dir = spill_dir
        self._owned_dir: tempfile.TemporaryDirectory | None = None
        self.entries: OrderedDict[int, Any] = OrderedDict()  # key -> tensor, or (path, shape, dtype)
        self.resident_bytes = 0
        self.spills = 0
        self.spilled_bytes = 0
        #: Seconds per byte, measured (exponential average over swaps; a guess before the first).
        self.out_rate = 1e-9
        self.in_rate = 1e-9

    def __len__(self) -> int:
        return len(self.entries)

    def spill_dir(self) -> str:
        if self._spill_dir is None:
            self._owned_dir = tempfile.TemporaryDirectory(prefix="llmos-kv-swap-")
            self._spill_dir = self._owned_dir.name
        os.makedirs(self._spill_dir, exist_ok=True)
        return self._spill_dir

    def put(self, key: int, data: torch.Tensor) -> None:
        """Keep a copy of ``data`` (a CPU or GPU tensor) under ``key``."""
        start = time.perf_counter()
        copy = self.alloc(tuple(data.shape), data.dtype)
        copy.copy_(data)
        nbytes = copy.numel() * copy.element_size()
        self._measure("out_rate", time.perf_counter() - start, nbytes)
        self.entries[key] = copy
        self.resident_bytes += nbytes
        while self.resident_bytes > self.limit_bytes:
            if not self._spill_oldest():
                break

    def take(self, key: int) -> torch.Tensor:
        """The data kept under ``key`` (read back from disk if spilled); forgets it."""
        entry = self.entries.pop(key)
        if isinstance(entry, torch.Tensor):
            self.resident_bytes -= entry.numel() * entry.element_size()
            return entry
        path, shape, dtype = entry
        start = time.perf_counter()
        raw = np.fromfile(path, dtype=np.uint8)
        os.unlink(path)
        data = torch.from_numpy(raw).view(dtype).view(shape)
        self._measure("in_rate", time.perf_counter() - start, raw.nbytes)
        return data

    def drop(self, key: int) -> None:
        entry = self.entries.pop(key, None)
        if isinstance(entry, torch.Tensor):
            self.resident_bytes -= entry.numel() * entry.element_size()
        elif entry is not None:
            os.unlink(entry[0])

    def close(self) -> None:
        for key in list(self.entries):
            self.drop(key)
        if self._owned_dir is not None:
            self._owned_dir.cleanup()
            self._owned_dir = None

    def cost(self, nbytes: int) -> float:
        """Seconds a swap out and back in of ``nbytes`` is expected to take."""
        return nbytes * (self.out_rate + self.in_rate)

    def _spill_oldest(self) -> bool:
        found = next(((k, e) for k, e in self.entries.items() if isinstance(e, torch.Tensor)), None)
        if found is None:
            return False
        key, entry = found
        path = os.path.join(self.spill_dir(), f"seq-{key}.kv")
        flat = entry.detach().cpu().contiguous().view(torch.uint8).numpy()
        flat.tofile(path)
        nbytes = flat.nbytes
        self.entries[key] = (path, tuple(entry.shape), entry.dtype)
        self.resident_bytes -= nbytes
        self.spills += 1
        self.spilled_bytes += nbytes
        return True

    def _measure(self, attr: str, seconds: float, nbytes: int) -> None:
        if nbytes:
            rate = seconds / nbytes
            setattr(self, attr, 0.7 * getattr(self, attr) + 0.3 * rate)
