"""Reaping the daemon's own children (the fork server; actors adopted after it died) via pidfds.

uvloop keeps SIGCHLD for itself, and a pidfd names exactly one process: each watched pid
gets a reader on the loop, which reaps it and reports its exit status.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

#: ``(pid, status)``; status None when it was reaped elsewhere (unknown).
OnExit = Callable[[int, "int | None"], None]


class ChildWatcher:
    """Calls ``on_exit(pid, status)`` once for each watched child that exits."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_exit: OnExit) -> None:
        self.loop = loop
        self.on_exit = on_exit

    def watch(self, pid: int) -> None:
        """Reap ``pid`` (our child) when it exits."""
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self.on_exit(pid, None)
            return
        self.loop.add_reader(fd, self._on_pidfd, pid, fd)

    def _on_pidfd(self, pid: int, fd: int) -> None:
        self.loop.remove_reader(fd)
        os.close(fd)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            status = None  # not ours after all (reaped elsewhere): exit status unknown
        self.on_exit(pid, status)
