"""Two processes taking turns on one lock: a kernel mutex, or ``multiprocessing.Lock``.

The ``mutex_cycles_2proc`` case and its peer. Each contender is a child process
(``spawn``: no threads, no zmq context inherited) that waits on a pipe for "do
``k`` acquire+release cycles", does them, and answers; a round sends that to
both at once and waits for both, so the two contend for the whole round.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

from .workload import Workload

MP = multiprocessing.get_context("spawn")
#: Seconds a contender may take to start, or to answer.
TIMEOUT = 60.0


def contender(conn: Any, runtime_dir: str | None, name: str, lock: Any) -> None:
    """Child process: a kernel mutex ``name`` (``runtime_dir`` given) or ``lock``; cycles on request."""
    kernel = None
    if runtime_dir is not None:
        from ..client import connect

        kernel = connect(runtime_dir)
        lock = kernel.mutex(name)
    try:
        lock.acquire()  # warm: the connection is made, the daemon knows this holder
        lock.release()
        conn.send("ready")
        while (k := conn.recv()) is not None:
            for _ in range(k):
                lock.acquire()
                lock.release()
            conn.send(k)
    finally:
        if kernel is not None:
            kernel.close()


class LockPair(Workload):
    """Rounds of ``cycles`` acquire+release per contender, both contending (``ops``: all cycles).

    Args:
        runtime_dir: the daemon whose kernel mutex to use; None: a ``multiprocessing.Lock``.
    """

    def __init__(self, runtime_dir: str | None, cycles: int, note: str) -> None:
        self.cycles = cycles
        self.ops = 2 * cycles
        self.note = note
        self.name = f"bench-mutex-{os.getpid()}-{id(self) & 0xFFFFFF:x}"
        lock = None if runtime_dir is not None else MP.Lock()
        self.conns: list[Any] = []
        self.procs: list[Any] = []
        try:
            for _ in range(2):
                here, there = MP.Pipe()
                proc = MP.Process(target=contender, args=(there, runtime_dir, self.name, lock), daemon=True)
                proc.start()
                there.close()
                self.conns.append(here)
                self.procs.append(proc)
            for conn in self.conns:
                self._answer(conn, "a lock contender did not start")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _answer(conn: Any, what: str) -> Any:
        if not conn.poll(TIMEOUT):
            raise TimeoutError(f"{what} within {TIMEOUT:.0f} s")
        return conn.recv()

    def round(self) -> None:
        for conn in self.conns:
            conn.send(self.cycles)
        for conn in self.conns:
            self._answer(conn, "a lock contender did not finish its cycles")

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(10)
        for conn in self.conns:
            conn.close()
        self.conns, self.procs = [], []
