"""Actor classes for the shared-memory page tests (imported by the daemon's actors by module path)."""

from __future__ import annotations

import os

import numpy as np
import torch

import llmos_actors as llmos


def mapping_of(addr: int) -> str:
    """The /proc/self/maps name of the mapping holding ``addr`` ("" for anonymous memory)."""
    with open("/proc/self/maps") as fh:
        for line in fh:
            parts = line.split()
            lo, hi = (int(v, 16) for v in parts[0].split("-"))
            if lo <= addr < hi:
                return " ".join(parts[5:])
    return "?"


def address(x) -> int:
    return x.data_ptr() if isinstance(x, torch.Tensor) else x.__array_interface__["data"][0]


class PageUser(llmos.Actor):
    def __init__(self) -> None:
        self.held: list = []

    def where(self, x) -> dict:
        return {
            "mapping": mapping_of(address(x)),
            "type": type(x).__name__,
            "shape": list(x.shape),
            "writable": bool(x.flags.writeable) if isinstance(x, np.ndarray) else None,
            "requires_grad": bool(x.requires_grad) if isinstance(x, torch.Tensor) else None,
        }

    def echo(self, x):
        return x

    def total(self, x) -> float:
        return float(x.sum())

    def write(self, x, value) -> float:
        x[0] = value
        return float(x[0])

    def fill(self, x, value) -> None:
        x.fill_(value) if isinstance(x, torch.Tensor) else x.fill(value)

    def hold(self, x) -> int:
        self.held.append(x)
        return os.getpid()

    def drop(self) -> None:
        self.held.clear()

    def alloc_hold(self, n: int) -> int:
        t = llmos.empty(n, torch.float32)
        t.fill_(3.0)
        self.held.append(t)
        return os.getpid()

    def make(self, n: int):
        t = llmos.empty(n, torch.float32)
        t.copy_(torch.arange(n, dtype=torch.float32))
        return t

    def ordinary(self, n: int):
        return torch.ones(n)

    def put(self, n: int, detached: bool = False):
        return self.actor_kernel.put(np.arange(n, dtype=np.float64), detached=detached)

    def get_total(self, ref) -> float:
        return float(self.actor_kernel.get(ref).sum())

    def get_value(self, ref):
        return self.actor_kernel.get(ref)

    def free(self, ref) -> None:
        self.actor_kernel.free(ref)
