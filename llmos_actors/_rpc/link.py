"""One DEALER socket shared by the IO loop and caller threads (the mechanics under ``Connection``).

Who touches the socket: the IO loop (reads replies, flushes batched sends) and,
for the synchronous client, the caller's own thread (a blocking ``call`` sends
and reads its reply directly, skipping two thread hand-offs). ZeroMQ sockets
are not thread-safe, so every socket operation happens under ``lock``.

The loop never blocks on that lock: when a caller holds it, the loop stops
watching the socket and sets ``_io_wanted``; the caller re-arms the loop when it
lets go. Callers hold the lock for short slices only (a send, or at most
``READ_SLICE`` seconds of reading), then fall back to sleeping on their waiter
while the loop reads for them.

The socket's file descriptor is edge-triggered: it signals a change, not a
state. So after any send or read done off the loop, whoever did it checks
``EVENTS`` and wakes the loop if a message is waiting.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from .._wire import protocol as P
from .._wire.codec import Codec
from ..errors import CallTimeout, ClosedError, ProtocolError
from .driver import LoopDriver
from .frames import get_option as _get
from .frames import recv_message, send_message
from .liveness import Liveness
from .outbox import Outbox
from .replies import Replies

#: How long a blocking caller reads its own reply before handing reading to the loop.
READ_SLICE = 0.002

#: Seconds before the loop looks again at an outbox the peer had no room for.
RETRY_DELAY = 0.005

# Plain ints: pyzmq's enum members cost an object per bitwise operation.
_NOBLOCK = int(zmq.NOBLOCK)
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)
_EVENTS = int(zmq.EVENTS)
_Again = zmq.Again
_BATCH = P.BATCH_MAX_ITEMS


class SocketLink:
    """A DEALER socket, its pending requests and its outbox, and who may touch the socket when.

    Args:
        driver: the loop that watches this socket.
        sock: a connected DEALER socket (this object owns it).
        codec: decodes reply bodies.
        peer: a label for errors (actor name or "daemon").
        on_notice: called as ``on_notice(conn, head, body)`` for unsolicited messages.
        overflow: what ``tell`` does when the outbox is full: block, raise or drop (see ``Outbox``).
        clock: seconds, monotonic (for deadlines).
    """

    def __init__(
        self,
        driver: LoopDriver,
        sock: zmq.Socket,
        codec: Codec,
        *,
        peer: str,
        on_notice: Callable[[Any, dict, Any], None] | None = None,
        overflow: str = "block",
        always_armed: bool = False,
        endpoint: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.driver = driver
        self.endpoint = endpoint
        self.always_armed = always_armed
        self.sock = sock
        self.codec = codec
        self.peer = peer
        self.on_notice = on_notice
        self.clock = clock
        self.lock = threading.Lock()
        self.max_bytes = 1 << 62  # the owner sets the message size limit
        self.by_value = False  # arrays in requests go as frames (the peer is on another machine)
        self.replies = Replies(
            driver, codec, peer, lambda head, body: on_notice(self, head, body) if on_notice else None
        )
        self.pending = self.replies.pending
        self.route = self.replies.route
        self.outbox = Outbox(peer, overflow, clock=clock)
        self.dead: BaseException | None = None
        #: The peer died and its supervisor is starting another incarnation (see ``wait_alive``).
        self.restarting = False
        self.liveness = Liveness(peer, lambda: self.dead is not None and self.restarting and not self._closed, clock)
        self._fd: int = sock.getsockopt(zmq.FD)  # type: ignore[assignment]
        self._armed = False
        self._io_wanted = False
        #: Shared by the futures of asks on this connection (``LlmosFuture``): one, not one each.
        self.futures = threading.Condition()
        self._direct = 0  # blocked callers reading their own reply right now
        self._io_scheduled = False
        self._retry_scheduled = False
        self._closed = False
        self._writable: asyncio.Event | None = None  # set when the outbox has room (async senders)

    # ------------------------------------------------------------------ loop side
    def attach(self) -> None:
        """Start watching the socket (call on the loop thread)."""
        if not self._armed and not self._closed:
            self.driver.loop.add_reader(self._fd, self._io)
            self._armed = True
        self._io()

    def _io(self) -> None:
        """Loop callback: flush the outbox and read replies, without ever blocking."""
        self._io_scheduled = False
        if self._closed:
            return
        if not (self.outbox or self._loop_reads()):
            # Nothing for the loop to do: blocking callers read their own replies.
            if self._armed:
                self.driver.loop.remove_reader(self._fd)
                self._armed = False
            return
        lock = self.lock
        if not lock.acquire(False):
            # A caller thread holds the socket; it re-arms us when it lets go.
            self._io_wanted = True
            if self._armed:
                self.driver.loop.remove_reader(self._fd)
                self._armed = False
            if not lock.acquire(False):
                return
        try:
            self._io_wanted = False
            if not self._armed and not self._closed:
                self.driver.loop.add_reader(self._fd, self._io)
                self._armed = True
            sock = self.sock
            while True:
                if self.outbox:
                    self._flush_locked(block=False)
                self._drain_locked()
                # Reading processes zmq's commands, "you may write again" among them, without
                # the fd saying so: look, and flush again while there is room.
                if not (self.outbox and _get(sock, _EVENTS) & _POLLOUT):
                    break
            if self.outbox and not self._retry_scheduled:
                self._retry_scheduled = True  # safety net if no fd edge comes
                self.driver.loop.call_later(RETRY_DELAY, self._retry)
            if self._writable is not None and not self.outbox.full:
                self._writable.set()
            # Watch the socket only while someone relies on the loop to read it: a blocking
            # call that reads its own reply must not wake this thread for nothing.
            if self._armed and not (self.outbox or self._loop_reads()):
                self.driver.loop.remove_reader(self._fd)
                self._armed = False
        finally:
            lock.release()

    def _loop_reads(self) -> bool:
        """Whether the loop reads this socket for someone (asks, notices, callers that fell back)."""
        return self.always_armed or len(self.pending) > self._direct

    def _retry(self) -> None:
        self._retry_scheduled = False
        self._io()

    def _schedule_io(self) -> None:
        if self._io_wanted:
            self._io_wanted = False
            self._io_scheduled = False
        if not self._io_scheduled and not self._closed:
            self._io_scheduled = True
            self.driver.call_soon(self._io)

    def _release(self) -> None:
        """Release ``lock`` after use off the loop (or on it) and keep the loop informed."""
        self.lock.release()
        if self._io_wanted or self.outbox or (not self._armed and self._loop_reads()):
            self._schedule_io()

    # ------------------------------------------------------------------ reading
    def _drain_locked(self) -> None:
        sock = self.sock
        while True:
            # An EVENTS query first: much cheaper than the exception a fruitless read raises.
            if not _get(sock, _EVENTS) & _POLLIN:
                return
            try:
                frames = recv_message(sock, _NOBLOCK, 2)  # [head, body] as bytes, buffers as frames
            except _Again:
                return
            except zmq.ZMQError as exc:  # socket closed under us
                if self._closed:
                    return
                raise ProtocolError(f"receive from {self.peer} failed: {exc}") from exc
            self.route(frames)

    # ------------------------------------------------------------------ sending
    def _send_locked(self, frames: list, *, block: bool, deadline: float | None = None) -> bool:
        """Hand frames to zmq. Returns False if the socket is full and ``block`` is False."""
        sock = self.sock
        while True:
            try:
                send_message(sock, frames, _NOBLOCK)
                # Sending may have consumed the fd's "readable" edge: if the loop reads for
                # someone (asks, fallen-back callers), make sure it looks.
                if self._loop_reads() and _get(sock, _EVENTS) & _POLLIN:
                    self._io_wanted = True
                return True
            except _Again:
                if not block:
                    return False
            timeout = None if deadline is None else deadline - self.clock()
            if timeout is not None and timeout <= 0:
                raise CallTimeout(f"could not send to {self.peer}: its mailbox stayed full")
            # Wait for room; read replies meanwhile so nothing stalls behind us.
            self._drain_locked()
            sock.poll(50 if timeout is None else max(1, min(50, int(timeout * 1000))), _POLLOUT)

    def _flush_locked(self, *, block: bool, deadline: float | None = None) -> bool:
        """Send the outbox, small messages coalesced into batches. False if some are left unsent."""
        outbox = self.outbox
        while outbox:
            frames, count = outbox.next_frames()
            if not self._send_locked(frames, block=block, deadline=deadline):
                outbox.stalled = True
                return False
            outbox.pop(count)
        outbox.stalled = False
        return True

    def _check_open(self) -> None:
        if self.dead is not None:  # first: a retired connection keeps answering with its death
            raise self.dead
        if self._closed:
            raise ClosedError(f"connection to {self.peer} is closed")
