"""The fork server: a single-threaded process with heavy modules imported, forking each actor.

The daemon has threads and a ZeroMQ context, so it never forks actors itself.
This process is started by the daemon (``python -m llmos_actors._kernel.zygote``),
imports what actors will need (torch, numpy, the actor runtime), then loops:

    daemon -> zygote   {"op": "spawn", "id", "spec"} + the actor's stdout/stderr pipe ends (SCM_RIGHTS)
    zygote -> daemon   {"op": "forked", "id", "pid"} | {"op": "fork_failed", "id", "error"}
    zygote -> daemon   {"op": "reaped", "pid", "status"} when a child exits (waitpid status)

Frames on the socketpair are a 4-byte big-endian length then a msgpack map.
It never creates a ZeroMQ context. It dies with the daemon (PR_SET_PDEATHSIG,
and EOF on its socket).
"""

from __future__ import annotations

import gc
import importlib
import os
import select
import signal
import socket
import struct
import sys
import time
import traceback
from typing import Any

import msgpack

from . import linux

_LEN = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024


def send_frame(sock: socket.socket, obj: Any, fds: list[int] | None = None) -> None:
    """Send one frame (blocking); ``fds`` travel with its first bytes."""
    data = msgpack.packb(obj)
    data = _LEN.pack(len(data)) + data
    if fds:
        sent = sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))])
        data = data[sent:]
    if data:
        sock.sendall(data)


def recv_frame(sock: socket.socket) -> tuple[Any, list[int]] | None:
    """Receive one frame (blocking) and any fds that came with it; None at EOF."""
    fds: list[int] = []
    header = b""
    while len(header) < 4:
        data, ancdata, _flags, _addr = sock.recvmsg(4 - len(header), socket.CMSG_SPACE(16 * 4))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % 4
                fds.extend(struct.unpack(f"{usable // 4}i", payload[:usable]))
        if not data:
            for fd in fds:
                os.close(fd)
            return None
        header += data
    (size,) = _LEN.unpack(header)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes from the daemon exceeds {MAX_FRAME}")
    body = bytearray()
    while len(body) < size:
        chunk = sock.recv(size - len(body))
        if not chunk:
            return None
        body += chunk
    return msgpack.unpackb(bytes(body), strict_map_key=False), fds


class Zygote:
    """The fork server's loop. See the module docstring for the protocol."""

    def __init__(self, sock: socket.socket, lifeline: int) -> None:
        self.sock = sock
        self.lifeline = lifeline
        self.config: dict = {}
        self.children: set[int] = set()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    def preload(self, modules: list[str]) -> list[str]:
        loaded = []
        for name in modules:
            try:
                importlib.import_module(name)
                loaded.append(name)
            except Exception:
                pass
        # The actor runtime itself, so children start without importing it.
        importlib.import_module("llmos_actors._runtime.actor_main")
        # Everything imported so far lives as long as the process: keep it out of the cyclic
        # GC's sight. Actors then neither pay to traverse torch's ~150k objects on every full
        # collection nor touch (and so copy) those pages after fork.
        gc.collect()
        gc.freeze()
        return loaded

    def run(self) -> int:
        first = recv_frame(self.sock)
        if first is None or first[0].get("op") != "init":
            return 2
        self.config = first[0]["config"]
        loaded = self.preload(list(self.config.get("preload") or ()))
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides when we stop
        send_frame(self.sock, {"op": "ready", "pid": os.getpid(), "preloaded": loaded})
        while True:
            try:
                readable, _, _ = select.select([self.sock.fileno(), self._wake_r, self.lifeline], [], [])
            except InterruptedError:
                continue
            if self._wake_r in readable:
                os.read(self._wake_r, 4096)
            self.reap()
            if self.lifeline in readable and not os.read(self.lifeline, 1):
                return 0  # the daemon is gone
            if self.sock.fileno() in readable:
                frame = recv_frame(self.sock)
                if frame is None:
                    return 0
                msg, fds = frame
                if msg.get("op") == "spawn":
                    self.spawn(msg, fds)
                elif msg.get("op") == "exit":
                    return 0
                else:
                    for fd in fds:
                        os.close(fd)

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            send_frame(self.sock, {"op": "reaped", "pid": pid, "status": status})

    def spawn(self, msg: dict, fds: list[int]) -> None:
        actor_id = msg.get("id", "")
        spec = msg.get("spec") or {}
        # Signals blocked across fork: the child resets handlers before it unblocks.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT})
        try:
            pid = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
            for fd in fds:
                os.close(fd)
            send_frame(self.sock, {"op": "fork_failed", "id": actor_id, "error": f"fork failed: {exc}"})
            return
        if pid == 0:  # the actor
            code = 1
            try:
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                self.sock.close()
                os.close(self._wake_r)
                os.close(self._wake_w)
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
                from .._runtime.actor_main import run_actor

                code = run_actor(actor_id, spec, self.config, self.lifeline, fds)
            except BaseException:
                try:
                    traceback.print_exc()
                except Exception:
                    pass
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        for fd in fds:
            os.close(fd)
        self.children.add(pid)
        try:
            os.setpgid(pid, pid)  # also done by the child: no race on who goes first
        except OSError:
            pass
        send_frame(self.sock, {"op": "forked", "id": actor_id, "pid": pid, "t": time.monotonic()})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sock_fd, lifeline, parent = int(argv[0]), int(argv[1]), int(argv[2])
    linux.set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent:  # the daemon died before we armed the death signal
        return 0
    sock = socket.socket(fileno=sock_fd)
    sock.setblocking(True)
    try:
        return Zygote(sock, lifeline).run()
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
