"""The daemon's end of the pages channel: the unix socket, each process's note ring, pidfds.

A process connects to the ``pages`` socket in the runtime dir (0700); the daemon
learns its pid from the socket itself (SO_PEERCRED), never from what it says, and
watches that pid through a pidfd, so a holder that dies (kill -9 included) is
noticed. Notes (take, send, release) come through a per-process ring in shared
memory, requests and replies through the socket; a process's notes are always
applied before its next request. What the frames mean is the pages service's
business (``pages_service``): this module only moves them.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._pages import channel as C
from .._pages.ring import Ring

log = logging.getLogger(__name__)

_UCRED = struct.Struct("3i")


class RingEnd:
    """The daemon's end of one process's note ring."""

    __slots__ = ("fd", "reader", "ring")

    def __init__(self, fd: int, ring: Ring) -> None:
        self.fd = fd
        self.ring = ring
        self.reader = C.FrameReader()


class Peer:
    """One connected process: its socket, its pid (from the kernel), unsent reply bytes."""

    __slots__ = ("out", "pid", "reader", "sock")

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.sock = sock
        self.pid = pid
        self.reader = C.FrameReader()
        self.out = bytearray()


class PagesChannel:
    """Accepts processes, reads their frames in order and writes replies (with descriptors).

    Args:
        on_note: ``(pid, op, args)`` for each note, from the ring or the socket.
        on_request: ``(peer, op, args) -> (reply, fds)`` for each request.
        on_exit: ``(pid)`` once a process is gone and everything it said was read.
        bad_frame: called for each frame that is not a note or a request.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        path: Path,
        instance: str,
        *,
        on_note: Callable[[int, str, list], None],
        on_request: Callable[[Peer, str, list], tuple[Any, list[int] | None]],
        on_exit: Callable[[int], None],
        bad_frame: Callable[[], None],
    ) -> None:
        self.loop = loop
        self.path = path
        self.instance = instance
        self.on_note = on_note
        self.on_request = on_request
        self.on_exit = on_exit
        self.bad_frame = bad_frame
        self.listener: socket.socket | None = None
        self.peers: dict[int, Peer] = {}  # by socket fd
        self.pidfds: dict[int, int] = {}  # pid -> pidfd
        self.rings: dict[int, RingEnd] = {}  # pid -> its note ring

    def listen(self) -> None:
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        lsock.bind(str(self.path))
        os.chmod(self.path, 0o600)
        lsock.listen(128)
        lsock.setblocking(False)
        self.listener = lsock
        self.loop.add_reader(lsock.fileno(), self._accept)

    def close(self) -> None:
        loop = self.loop
        if self.listener is not None:
            loop.remove_reader(self.listener.fileno())
            self.listener.close()
            self.listener = None
        for peer in list(self.peers.values()):
            self._close(peer)
        for pidfd in self.pidfds.values():
            loop.remove_reader(pidfd)
            os.close(pidfd)
        self.pidfds.clear()
        for pid in list(self.rings):
            self.close_ring(pid)

    # ------------------------------------------------------------------ note rings
    def ring_for(self, pid: int) -> RingEnd:
        end = self.rings.get(pid)
        if end is None:
            fd = os.memfd_create(f"llmos-{self.instance}-notes-{pid}", os.MFD_CLOEXEC)
            os.ftruncate(fd, Ring.size())
            end = self.rings[pid] = RingEnd(fd, Ring(mmap.mmap(fd, Ring.size())))
        return end

    def close_ring(self, pid: int) -> None:
        end = self.rings.pop(pid, None)
        if end is not None:
            end.ring.close()
            os.close(end.fd)

    def drain(self, pid: int) -> bool:
        """Apply the notes ``pid`` wrote into its ring; True if there were any."""
        end = self.rings.get(pid)
        if end is None:
            return False
        try:
            data = end.ring.read()
            if not data:
                return False
            frames = end.reader.feed(data)
        except Exception as exc:
            self.bad_frame()
            log.warning("pages: dropping the note ring of pid %d: %s", pid, exc)
            self.close_ring(pid)
            return False
        for msg in frames:
            if type(msg) is list and msg and msg[0] in C.NOTES:
                self.on_note(pid, msg[0], msg[1:])
            else:
                self.bad_frame()
        return True

    def drain_all(self) -> bool:
        busy = False
        for pid in list(self.rings):
            busy = self.drain(pid) or busy
        return busy

    # ------------------------------------------------------------------ connections
    def _accept(self) -> None:
        assert self.listener is not None
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("pages: accept failed: %s", exc)
                return
            pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
            if uid not in (os.geteuid(), 0):  # the daemon's user (and root) only, root daemon or not
                sock.close()
                continue
            sock.setblocking(False)
            peer = Peer(sock, pid)
            self.peers[sock.fileno()] = peer
            self.loop.add_reader(sock.fileno(), self._on_readable, peer)
            self._watch(pid)

    def _watch(self, pid: int) -> None:
        if pid in self.pidfds or pid <= 0:
            return
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self.loop.call_soon(self._exited, pid)
            return
        self.pidfds[pid] = pidfd
        self.loop.add_reader(pidfd, self._exited, pid)

    def _on_readable(self, peer: Peer) -> None:
        self.drain(peer.pid)  # its notes come before what it says on the socket now
        while True:
            try:
                data = peer.sock.recv(1 << 18)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._close(peer)
                return
            try:
                frames = peer.reader.feed(data)
            except Exception as exc:
                self.bad_frame()
                log.warning("pages: closing the channel of pid %d: %s", peer.pid, exc)
                self._close(peer)
                return
            for msg in frames:
                self._handle(peer, msg)
            if peer.sock.fileno() < 0:
                return

    def _handle(self, peer: Peer, msg: Any) -> None:
        if type(msg) is not list or not msg or type(msg[0]) is not str:
            self.bad_frame()
            return
        op, args = msg[0], msg[1:]
        try:
            if op in C.NOTES:
                self.on_note(peer.pid, op, args)
            elif op in C.REQUESTS:
                # Its notes written before this request come first (even when several requests
                # arrived in one read: the ring may have been refilled between them).
                self.drain(peer.pid)
                reply, fds = self.on_request(peer, op, args)
                self.send(peer, C.reply(reply), fds)
            else:
                self.bad_frame()
        except TypeError as exc:  # wrong number of arguments
            self.bad_frame()
            if op in C.REQUESTS:
                self.send(peer, C.reply({"error": "bad", "message": f"malformed {op!r}: {exc}"}))

    def _close(self, peer: Peer) -> None:
        fd = peer.sock.fileno()
        if fd >= 0 and self.peers.pop(fd, None) is not None:
            self.loop.remove_reader(fd)
            if peer.out:
                self.loop.remove_writer(fd)
        peer.sock.close()

    def _exited(self, pid: int) -> None:
        """A process died: read what it said last, then let the service reclaim."""
        pidfd = self.pidfds.pop(pid, None)
        if pidfd is not None:
            self.loop.remove_reader(pidfd)
            os.close(pidfd)
        for peer in [p for p in self.peers.values() if p.pid == pid]:
            self._on_readable(peer)  # everything it wrote before dying, in order
            self._close(peer)
        self.drain(pid)
        self.close_ring(pid)
        self.on_exit(pid)

    def send(self, peer: Peer, data: bytes, fds: list[int] | None = None) -> None:
        if peer.sock.fileno() < 0:
            return
        if not peer.out:
            try:
                sent = socket.send_fds(peer.sock, [data], fds) if fds else peer.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
                if fds:  # the descriptor must travel with the first byte: give up on this peer
                    self._close(peer)
                    return
            except OSError:
                self._close(peer)
                return
            data = data[sent:]
            if not data:
                return
            self.loop.add_writer(peer.sock.fileno(), self._on_writable, peer)
        peer.out += data

    def _on_writable(self, peer: Peer) -> None:
        try:
            sent = peer.sock.send(peer.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(peer)
            return
        del peer.out[:sent]
        if not peer.out:
            self.loop.remove_writer(peer.sock.fileno())
