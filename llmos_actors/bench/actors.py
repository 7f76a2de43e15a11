"""The actors the benchmark cases spawn.

They live in the package (not in a test folder) because the daemon imports actor
classes by ``module:Class``: whoever runs ``llmos bench`` has them installed.
Each does the same work as the peers' servers (see ``payload``).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from ..actor import Actor
from .payload import touch

#: What a benchmark daemon's fork server preloads, as a deployment lists its own (config ``preload``).
PRELOAD = ["numpy", "torch", __name__]


class Echo(Actor):
    """Replies with the request map, one field changed: the callee of every call case."""

    def __init__(self) -> None:
        self.seen = 0

    def echo(self, d: dict) -> dict:
        return touch(d)

    def ping(self) -> int:
        return 1

    def pid(self) -> int:
        return os.getpid()

    def hit(self, d: dict) -> None:
        """Target of one-way ``tell``s: decode (done by the codec), touch, count."""
        touch(d)
        self.seen += 1

    def seen_count(self) -> int:
        """How many ``hit``s arrived (a call after tells from one sender runs after all of them)."""
        return self.seen

    def store(self, value: Any) -> Any:
        """``kernel.put(value)`` here: an object another process (the benchmark) then reads."""
        return self.actor_kernel.put(value)


class AsyncEcho(Actor):
    """``echo`` as a coroutine: calls run concurrently on the actor's loop."""

    async def echo(self, d: dict) -> dict:
        return touch(d)


class Caller(Actor):
    """A client that is itself an actor: drives calls to other actors (the n:n cases).

    Refs arrive bound to the actor's synchronous kernel; ``drive`` re-binds them to
    its asyncio kernel so that thousands of calls can be in flight on its own loop.
    """

    async def drive(self, targets: list[Any], calls: int, window: int, d: dict) -> int:
        """Make ``calls`` calls to ``targets`` round-robin, ``window`` in flight at a time (futures, no tasks)."""
        kernel = self.actor_kernel_async
        refs = [kernel.ref(t.address) for t in targets]
        n = len(refs)
        done = 0
        while done < calls:
            batch = min(window, calls - done)
            await asyncio.gather(*[refs[i % n].ask("echo", d) for i in range(batch)])
            done += batch
        return done


class TensorReader(Actor):
    """Receives a tensor and reads its last element (what a consumer does at the least)."""

    def last(self, t: Any) -> float:
        return float(t[-1])


class Subscriber(Actor):
    """Counts the messages of one topic (pub/sub fan-out case): a method fed by the mailbox."""

    def __init__(self) -> None:
        self.count = 0
        self._want = -1
        self._reached: asyncio.Event | None = None

    def listen(self, topic: str) -> bool:
        self.actor_subscribe(topic, "on_message")  # live when this returns
        return True

    def on_message(self, topic: str, msg: Any) -> None:
        self.count += 1
        if self.count == self._want:
            self._reached.set()  # type: ignore[union-attr]

    def received(self) -> int:
        return self.count

    async def wait_count(self, n: int, timeout: float) -> int:
        """Return once ``n`` messages have arrived: the caller waits without polling (and
        without stealing the CPU the subscribers need, as a loop of ``received`` calls would)."""
        if self.count < n:
            self._reached = asyncio.Event()
            self._want = n
            try:
                await asyncio.wait_for(self._reached.wait(), timeout)
            finally:
                self._want = -1
        return self.count


class Busy(Actor):
    """A method that keeps the actor busy for a while (the priority case's load)."""

    def work(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    def burn(self, cpu_seconds: float) -> None:
        """Spend this much CPU time (not wall time: a member that waits for a core works longer)."""
        end = time.thread_time() + cpu_seconds
        while time.thread_time() < end:
            pass

    def ping(self) -> int:
        return 1


class FifoBusy(Busy):
    """The same actor with a plain first-in first-out mailbox (for comparison)."""

    mailbox_policy = "fifo"


class Snappy(Actor):
    """A permanent actor with a small snapshot (the recovery case)."""

    def __init__(self, n: int = 0) -> None:
        self.n = n

    def ping(self) -> int:
        return self.n

    def on_snapshot(self) -> dict:
        return {"n": self.n, "pad": "x" * 64}

    def on_restore(self, value: dict) -> None:
        self.n = value["n"]
