"""Actor classes used by the tests (imported by the daemon's actors by module path)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import threading
import time

import llmos_actors as llmos

from gates import Holds, hold

log = logging.getLogger("tests.actors")


class Counter(llmos.Actor):
    def __init__(self, start: int = 0) -> None:
        self.n = start

    def incr(self, k: int = 1) -> int:
        self.n += k
        return self.n

    def get(self) -> int:
        return self.n

    def echo(self, x):
        return x

    def echo_kwargs(self, *args, **kwargs):
        return [list(args), kwargs]


class Probe(Holds, llmos.Actor):
    """Reports where and how it runs."""

    def __init__(self, marker: str = "") -> None:
        self.marker = marker
        self.started = False
        self.stopped_file = None

    def on_start(self) -> None:
        self.started = True
        print(f"probe {self.marker} started", flush=True)

    def on_stop(self) -> None:
        print(f"probe {self.marker} stopping", flush=True)
        if self.stopped_file:
            with open(self.stopped_file, "w") as fh:
                fh.write("stopped")

    def set_stopped_file(self, path: str) -> None:
        self.stopped_file = path

    def where(self) -> dict:
        return {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "cpus": sorted(os.sched_getaffinity(0)),
            "nice": os.getpriority(os.PRIO_PROCESS, 0),
            "thread": threading.current_thread().name,
            "is_main_thread": threading.current_thread() is threading.main_thread(),
            "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "pgid": os.getpgid(0),
            "started": self.started,
            "name": self.actor_name,
            "id": self.actor_id,
            "torch_loaded": "torch" in sys.modules,
            "gc_threshold": gc.get_threshold()[0],
        }

    async def where_async(self) -> dict:
        loop = asyncio.get_running_loop()
        return {"is_main_thread": threading.current_thread() is threading.main_thread(), "loop": type(loop).__module__}

    def say(self, text: str, stream: str = "out") -> None:
        print(text, file=sys.stdout if stream == "out" else sys.stderr, flush=True)

    def log_record(self, text: str) -> None:
        log.warning(text)

    def spam(self, lines: int, width: int = 100) -> None:
        for i in range(lines):
            print(f"{i:08d} " + "x" * width, flush=False)
        sys.stdout.flush()

    def raise_value_error(self, message: str) -> None:
        raise ValueError(message)

    def exit_now(self, code: int) -> None:
        sys.stdout.flush()
        os._exit(code)

    def kill_self(self, signum: int = signal.SIGKILL) -> None:
        os.kill(os.getpid(), signum)

    def work(self, seconds: float) -> float:
        """A consumer's cost per message (a rate, never how a test orders its steps)."""
        time.sleep(seconds)
        return seconds

    def two_args(self, a, b):
        return a + b

    def _private(self) -> str:
        return "secret"

    def later(self, value):
        """Reply later: return an awaitable."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        loop.call_later(0.05, fut.set_result, value)
        return fut

    def make_array(self, n: int):
        import numpy as np

        return np.arange(n, dtype=np.float32)

    def make_tensor(self, n: int):
        import torch

        return torch.arange(n, dtype=torch.float32)

    def sum_array(self, arr) -> float:
        return float(arr.sum())


class Relay(llmos.Actor):
    """Holds refs to other actors and calls them (actor-to-actor)."""

    def __init__(self, target=None) -> None:
        self.target = target

    def call_target(self, method: str, *args):
        return self.target.call(method, *args)

    def call_ref(self, ref, method: str, *args):
        return ref.call(method, *args)

    async def call_ref_async(self, ref, method: str, *args):
        return await ref.ask(method, *args)

    def spawn_child(self, start: int):
        child = self.actor_kernel.spawn(Counter, start)
        return child

    def my_ref(self):
        return self.actor_ref

    def hand_child(self, other, start: int):
        """Spawn a child here and have ``other`` (maybe on another node) call it through its ref."""
        child = self.actor_kernel.spawn(Counter, start)
        return other.call("call_ref", child, "incr")


class FailsInInit(llmos.Actor):
    def __init__(self, message: str = "bad config") -> None:
        raise ValueError(message)


class ExitsInInit(llmos.Actor):
    def __init__(self) -> None:
        print("about to exit in __init__", flush=True)
        os._exit(7)


class CrashesFromThread(llmos.Actor):
    """``actor_crash`` from a background thread, as a device whose load fails does."""

    async def wait_then_crash(self, message: str) -> None:
        """Crash from a thread while this call waits: its caller gets ``ActorDiedError`` naming ``message``."""
        threading.Thread(target=self.actor_crash, args=(RuntimeError(message),)).start()
        await asyncio.Future()

    def ping(self) -> str:
        return "pong"


class IgnoresSigterm(llmos.Actor):
    def on_start(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def ping(self) -> str:
        return "pong"


class SlowStop(llmos.Actor):
    def busy(self, seconds: float, started_file: str = "") -> None:
        if started_file:
            with open(started_file, "w") as fh:
                fh.write("busy")
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass


class NotAnActor:
    """Plain classes work too (no actor_* attributes)."""

    def __init__(self, x: int = 1) -> None:
        self.x = x

    def value(self) -> int:
        return self.x


class Streamer(llmos.Actor):
    """Generator methods stream their items."""

    def __init__(self) -> None:
        self.closed = []
        self.produced = 0

    def count(self, n: int, fail_at: int = -1):
        try:
            for i in range(n):
                if i == fail_at:
                    raise RuntimeError(f"failed at {i}")
                self.produced += 1
                yield i
        finally:
            self.closed.append(n)

    async def acount(self, n: int):
        for i in range(n):
            yield i

    def endless(self):
        try:
            i = 0
            while True:
                self.produced += 1
                yield i
                i += 1
        finally:
            self.closed.append("endless")

    def state(self) -> dict:
        return {"closed": self.closed, "produced": self.produced}


class Listener(Holds, llmos.Actor):
    """Receives topic messages declaratively and on demand."""

    def __init__(self) -> None:
        self.got = []
        self.count = 0

    @llmos.subscribe("news.")
    def on_news(self, topic, msg) -> None:
        self.got.append([topic, msg])

    @llmos.subscribe("bench.")
    def on_bench(self, topic, msg) -> None:
        self.count += 1

    @llmos.subscribe("sys.actor.")
    def on_system(self, topic, msg) -> None:
        self.got.append([topic, msg.get("name")])

    def listen(self, prefix: str) -> None:
        self.actor_subscribe(prefix, "on_extra")

    def on_extra(self, topic, msg) -> None:
        self.got.append(["extra", topic, msg])

    def received(self) -> list:
        return self.got

    def counted(self) -> int:
        return self.count


class SlowListener(llmos.Actor):
    """Spends half a millisecond of CPU on each topic message (urgent calls must not wait out a batch)."""

    def __init__(self) -> None:
        self.count = 0

    @llmos.subscribe("slow.")
    def on_slow(self, topic, msg) -> None:
        end = time.perf_counter() + 0.0005
        while time.perf_counter() < end:
            pass
        self.count += 1

    def counted(self) -> int:
        return self.count


class Burner(llmos.Actor):
    """Keeps a core busy (for the scheduler's tests)."""

    def __init__(self) -> None:
        self.running = False

    async def burn(self, seconds: float) -> float:
        """Spin in short slices so the actor stays responsive to calls."""
        end = time.monotonic() + seconds
        spins = 0
        while time.monotonic() < end:
            stop = time.monotonic() + 0.02
            while time.monotonic() < stop:
                spins += 1
            await asyncio.sleep(0)
        return spins

    def where(self) -> dict:
        return {"pid": os.getpid(), "cpus": sorted(os.sched_getaffinity(0)), "nice": os.getpriority(os.PRIO_PROCESS, 0)}


class Worker(llmos.Actor):
    """A pool member."""

    def __init__(self, label: str = "") -> None:
        self.label = label

    def work(self, gate: str = "", timeout: float = 30.0) -> dict:
        """Who served the call; with a ``gate``, once the test opens it."""
        if gate:
            hold(gate, timeout)
        return {"pid": os.getpid(), "name": self.actor_name, "label": self.label}

    def fail(self) -> None:
        raise RuntimeError("member failed")


class Recorder(Holds, llmos.Actor):
    """Records the order in which its methods run (for scheduling tests)."""

    def __init__(self) -> None:
        self.log = []

    def record(self, tag) -> int:
        self.log.append(tag)
        return len(self.log)

    def order(self) -> list:
        return self.log

    def clear(self) -> None:
        self.log = []

    def generate(self, tag: str, n: int, item_seconds: float = 0.002):
        for i in range(n):
            end = time.monotonic() + item_seconds
            while time.monotonic() < end:
                pass
            self.log.append(f"{tag}{i}")
            yield i


class FifoRecorder(Recorder):
    mailbox_policy = "fifo"
