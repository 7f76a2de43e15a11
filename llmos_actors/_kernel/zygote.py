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
from collections.abc import Callable
from typing import Any

import msgpack

from ..config import apply_gc_threshold
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
        #: Warm (pre-forked) actor processes waiting for an assignment: (pid, socket to them).
        self.warm: list[tuple[int, socket.socket]] = []
        self.prefork = 0
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
        # The actor runtime itself, so children start without importing it; and uvloop, which
        # the runtime imports only when it makes its loop: 3-14 ms of every spawn otherwise.
        importlib.import_module("llmos_actors._runtime.actor_main")
        try:
            importlib.import_module("uvloop")
        except ImportError:  # pragma: no cover - a dependency off Windows
            pass
        # Everything imported so far lives as long as the process: keep it out of the cyclic
        # GC's sight. Actors then neither pay to traverse torch's ~150k objects on every full
        # collection nor touch (and so copy) those pages after fork.
        gc.collect()
        gc.freeze()
        apply_gc_threshold(int(self.config.get("gc_threshold") or 0))  # actors inherit it
        return loaded

    def run(self) -> int:
        try:
            return self._serve()
        finally:
            self.retire_warm()

    def retire_warm(self, timeout: float = 5.0) -> None:
        """Let the warm processes go (they see EOF and exit) and wait for them, so none outlives us."""
        pids = [pid for pid, _ in self.warm]
        for _, sock in self.warm:
            sock.close()
        self.warm.clear()
        deadline = time.monotonic() + timeout
        for pid in pids:
            while time.monotonic() < deadline:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                select.select([], [], [], 0.005)  # a few ms for it to notice the EOF
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _serve(self) -> int:
        first = recv_frame(self.sock)
        if first is None or first[0].get("op") != "init":
            return 2
        self.config = first[0]["config"]
        self.prefork = max(0, int(self.config.get("prefork") or 0))
        loaded = self.preload(list(self.config.get("preload") or ()))
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides when we stop
        send_frame(self.sock, {"op": "ready", "pid": os.getpid(), "preloaded": loaded})
        watched = [self.sock.fileno(), self._wake_r, self.lifeline]
        while True:
            # Refill the warm pool only while no request waits: a burst of spawns is served
            # first (warm, then cold forks), the pool catches up afterwards.
            idle_wait = 0.0 if len(self.warm) < self.prefork else None
            try:
                readable, _, _ = select.select(watched, [], [], idle_wait)
            except InterruptedError:
                continue
            if not readable:
                self.fork_warm()
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
            for entry in [w for w in self.warm if w[0] == pid]:  # a warm process died unused
                self.warm.remove(entry)
                entry[1].close()
            send_frame(self.sock, {"op": "reaped", "pid": pid, "status": status})

    # ------------------------------------------------------------------ forking
    def _fork(self, child: Callable[[], int]) -> int:
        """Fork with signals blocked; the child resets them, runs ``child()`` and never returns."""
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT})
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
            raise
        if pid == 0:
            code = 1
            try:
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                # Only the fork server talks to the daemon and to the warm processes.
                self.sock.close()
                os.close(self._wake_r)
                os.close(self._wake_w)
                for _, sock in self.warm:
                    sock.close()
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
                code = child()
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
        self.children.add(pid)
        try:
            os.setpgid(pid, pid)  # also done by the child: no race on who goes first
        except OSError:
            pass
        return pid

    def fork_warm(self) -> None:
        """Start a process that gets everything ready but the actor itself, then waits."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

        def warm() -> int:
            ours.close()
            # Unassigned, it dies with the fork server; once it is an actor, only the
            # daemon's lifeline ends it (actors outlive a restart of the fork server).
            linux.set_pdeathsig(signal.SIGKILL)
            if os.getppid() == 1:  # the fork server is already gone
                return 0
            from .._runtime.actor_main import run_warm

            def assignment() -> tuple[str, dict, list[int]] | None:
                frame = recv_frame(theirs)
                theirs.close()
                if frame is None:
                    return None
                linux.set_pdeathsig(0)
                msg, fds = frame
                return msg.get("id", ""), msg.get("spec") or {}, fds

            return run_warm(assignment, self.config, self.lifeline)

        try:
            pid = self._fork(warm)
        except OSError:
            ours.close()
            theirs.close()
            return
        theirs.close()
        self.warm.append((pid, ours))

    def spawn(self, msg: dict, fds: list[int]) -> None:
        actor_id = msg.get("id", "")
        spec = msg.get("spec") or {}
        pid = self._hand_to_warm(msg, fds)
        if pid is None:
            try:
                from .._runtime.actor_main import run_actor

                pid = self._fork(lambda: run_actor(actor_id, spec, self.config, self.lifeline, fds))
            except OSError as exc:
                for fd in fds:
                    os.close(fd)
                send_frame(self.sock, {"op": "fork_failed", "id": actor_id, "error": f"fork failed: {exc}"})
                return
        for fd in fds:
            os.close(fd)
        send_frame(self.sock, {"op": "forked", "id": actor_id, "pid": pid, "t": time.monotonic()})

    def _hand_to_warm(self, msg: dict, fds: list[int]) -> int | None:
        """Give the actor to a warm process; its pid, or None if none could take it."""
        while self.warm:
            pid, sock = self.warm.pop(0)
            try:
                send_frame(sock, {"id": msg.get("id", ""), "spec": msg.get("spec") or {}}, fds)
                return pid
            except OSError:
                continue  # it died waiting; try the next one
            finally:
                sock.close()
        return None


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
