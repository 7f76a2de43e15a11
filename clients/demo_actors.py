"""Actors used by the demo client: small agents that report where they run."""

from __future__ import annotations

import os
import time

import llmos_actors as llmos


class Worker(llmos.Actor):
    """Does a little CPU work and says where it ran (pid, core, nice)."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.jobs = 0

    def where(self) -> dict:
        import psutil

        me = psutil.Process()
        return {
            "name": self.actor_name,
            "role": self.role,
            "pid": os.getpid(),
            "pinned": sorted(os.sched_getaffinity(0)),
            "core": me.cpu_num(),
            "nice": me.nice(),
        }

    def work(self, n: int) -> dict:
        """Count primes below n the slow way, to keep a core busy for a moment."""
        started = time.perf_counter()
        count = sum(1 for k in range(2, n) if all(k % d for d in range(2, int(k**0.5) + 1)))
        self.jobs += 1
        return {"name": self.actor_name, "primes": count, "ms": round((time.perf_counter() - started) * 1000, 1)}

    def peek(self, a) -> dict:
        """Look at an array another process sent: it arrives as a view of shared pages."""
        return {"last": float(a[-1]), "mib": a.nbytes >> 20, "read_only": not a.flags.writeable}

    def matmul(self, size: int) -> float:
        """A torch matrix product when torch is installed (the fork server pre-imported it)."""
        try:
            import torch
        except ImportError:
            return float("nan")
        a = torch.ones(size, size)
        return float((a @ a).sum())


class Coordinator(llmos.Actor):
    """Holds refs to workers and fans a job out to them: actors calling actors."""

    def __init__(self, workers: list) -> None:
        self.workers = workers

    def fan_out(self, n: int) -> list:
        futures = [w.ask("work", n) for w in self.workers]
        return [f.result() for f in futures]
