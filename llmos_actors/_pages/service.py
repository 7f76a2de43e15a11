"""The daemon's pages service: owns the pool, serves the page-table channel, reclaims on exit.

The pool is a memfd: it has no name in /dev/shm, so no exit of the daemon (clean, SIGTERM
or SIGKILL) can leave a file behind; its memory is gone when the last process that maps
it exits. Processes get its descriptor over the ``pages`` unix socket in the runtime dir
(0700), and the daemon learns their pid from the socket itself, then watches that pid
through a pidfd: when a holder dies (kill -9 included) its pages are reclaimed.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import mmap
import os
import secrets
import socket
import struct
from typing import Any

from .._kernel.service import Service
from ..errors import ConfigError
from . import channel as C
from .layout import PoolMap
from .ring import Ring
from .settings import PagesSettings, human, pool_size, settings_from
from .store import ObjectMissing, ObjectStore
from .table import Block, PageTable

log = logging.getLogger(__name__)

#: Seconds between drains of the note rings while processes are busy, and at most when idle.
POLL_BUSY = 0.02
POLL_IDLE = 0.2

_UCRED = struct.Struct("3i")
META_KINDS = ("n", "t", "v")  # numpy, torch, a packed msgpack value


class _RingEnd:
    __slots__ = ("fd", "reader", "ring")

    def __init__(self, fd: int, ring: Ring) -> None:
        self.fd = fd
        self.ring = ring
        self.reader = C.FrameReader()


class _Conn:
    __slots__ = ("out", "pid", "reader", "sock")

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.sock = sock
        self.pid = pid
        self.reader = C.FrameReader()
        self.out = bytearray()


class PagesService(Service):
    """The shared-memory pool, its page table and object store (see ``_pages``)."""

    name = "pages"

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.config = daemon.config
        self.settings: PagesSettings = settings_from(self.config.extra, self.config.state_dir)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pool: PoolMap | None = None
        self.fd = -1
        self.listener: socket.socket | None = None
        self.conns: dict[int, _Conn] = {}  # by socket fd
        self.pidfds: dict[int, int] = {}  # pid -> pidfd
        self.rings: dict[int, _RingEnd] = {}  # pid -> its note ring
        self._poll_delay = POLL_IDLE
        self._poll_handle: asyncio.TimerHandle | None = None
        self.counters = {"exhausted": 0, "bad_frames": 0, "processes_reclaimed": 0, "trimmed_bytes": 0}
        self._tick_handle: asyncio.TimerHandle | None = None
        self.path = self.config.runtime_dir / C.SOCKET_NAME

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.path.unlink(missing_ok=True)
        if not self.settings.enabled:
            log.info("shared-memory pages are disabled: arrays and tensors travel inline")
            return
        self.loop = asyncio.get_running_loop()
        size, note = pool_size(self.settings)
        if note:
            log.warning(note)
        ps = self.settings.page_size
        n_pages = size // ps
        pool_id = secrets.randbits(63)
        fd = os.memfd_create(f"llmos-{self.config.instance}-pool", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            PoolMap.create(fd, pool_id, ps, n_pages)
            # Nobody may shrink it under the others' mappings (that would be SIGBUS for them).
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
            self.pool = PoolMap(fd, daemon=True)
        except OSError as exc:
            os.close(fd)
            raise ConfigError(f"cannot create the shared-memory pool of {human(size)}: {exc}") from exc
        self.fd = fd
        s = self.settings
        self.table = PageTable(self.pool.table, ttl=s.transfer_ttl, quarantine=s.quarantine)
        assert s.spill_dir is not None
        self.store = ObjectStore(self.table, self.pool, s.spill_dir)
        self.store.prepare()
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        lsock.bind(str(self.path))
        os.chmod(self.path, 0o600)
        lsock.listen(128)
        lsock.setblocking(False)
        self.listener = lsock
        self.loop.add_reader(lsock.fileno(), self._accept)
        self._tick_handle = self.loop.call_later(1.0, self._tick)
        self._poll_handle = self.loop.call_later(POLL_IDLE, self._poll)
        log.info("shared-memory pool: %s in %s pages (memfd, id %x)", human(size), human(ps), pool_id)

    async def stop(self) -> None:
        loop = self.loop
        if loop is None:
            return
        for handle in (self._tick_handle, self._poll_handle):
            if handle is not None:
                handle.cancel()
        if self.listener is not None:
            loop.remove_reader(self.listener.fileno())
            self.listener.close()
            self.listener = None
        for conn in list(self.conns.values()):
            self._close(conn)
        for pidfd in self.pidfds.values():
            loop.remove_reader(pidfd)
            os.close(pidfd)
        self.pidfds.clear()
        for pid in list(self.rings):
            self._close_ring(pid)
        self.store.close()
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.path.unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        if self.pool is None:
            return {"enabled": False}
        self._drain_all()
        t = self.table
        ps = self.pool.page_size
        return {
            "pool_bytes": self.pool.data_bytes,
            "page_bytes": ps,
            "used_bytes": t.used_pages() * ps,
            "resident_bytes": self.resident_bytes(),
            "largest_free_bytes": t.allocator.largest() * ps,
            "blocks": len(t.blocks),
            "holders": t.holders(),
            "transfers": len(t.transfers),
            "largest_holders": self._largest_holders(ps),
            **self.store.numbers(),
            **t.counters,
            **self.counters,
        }

    def _largest_holders(self, page_size: int, count: int = 3) -> str:
        """The processes holding the most pool memory, by actor name (an LLM device's KV cache
        shows here): ``"llm 256.0 MiB, worker 4.0 MiB"``."""
        t = self.table
        held = []
        for pid, starts in t.by_pid.items():
            pages = sum(t.blocks[s].pages for s in starts if s in t.blocks)
            if pages:
                held.append((pages * page_size, pid))
        held.sort(reverse=True)
        names = getattr(getattr(self.daemon, "table", None), "by_pid", {})
        parts = []
        for nbytes, pid in held[:count]:
            record = names.get(pid)
            who = record.label if record is not None else f"pid {pid}"
            parts.append(f"{who} {nbytes / (1 << 20):.1f} MiB")
        return ", ".join(parts)

    # ------------------------------------------------------------------ note rings
    def _ring_for(self, pid: int) -> _RingEnd:
        end = self.rings.get(pid)
        if end is None:
            fd = os.memfd_create(f"llmos-{self.config.instance}-notes-{pid}", os.MFD_CLOEXEC)
            os.ftruncate(fd, Ring.size())
            end = self.rings[pid] = _RingEnd(fd, Ring(mmap.mmap(fd, Ring.size())))
        return end

    def _close_ring(self, pid: int) -> None:
        end = self.rings.pop(pid, None)
        if end is not None:
            end.ring.close()
            os.close(end.fd)

    def _drain(self, pid: int) -> bool:
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
            self.counters["bad_frames"] += 1
            log.warning("pages: dropping the note ring of pid %d: %s", pid, exc)
            self._close_ring(pid)
            return False
        for msg in frames:
            if type(msg) is list and msg and msg[0] in C.NOTES:
                self._apply_note(pid, msg[0], msg[1:])
            else:
                self.counters["bad_frames"] += 1
        return True

    def _drain_all(self) -> bool:
        busy = False
        for pid in list(self.rings):
            busy = self._drain(pid) or busy
        return busy

    def _poll(self) -> None:
        """Drain the rings: every few ms while notes come, backing off when idle."""
        busy = self._drain_all()
        self._poll_delay = POLL_BUSY if busy else min(self._poll_delay * 2, POLL_IDLE)
        assert self.loop is not None
        self._poll_handle = self.loop.call_later(self._poll_delay, self._poll)

    def resident_bytes(self) -> int:
        """Memory the pool occupies now (tmpfs pages allocated to the memfd)."""
        return os.fstat(self.fd).st_blocks * 512 if self.fd >= 0 else 0

    def trim(self) -> int:
        """Give free pages back to the system beyond ``trim_above`` resident free bytes."""
        pool = self.pool
        assert pool is not None
        ps = pool.page_size
        excess = self.resident_bytes() - self.table.used_pages() * ps - self.settings.trim_above
        trimmed = 0
        # First fit allocates from the bottom: the top of the pool is the least likely to be reused soon.
        for start, length in reversed(self.table.allocator.runs()):
            if excess <= 0:
                break
            try:
                pool.data.madvise(mmap.MADV_REMOVE, start * ps, length * ps)
            except OSError as exc:
                log.warning("pages: cannot give free pages back: %s", exc)
                break
            excess -= length * ps
            trimmed += length * ps
        if trimmed:
            self.counters["trimmed_bytes"] += trimmed
        return trimmed

    def _tick(self) -> None:
        self.table.expire()
        self.trim()
        assert self.loop is not None
        self._tick_handle = self.loop.call_later(1.0, self._tick)

    # ------------------------------------------------------------------ connections
    def _accept(self) -> None:
        assert self.listener is not None and self.loop is not None
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("pages: accept failed: %s", exc)
                return
            pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
            if uid != os.geteuid() and os.geteuid() != 0:
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Conn(sock, pid)
            self.conns[sock.fileno()] = conn
            self.loop.add_reader(sock.fileno(), self._on_readable, conn)
            self._watch(pid)

    def _watch(self, pid: int) -> None:
        if pid in self.pidfds or pid <= 0:
            return
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self.loop.call_soon(self._exited, pid)  # type: ignore[union-attr]
            return
        self.pidfds[pid] = pidfd
        self.loop.add_reader(pidfd, self._exited, pid)  # type: ignore[union-attr]

    def _on_readable(self, conn: _Conn) -> None:
        self._drain(conn.pid)  # its notes come before what it says on the socket now
        while True:
            try:
                data = conn.sock.recv(1 << 18)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._close(conn)
                return
            try:
                frames = conn.reader.feed(data)
            except Exception as exc:
                self.counters["bad_frames"] += 1
                log.warning("pages: closing the channel of pid %d: %s", conn.pid, exc)
                self._close(conn)
                return
            for msg in frames:
                self._handle(conn, msg)
            if conn.sock.fileno() < 0:
                return

    def _close(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd >= 0 and self.conns.pop(fd, None) is not None:
            self.loop.remove_reader(fd)  # type: ignore[union-attr]
            if conn.out:
                self.loop.remove_writer(fd)  # type: ignore[union-attr]
        conn.sock.close()

    def _exited(self, pid: int) -> None:
        """A holder died: read what it said last, then drop everything it held."""
        pidfd = self.pidfds.pop(pid, None)
        if pidfd is not None:
            self.loop.remove_reader(pidfd)  # type: ignore[union-attr]
            os.close(pidfd)
        for conn in [c for c in self.conns.values() if c.pid == pid]:
            self._on_readable(conn)  # everything it wrote before dying, in order
            self._close(conn)
        self._drain(pid)
        self._close_ring(pid)
        freed = self.table.exited(pid)
        objects = self.store.owner_exited(pid)
        self.counters["processes_reclaimed"] += 1
        if freed or objects:
            log.info("pages: pid %d exited: %d block(s) freed, %d object(s) dropped", pid, freed, objects)

    def _send(self, conn: _Conn, data: bytes, fds: list[int] | None = None) -> None:
        if conn.sock.fileno() < 0:
            return
        if not conn.out:
            try:
                sent = socket.send_fds(conn.sock, [data], fds) if fds else conn.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
                if fds:  # the descriptor must travel with the first byte: give up on this peer
                    self._close(conn)
                    return
            except OSError:
                self._close(conn)
                return
            data = data[sent:]
            if not data:
                return
            self.loop.add_writer(conn.sock.fileno(), self._on_writable, conn)  # type: ignore[union-attr]
        conn.out += data

    def _on_writable(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        del conn.out[:sent]
        if not conn.out:
            self.loop.remove_writer(conn.sock.fileno())  # type: ignore[union-attr]

    # ------------------------------------------------------------------ requests
    def _handle(self, conn: _Conn, msg: Any) -> None:
        if type(msg) is not list or not msg or type(msg[0]) is not str:
            self.counters["bad_frames"] += 1
            return
        op, args = msg[0], msg[1:]
        try:
            if op in C.NOTES:
                self._apply_note(conn.pid, op, args)
            elif op in C.REQUESTS:
                # Its notes written before this request come first (even when several requests
                # arrived in one read: the ring may have been refilled between them).
                self._drain(conn.pid)
                reply, fds = getattr(self, f"_op_{op}")(conn, *args)
                self._send(conn, C.reply(reply), fds)
            else:
                self.counters["bad_frames"] += 1
        except TypeError as exc:  # wrong number of arguments
            self.counters["bad_frames"] += 1
            if op in C.REQUESTS:
                self._send(conn, C.reply({"error": "bad", "message": f"malformed {op!r}: {exc}"}))

    def _apply_note(self, pid: int, op: str, args: list) -> None:
        t = self.table
        try:
            if op == C.TAKE:
                t.take(pid, *args[:4], adopt=bool(args[4]) if len(args) > 4 else True)
            elif op == C.SEND:
                t.send(pid, *args[:4])
            else:
                t.release(pid, *args[:3])
        except TypeError:
            self.counters["bad_frames"] += 1

    def _op_hello(self, conn: _Conn, info: Any = None) -> tuple[dict, list[int]]:
        pool = self.pool
        assert pool is not None
        s = self.settings
        reply = {
            "pool_id": pool.pool_id,
            "page_size": pool.page_size,
            "pages": pool.n_pages,
            "chunk_size": s.chunk_size,
            "inline_threshold": s.inline_threshold,
            "alloc_timeout": s.alloc_timeout,
            "instance": self.config.instance,
            "pid": conn.pid,
        }
        return reply, [self.fd, self._ring_for(conn.pid).fd]

    def _alloc(self, pid: int | None, pages: int) -> Block | None:
        # Releases not read yet first: first fit then reuses pages that are already touched and
        # mapped everywhere (fresh ones cost a page fault each, 4-5x slower than a memcpy).
        self._drain_all()
        block = self.table.alloc(pid, pages)
        if block is None and self.store.spill_for(pages):
            block = self.table.alloc(pid, pages)
        return block

    def _full(self, nbytes: int) -> dict:
        t = self.table
        ps = self.pool.page_size  # type: ignore[union-attr]
        self.counters["exhausted"] += 1
        pinned = sum(1 for o in self.store.objects.values() if o.block is not None)
        holders = sorted(pid for pid, starts in t.by_pid.items() if starts)
        message = (
            f"need {human(nbytes)}, largest free run {human(t.allocator.largest() * ps)}, "
            f"free {human(t.allocator.free_pages * ps)} of {human(t.n_pages * ps)}; "
            f"{len(t.blocks)} block(s) held by {len(holders)} process(es) {holders[:8]}, "
            f"{len(t.transfers)} transfer(s) in flight, {pinned} stored object(s) in memory that cannot be "
            "spilled (mapped by a process or in a message)"
        )
        return {"error": "full", "message": message}

    def _op_alloc(self, conn: _Conn, nbytes: Any) -> tuple[dict, None]:
        ps = self.pool.page_size  # type: ignore[union-attr]
        if type(nbytes) is not int or nbytes <= 0:
            return {"error": "bad", "message": f"alloc needs a positive byte count, not {nbytes!r}"}, None
        if nbytes > self.table.n_pages * ps:
            message = f"{human(nbytes)} is larger than the whole pool ({human(self.table.n_pages * ps)})"
            return {"error": "too_big", "message": message}, None
        block = self._alloc(conn.pid, -(-nbytes // ps))
        if block is None:
            return self._full(nbytes), None
        return {"start": block.start, "pages": block.pages, "gen": block.gen}, None

    def _check_meta(self, block: Block, meta: Any) -> list:
        ps = self.pool.page_size  # type: ignore[union-attr]
        if type(meta) is not list or len(meta) != 7 or meta[0] not in META_KINDS:
            raise ValueError("malformed object metadata")
        base_off, span = meta[4], meta[5]
        if type(base_off) is not int or type(span) is not int or base_off < 0 or span < 0:
            raise ValueError("malformed object extent")
        if base_off + span > block.pages * ps:
            raise ValueError("object extent lies outside its block")
        return meta

    def _op_put(self, conn: _Conn, start: Any, gen: Any, meta: Any, detached: Any = False) -> tuple[dict, None]:
        block = self.table.find(start, gen)
        if block is None:
            return {"error": "bad", "message": "put of pages that are not allocated (stale handle)"}, None
        try:
            meta = self._check_meta(block, meta)
        except ValueError as exc:
            return {"error": "bad", "message": str(exc)}, None
        return {"oid": self.store.put(conn.pid, block, meta, detached=bool(detached))}, None

    def _op_get(self, conn: _Conn, oid: Any) -> tuple[dict, None]:
        try:
            obj = self.store.lookup(oid)
        except ObjectMissing as exc:
            return {"error": "missing", "message": str(exc)}, None
        if obj.block is None and not self.store.restore(obj, lambda pages: self._alloc(None, pages)):
            return self._full(obj.meta[4] + obj.meta[5]), None
        block = obj.block
        assert block is not None
        self.table.hold(block, conn.pid)
        obj.last_used = block.last_used
        return {"start": block.start, "pages": block.pages, "gen": block.gen, "meta": obj.meta}, None

    def _op_drain(self, conn: _Conn) -> tuple[dict, None]:
        return {}, None  # _handle drained its ring before this request

    def _op_free(self, conn: _Conn, oid: Any) -> tuple[dict, None]:
        try:
            self.store.free(oid)
        except ObjectMissing as exc:
            return {"error": "missing", "message": str(exc)}, None
        return {}, None
