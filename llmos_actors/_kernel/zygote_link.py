"""The daemon's side of the fork server: start it, ask it to fork, hear about exits."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

import msgpack

from ..errors import LlmosError
from .zygote import send_frame

log = logging.getLogger(__name__)

_LEN = struct.Struct(">I")


class ZygoteLink:
    """Owns the fork server process and its socket.

    Args:
        loop: the daemon's loop (frames are read there).
        config: a plain-dict copy of the daemon config, sent to the fork server.
        lifeline: read end of the daemon's lifeline pipe, inherited by the fork server and actors.
        on_reaped: called with ``(pid, waitpid status)`` for every actor that exits.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        config: dict,
        lifeline: int,
        on_reaped: Callable[[int, int], None],
    ) -> None:
        self.loop = loop
        self.config = config
        self.lifeline = lifeline
        self.on_reaped = on_reaped
        self.pid: int | None = None
        self.preloaded: list[str] = []
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._forks: dict[str, asyncio.Future] = {}
        self._ready: asyncio.Future | None = None
        self._starting: asyncio.Task | None = None
        self._gone = asyncio.Event()
        self._stopping = False

    @property
    def alive(self) -> bool:
        return self._sock is not None

    async def start(self, timeout: float = 120.0) -> None:
        """Start the fork server and wait until its modules are imported."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for s in (ours, theirs):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        os.set_inheritable(theirs.fileno(), True)
        os.set_inheritable(self.lifeline, True)
        argv = [
            sys.executable,
            "-m",
            "llmos_actors._kernel.zygote",
            str(theirs.fileno()),
            str(self.lifeline),
            str(os.getpid()),
        ]
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)  # only the daemon talks to systemd
        try:
            self.pid = os.posix_spawn(sys.executable, argv, env, setpgroup=0)  # Ctrl-C is the daemon's to handle
        finally:
            theirs.close()
            os.set_inheritable(self.lifeline, False)
        self._sock = ours
        self._gone.clear()
        self._buf.clear()
        self._ready = self.loop.create_future()
        self.loop.add_reader(ours.fileno(), self._on_readable)
        send_frame(ours, {"op": "init", "config": self.config})
        try:
            info = await asyncio.wait_for(self._ready, timeout)
        except asyncio.TimeoutError as exc:
            raise LlmosError(f"the fork server did not start within {timeout} s") from exc
        self.preloaded = info.get("preloaded", [])
        log.info("fork server %s ready (preloaded: %s)", self.pid, ", ".join(self.preloaded) or "nothing")

    async def ensure_started(self) -> None:
        """Start (or restart, after a crash) the fork server; concurrent callers share one start."""
        if self.alive:
            return
        if self._starting is None or self._starting.done():
            self._starting = self.loop.create_task(self.start())
        await asyncio.shield(self._starting)

    async def fork(self, actor_id: str, spec: dict, fds: list[int]) -> int:
        """Fork an actor; returns its pid. The fds are given to the child (and closed here)."""
        fut = self.loop.create_future()
        try:
            await self.ensure_started()
            assert self._sock is not None
            self._forks[actor_id] = fut
            send_frame(self._sock, {"op": "spawn", "id": actor_id, "spec": spec}, fds)
        except OSError as exc:
            self._forks.pop(actor_id, None)
            raise LlmosError(f"could not reach the fork server: {exc}") from exc
        except BaseException:
            self._forks.pop(actor_id, None)
            raise
        finally:
            for fd in fds:
                os.close(fd)
        return await fut

    # ------------------------------------------------------------------ reading
    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            data = sock.recv(1 << 16, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost("the fork server closed its socket")
            return
        buf = self._buf
        buf += data
        while len(buf) >= 4:
            (size,) = _LEN.unpack_from(buf)
            if len(buf) < 4 + size:
                break
            msg = msgpack.unpackb(bytes(buf[4 : 4 + size]), strict_map_key=False)
            del buf[: 4 + size]
            self._handle(msg)

    def _handle(self, msg: dict) -> None:
        op = msg.get("op")
        if op == "ready":
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(msg)
        elif op == "forked":
            fut = self._forks.pop(msg["id"], None)
            if fut is not None and not fut.done():
                fut.set_result(msg["pid"])
        elif op == "fork_failed":
            fut = self._forks.pop(msg["id"], None)
            if fut is not None and not fut.done():
                fut.set_exception(LlmosError(msg.get("error", "fork failed")))
        elif op == "reaped":
            self.on_reaped(msg["pid"], msg["status"])

    def _lost(self, why: str) -> None:
        if self._sock is None:
            return
        self.loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None
        err = LlmosError(f"fork server lost: {why}")
        for fut in self._forks.values():
            if not fut.done():
                fut.set_exception(err)
        self._forks.clear()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(err)

    def exited(self, status: int) -> None:
        """The daemon reaped the fork server (it is our child)."""
        if not self._stopping:
            log.warning("fork server %s exited (status %s); it restarts on the next spawn", self.pid, status)
        self.pid = None
        self._gone.set()
        self._lost("it exited")

    async def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        if self._sock is not None:
            try:
                send_frame(self._sock, {"op": "exit"})
            except OSError:
                pass
        pid = self.pid
        self._lost("daemon stopping")
        if pid is None:
            return
        try:
            await asyncio.wait_for(self._gone.wait(), timeout)
            return
        except asyncio.TimeoutError:
            pass
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def describe(self) -> dict[str, Any]:
        return {"pid": self.pid, "preloaded": self.preloaded, "alive": self.alive}
