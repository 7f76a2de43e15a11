"""Actor classes for the supervision, monitor, concurrency and sync-object tests (issue 5)."""

from __future__ import annotations

import os
import signal
import threading

import llmos_actors as llmos

from gates import Holds, hold, hold_async


def _append(path: str, line: str) -> None:
    if path:
        with open(path, "a") as fh:
            fh.write(line + "\n")


class Worker(Holds, llmos.Actor):
    """Records its starts and stops (in a shared file) so tests can check their order."""

    def __init__(self, tag: str = "", journal: str = "", start: int = 0) -> None:
        self.tag = tag
        self.journal = journal
        self.n = start

    def on_start(self) -> None:
        _append(self.journal, f"start {self.tag}")

    def on_stop(self) -> None:
        _append(self.journal, f"stop {self.tag}")

    def info(self) -> dict:
        return {
            "tag": self.tag,
            "pid": os.getpid(),
            "n": self.n,
            "name": self.actor_name,
            "id": self.actor_id,
            "cpus": sorted(os.sched_getaffinity(0)),
            "nice": os.getpriority(os.PRIO_PROCESS, 0),
        }

    def incr(self) -> int:
        self.n += 1
        return self.n

    def echo(self, x):
        return [self.actor_id, x]

    def crash(self, code: int = 1) -> None:
        os._exit(code)

    def die(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


class FailsAfterFirst(llmos.Actor):
    """Starts once; later incarnations fail in __init__ while ``marker`` exists."""

    def __init__(self, marker: str) -> None:
        if os.path.exists(marker):
            raise RuntimeError("marker present: refusing to start")
        open(marker, "w").close()

    def die(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


class Trapper(llmos.Actor):
    """Traps exits: a linked actor's death arrives as ``on_exit``."""

    trap_exits = True

    def __init__(self) -> None:
        self.exits: list = []

    def on_exit(self, notice) -> None:
        self.exits.append([notice.actor, notice.exitcode, notice.signal, notice.reason])

    def link_to(self, other) -> None:
        self.actor_link(other)

    def seen(self) -> list:
        return self.exits

    def pid(self) -> int:
        return os.getpid()


class Watcher(llmos.Actor):
    """Monitors others; deaths arrive through its mailbox as ``on_monitor_down``."""

    def __init__(self) -> None:
        self.downs: list = []

    def watch(self, target) -> int:
        return self.actor_monitor(target)

    def on_monitor_down(self, notice) -> None:
        self.downs.append([notice.name, notice.signal, notice.restarting, threading.current_thread().name])

    def seen(self) -> list:
        return self.downs

    def link_to(self, other) -> None:
        self.actor_link(other)

    def pid(self) -> int:
        return os.getpid()


class Pooled(llmos.Actor):
    """Sync methods on a pool of 4 threads."""

    max_concurrency = 4

    def work(self, gate: str, timeout: float = 30.0) -> str:
        """Runs until the test opens ``gate``; the pool thread that ran it."""
        hold(gate, timeout)
        return threading.current_thread().name

    def ping(self) -> str:
        return "pong"


class AsyncBusy(llmos.Actor):
    """At most 2 coroutines at once."""

    max_async = 2

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0

    async def work(self, gate: str, timeout: float = 30.0) -> int:
        """Runs until the test opens ``gate``; the most coroutines seen running at once."""
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await hold_async(gate, timeout)
        finally:
            self.running -= 1
        return self.peak

    async def peak_seen(self) -> int:
        return self.peak


class LockUser(llmos.Actor):
    """Uses kernel sync objects from inside an actor."""

    def grab(self, name: str) -> bool:
        return self.actor_kernel.mutex(name).acquire(timeout=10)

    def release(self, name: str) -> None:
        self.actor_kernel.mutex(name).release()

    def want(self, name: str) -> str:
        """Wait for ``name``; "deadlock: ..." if waiting would close a cycle."""
        try:
            self.actor_kernel.mutex(name).acquire(timeout=20)
            return "got"
        except llmos.DeadlockError as exc:
            return f"deadlock: {exc}"

    async def async_grab(self, name: str) -> bool:
        m = self.actor_kernel_async.mutex(name)
        return await m.acquire(timeout=10)

    def wait_event(self, name: str, timeout: float) -> bool:
        return self.actor_kernel.event(name).wait(timeout)

    def pid(self) -> int:
        return os.getpid()
