"""A single-producer, single-consumer byte ring in shared memory: one per process, for its notes.

Notes (a handle was sent, taken, released) are most of what a process tells the page
table, several per transfer. Written to a socket, each one wakes the daemon, and on a
small machine that wake-up (an inter-processor interrupt, a context switch) costs more
than the rest of a transfer. So each process writes its notes into its own ring (a memfd
the daemon created for it) without any system call, and the daemon drains the rings on a
timer, before it answers that process's requests, and when the process dies: the ring
outlives its writer, so nothing a dead process said is lost.

    [head u64][tail u64] .. 64 bytes .. [data: capacity bytes]

``tail`` is the producer's (bytes written), ``head`` the daemon's (bytes read); both only
grow. The producer copies a whole frame in, then publishes it by storing ``tail`` (an
aligned 8-byte store). Between the two, and between the consumer's load of ``tail`` and its
reads of the data, a release/acquire pair on a private lock acts as a memory barrier (x86
keeps these orders anyway; weaker CPUs such as arm64 need it).
"""

from __future__ import annotations

import mmap
import threading
from typing import Any

HEADER = 64
#: Ring data bytes per process (notes are ~20-40 bytes; the daemon drains every few ms).
CAPACITY = 256 * 1024


class Ring:
    """Either end of a ring over ``mm`` (an mmap of ``HEADER + capacity`` bytes)."""

    def __init__(self, mm: mmap.mmap) -> None:
        self.mm = mm
        self.cap = len(mm) - HEADER
        whole = memoryview(mm)
        self.idx: Any = whole[:16].cast("Q")  # [head, tail]: plain 8-byte loads and stores
        self.data = whole[HEADER:]
        whole.release()
        self._fence = threading.Lock()
        self._fence.acquire()

    def _barrier(self) -> None:
        fence = self._fence
        fence.release()
        fence.acquire()

    @staticmethod
    def size(capacity: int = CAPACITY) -> int:
        return HEADER + capacity

    def write(self, frame: bytes) -> bool:
        """Append one frame; False if it does not fit (the caller uses the socket instead)."""
        idx = self.idx
        head, tail = idx[0], idx[1]
        n = len(frame)
        cap = self.cap
        if cap - (tail - head) < n:
            return False
        pos = tail % cap
        first = min(n, cap - pos)
        data = self.data
        data[pos : pos + first] = frame[:first]
        if first < n:
            data[: n - first] = frame[first:]
        self._barrier()  # the frame is in memory before its tail says so
        idx[1] = tail + n  # publish
        return True

    def pending(self) -> bool:
        idx = self.idx
        return idx[1] != idx[0]

    def read(self) -> bytes:
        """Everything written since the last read (the daemon's side).

        Raises:
            ValueError: the indexes are impossible (the process scribbled over its ring).
        """
        idx = self.idx
        head, tail = idx[0], idx[1]
        if tail == head:
            return b""
        n = tail - head
        cap = self.cap
        if n < 0 or n > cap:
            raise ValueError(f"corrupt note ring (head {head}, tail {tail})")
        self._barrier()  # read the data only after the tail that published it
        pos = head % cap
        first = min(n, cap - pos)
        out = bytes(self.data[pos : pos + first])
        if first < n:
            out += bytes(self.data[: n - first])
        idx[0] = tail
        return out

    def close(self) -> None:
        self.idx.release()
        self.data.release()
        try:
            self.mm.close()
        except BufferError:
            pass
