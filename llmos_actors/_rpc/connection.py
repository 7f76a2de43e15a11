"""One DEALER socket to one peer (an actor, or the daemon's control socket).

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
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from .._wire import protocol as P
from .._wire.codec import Codec, error_from_payload
from ..errors import CallTimeout, ClosedError, MailboxFull, ProtocolError
from .driver import LoopDriver
from .frames import get_option as _get
from .frames import recv_message, send_message

#: How long a synchronous caller reads its own reply before handing reading to the loop.
READ_SLICE = 0.002

_DEFAULT_PRIO = 4
_ARRAY2 = b"\x92"


def _prio_of(item: tuple) -> int:
    return _DEFAULT_PRIO if item[3] is None else item[3]


#: Seconds before the loop looks again at an outbox the peer had no room for.
RETRY_DELAY = 0.005

#: Outgoing messages queued per connection before the overflow policy applies.
OUTBOX_LIMIT = 4 * P.BATCH_MAX_ITEMS

# Plain ints: pyzmq's enum members cost an object per bitwise operation.
_NOBLOCK = int(zmq.NOBLOCK)
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)
_EVENTS = int(zmq.EVENTS)
_Again = zmq.Again


def _set_none(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class Connection:
    """A DEALER socket, its pending requests and its outbox.

    Args:
        driver: the loop that watches this socket.
        sock: a connected DEALER socket (this object owns it).
        codec: decodes reply bodies.
        peer: a label for errors (actor name or "daemon").
        on_notice: called as ``on_notice(conn, head, body)`` for unsolicited messages.
        overflow: what ``enqueue`` does when the outbox is full: block, raise or drop.
    """

    def __init__(
        self,
        driver: LoopDriver,
        sock: zmq.Socket,
        codec: Codec,
        *,
        peer: str,
        on_notice: Callable[[Connection, dict, Any], None] | None = None,
        overflow: str = "block",
        always_armed: bool = False,
        endpoint: str = "",
    ) -> None:
        self.driver = driver
        self.endpoint = endpoint
        self.always_armed = always_armed
        self.sock = sock
        self.codec = codec
        self.peer = peer
        self.on_notice = on_notice
        self.overflow = overflow
        self.lock = threading.Lock()
        self.max_bytes = 1 << 62  # the owner sets the message size limit
        self.pending: dict[int, Any] = {}
        self.outbox: deque = deque()  # (head, body, bufs) not yet handed to zmq
        self.dropped = 0  # tells dropped by the "drop" overflow policy
        self.dead: BaseException | None = None
        #: The peer died and its supervisor is starting another incarnation (see ``wait_alive``).
        self.restarting = False
        self._alive = threading.Condition(threading.Lock())
        self._alive_callbacks: list[Callable[[], None]] = []
        self._fd: int = sock.getsockopt(zmq.FD)  # type: ignore[assignment]
        self._armed = False
        self._io_wanted = False
        self._direct = 0  # sync callers reading their own reply right now
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
            if self._writable is not None and len(self.outbox) < OUTBOX_LIMIT:
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
            self._dispatch_frames(frames)

    def _dispatch_frames(self, frames: list[bytes]) -> None:
        try:
            head = P.parse_header(frames[0])
            if head["kind"] == P.BATCH:
                items = self.codec.unpack(frames[1])
                each = head.get("each")
                if each is not None:  # one header for every item (see protocol)
                    shared = P.parse_header(each)
                    for body in items:
                        self._dispatch(shared, body, decoded=True)
                    return
                for sub_head, body in items:
                    self._dispatch(P.check_header(sub_head), body, decoded=True)
            else:
                self._dispatch(head, frames[1] if len(frames) > 1 else b"\xc0", bufs=frames[2:])
        except (ProtocolError, ValueError, TypeError) as exc:
            # A malformed reply cannot be matched to a caller: count it and go on.
            self.driver.stats["malformed_replies"] = self.driver.stats.get("malformed_replies", 0) + 1
            self.driver.log.warning("dropped malformed message from %s: %s", self.peer, exc)

    def _dispatch(self, head: dict, body: Any, *, decoded: bool = False, bufs: Any = ()) -> None:
        kind = head["kind"]
        msg_id = head["id"]
        if kind == P.ITEM:
            waiter = self.pending.get(msg_id)
            if waiter is not None and not waiter.streaming:
                return  # an item for a non-stream request: ignore the misbehaving peer
        elif kind == P.NOTICE:
            if self.on_notice is not None:
                self.on_notice(self, head, body if decoded else self._decode(body, bufs))
            return
        else:
            waiter = self.pending.pop(msg_id, None)
        if waiter is None:
            return  # the caller gave up (timeout, cancel): a late reply is harmless
        try:
            value = body if decoded else self._decode(body, bufs)
        except ProtocolError as exc:
            if kind == P.ITEM:
                self.pending.pop(msg_id, None)
            waiter.resolve(False, exc)
            return
        if kind == P.OK or kind == P.END:
            waiter.resolve(True, value)
        elif kind == P.ITEM:
            waiter.item(value)
        elif kind == P.ERR:
            waiter.resolve(False, error_from_payload(value))
        else:
            waiter.resolve(False, ProtocolError(f"unexpected reply kind {kind!r} from {self.peer}"))

    def _decode(self, body: Any, bufs: Any) -> Any:
        return self.codec.unpack(body, bufs)

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
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                raise CallTimeout(f"could not send to {self.peer}: its mailbox stayed full")
            # Wait for room; read replies meanwhile so nothing stalls behind us.
            self._drain_locked()
            sock.poll(50 if timeout is None else max(1, min(50, int(timeout * 1000))), _POLLOUT)

    def _flush_locked(self, *, block: bool, deadline: float | None = None) -> bool:
        """Send the outbox, coalescing small messages into batches. False if left unsent."""
        outbox = self.outbox
        while outbox:
            head, body, bufs, _ = outbox[0]
            if bufs or len(body) > P.BATCH_ITEM_MAX_BYTES or len(outbox) == 1:
                if not self._send_locked([head, body, *bufs], block=block, deadline=deadline):
                    return False
                outbox.popleft()
                continue
            # A batch body is a msgpack array of [header, body] pairs: the fixarray(2) marker,
            # then both packed parts, joined once (nothing is packed again). If every header is
            # the same (tells to one method), it goes once in the batch header instead.
            first = head
            same = True
            heads = []
            bodies = []
            count = size = 0
            max_items, max_bytes, max_item = P.BATCH_MAX_ITEMS, P.BATCH_MAX_BYTES, P.BATCH_ITEM_MAX_BYTES
            for head, body, bufs, _ in outbox:
                if bufs or len(body) > max_item:
                    break
                if same and head != first:
                    same = False
                heads.append(head)
                bodies.append(body)
                count += 1
                size += len(head) + len(body)
                if count >= max_items or size >= max_bytes:
                    break
            if count == 1:
                frames = [outbox[0][0], outbox[0][1]]
            elif same:
                frames = [P.batch_header(count, first), P.array_header(count) + b"".join(bodies)]
            else:
                parts = []
                for head, body in zip(heads, bodies, strict=True):
                    parts.append(_ARRAY2)
                    parts.append(head)
                    parts.append(body)
                frames = [P.batch_header(count), P.array_header(count) + b"".join(parts)]
            if not self._send_locked(frames, block=block, deadline=deadline):
                return False
            for _ in range(count):
                outbox.popleft()
        return True

    def _check_open(self) -> None:
        if self.dead is not None:  # first: a retired connection keeps answering with its death
            raise self.dead
        if self._closed:
            raise ClosedError(f"connection to {self.peer} is closed")

    def _queue(self, item: tuple) -> None:
        """Add to the outbox; a message of higher priority goes ahead of lower ones not yet sent.

        Messages of equal priority keep their order (per-sender FIFO).
        """
        outbox = self.outbox
        prio = item[3]
        if prio is None or not outbox or prio <= _DEFAULT_PRIO:
            outbox.append(item)
            return
        index = len(outbox)
        while index and _prio_of(outbox[index - 1]) < prio:
            index -= 1
        outbox.insert(index, item)

    def call_blocking(
        self,
        msg_id: int,
        head: bytes,
        body: bytes,
        bufs: list,
        waiter: Any,
        deadline: float | None,
        prio: int | None = None,
    ) -> None:
        """Send a request and read its reply on this thread for up to ``READ_SLICE`` seconds.

        The caller then waits on ``waiter`` (resolved here, or later by the loop).
        """
        lock = self.lock
        lock.acquire()
        try:
            # Register first, then check: ``fail_all`` (on the loop, without the lock) marks the
            # peer dead before failing what is pending, so one of the two always sees the other.
            self.pending[msg_id] = waiter
            self._direct += 1
            try:
                self._check_open()
                if self.outbox:
                    self._queue((head, body, bufs, prio))
                    self._flush_locked(block=True, deadline=deadline)
                else:
                    self._send_locked([head, body, *bufs], block=True, deadline=deadline)
            except BaseException:
                self._direct -= 1
                self.pending.pop(msg_id, None)
                raise
            # Blocking receive with the socket's RCVTIMEO (= READ_SLICE): cheaper than poll + recv.
            end = time.monotonic() + READ_SLICE
            sock = self.sock
            while not waiter.done:
                try:
                    frames = recv_message(sock, 0, 2)
                except _Again:
                    break
                self._dispatch_frames(frames)
                if time.monotonic() > end:
                    break
            # Read everything already here so the loop is not left with a silent socket.
            # (Only if the loop reads for others: then it relies on the fd's edge we just ate.)
            if (self.pending or self.always_armed) and _get(sock, _EVENTS) & _POLLIN:
                self._drain_locked()
            self._direct -= 1  # not done yet? the loop takes over reading (see _release)
        finally:
            self._release()

    def send_now(
        self, msg_id: int | None, head: bytes, body: bytes, bufs: list, waiter: Any = None, prio: int | None = None
    ) -> None:
        """Send one request at once from any thread (``ask``, stream starts, control)."""
        lock = self.lock
        lock.acquire()
        try:
            if waiter is not None:
                self.pending[msg_id] = waiter  # type: ignore[index]
            self._check_open()  # after registering: see call_blocking
            # Requests that expect a reply are never dropped: if the peer is not reading, they
            # wait in the outbox (the caller holds a future for each, so it bounds them itself).
            if self.outbox:
                self._queue((head, body, bufs, prio))
                self._flush_locked(block=False)
            elif not self._send_locked([head, body, *bufs], block=False):
                self.outbox.append((head, body, bufs, prio))
        except BaseException:
            if waiter is not None:
                self.pending.pop(msg_id, None)  # type: ignore[arg-type]
            raise
        finally:
            self._release()

    def enqueue(
        self, head: bytes, body: bytes, bufs: list, *, deadline: float | None = None, prio: int | None = None
    ) -> bool:
        """Queue a one-way message; the loop sends it (batched) shortly.

        Returns False if the message was dropped by the ``drop`` overflow policy.

        Raises:
            MailboxFull: the peer is not keeping up and the policy is ``raise``
                (or ``block`` and ``deadline`` passed).
        """
        with self.lock:
            if self._closed or self.dead is not None:
                self._check_open()
            outbox = self.outbox
            item = (head, body, bufs, prio)
            if prio is None:
                outbox.append(item)
            else:
                self._queue(item)
            n = len(outbox)
            if n >= P.BATCH_MAX_ITEMS:
                full = not self._flush_locked(block=False)
                if full and len(outbox) > OUTBOX_LIMIT:
                    return self._apply_overflow_locked(item, deadline=deadline)
        # One loop wake-up per batch: the first message of a batch schedules the flush; the
        # rest ride along (or the caller sends them itself when the batch is full).
        if (n == 1 and not self._io_scheduled) or self._io_wanted:
            self._schedule_io()
        return True

    def submit(self, msg_id: int, head: bytes, body: bytes, bufs: list, waiter: Any, prio: int | None = None) -> None:
        """Queue a request on the loop thread; it leaves (batched) at the end of this loop turn."""
        with self.lock:
            self._check_open()
            self.pending[msg_id] = waiter
            self._queue((head, body, bufs, prio))
            full = len(self.outbox) >= P.BATCH_MAX_ITEMS
        if full:
            self._io()
        else:
            self._schedule_io()

    async def enqueue_async(
        self, head: bytes, body: bytes, bufs: list, *, deadline: float | None = None, prio: int | None = None
    ) -> bool:
        """``enqueue`` for asyncio callers: waits (policy ``block``) without blocking the loop."""
        while True:
            with self.lock:
                self._check_open()
                if len(self.outbox) < OUTBOX_LIMIT:
                    self._queue((head, body, bufs, prio))
                    break
                if self.overflow == "drop":
                    self.dropped += 1
                    return False
                if self.overflow == "raise":
                    raise MailboxFull(f"{self.peer}'s mailbox is full (overflow policy 'raise')")
            if self._writable is None:
                self._writable = asyncio.Event()
            self._writable.clear()
            self._schedule_io()
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                raise MailboxFull(f"{self.peer}'s mailbox stayed full until the deadline")
            try:
                await asyncio.wait_for(self._writable.wait(), timeout)
            except asyncio.TimeoutError:
                raise MailboxFull(f"{self.peer}'s mailbox stayed full until the deadline") from None
        if len(self.outbox) >= P.BATCH_MAX_ITEMS:
            self._io()
        else:
            self._schedule_io()
        return True

    def _refuse(self, item: tuple) -> None:
        try:
            self.outbox.remove(item)
        except ValueError:
            pass  # already sent after all

    def _apply_overflow_locked(self, item: tuple, *, deadline: float | None = None) -> bool:
        """The outbox is over its bound because the peer stopped reading; ``item`` is the newest."""
        if self.overflow == "block":
            try:
                self._flush_locked(block=True, deadline=deadline)
            except CallTimeout as exc:
                self._refuse(item)
                raise MailboxFull(f"{self.peer}'s mailbox stayed full until the deadline") from exc
            return True
        self._refuse(item)
        if self.overflow == "drop":
            self.dropped += 1
            return False
        raise MailboxFull(f"{self.peer}'s mailbox is full (overflow policy 'raise')")

    def cancel(self, msg_id: int) -> Any:
        """Forget a pending request (timeout or cancel); returns its waiter or None."""
        return self.pending.pop(msg_id, None)

    # ------------------------------------------------------------------ ends
    def fail_all(self, exc: BaseException, *, dead: bool = True, restarting: bool = False) -> None:
        """Fail every pending request with ``exc``; later sends fail too if ``dead``.

        Args:
            restarting: a new incarnation is coming; callers that opted in wait for it.
        """
        if dead:
            self.dead = exc
            self.restarting = restarting
        pending = self.pending
        for msg_id in list(pending):
            waiter = pending.pop(msg_id, None)
            if waiter is not None:
                waiter.resolve(False, exc)
        if dead:
            self._wake()

    def revive(self) -> None:
        """The peer is back (a restarted incarnation): accept sends again, and connect at once.

        ZeroMQ would reconnect by itself, but only at its next retry (up to
        ``RECONNECT_IVL_MAX`` later); reconnecting now takes that off the restart latency.
        """
        self.dead = None
        self.restarting = False
        if self.endpoint and not self._closed and self.lock.acquire(False):
            try:
                try:
                    self.sock.disconnect(self.endpoint)
                except zmq.ZMQError:
                    pass
                self.sock.connect(self.endpoint)
            finally:
                self._release()
        self._wake()

    def _wake(self) -> None:
        with self._alive:
            self._alive.notify_all()
            callbacks = list(self._alive_callbacks)
        for callback in callbacks:
            callback()

    def wait_alive(self, deadline: float | None) -> None:
        """Block while the peer is restarting (until revived, dead for good, or the deadline).

        Raises:
            CallTimeout: the deadline passed while it was still restarting.
        """
        with self._alive:
            while self.dead is not None and self.restarting and not self._closed:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise CallTimeout(f"{self.peer} was still restarting at the call's deadline")
                self._alive.wait(left)

    async def wait_alive_async(self, deadline: float | None) -> None:
        """``wait_alive`` for coroutines (on any loop: wake-ups cross threads safely)."""
        loop = asyncio.get_running_loop()
        while self.dead is not None and self.restarting and not self._closed:
            fut = loop.create_future()

            def wake(fut: asyncio.Future = fut) -> None:
                loop.call_soon_threadsafe(_set_none, fut)

            with self._alive:
                self._alive_callbacks.append(wake)
            try:
                if not (self.dead is not None and self.restarting):
                    return
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise CallTimeout(f"{self.peer} was still restarting at the call's deadline")
                try:
                    await asyncio.wait_for(fut, left)
                except asyncio.TimeoutError:
                    raise CallTimeout(f"{self.peer} was still restarting at the call's deadline") from None
            finally:
                with self._alive:
                    self._alive_callbacks.remove(wake)

    def retire(self) -> None:
        """The peer is gone for good (on the loop thread): close the socket, which zmq would
        otherwise keep reconnecting, and keep failing sends with the death error.

        A client that outlives many short-lived actors must not keep a socket (and its
        descriptors) for each; refs that still hold this connection get ``ActorDiedError``.
        """
        if self._closed or self.dead is None:
            return
        with self.lock:
            self._closed = True
            if self._armed:
                self.driver.loop.remove_reader(self._fd)
                self._armed = False
            self.outbox.clear()
            self.sock.close(linger=0)
        self._wake()

    def close(self, linger: float = 0.5) -> None:
        """Close the socket (on the loop thread); pending requests fail with ClosedError."""
        if self._closed:
            return
        with self.lock:
            if self.outbox and self.dead is None:
                try:
                    self._flush_locked(block=False)
                except Exception:
                    pass
            self._closed = True
            if self._armed:
                self.driver.loop.remove_reader(self._fd)
                self._armed = False
            self.sock.close(linger=int(linger * 1000))
        self.fail_all(ClosedError(f"connection to {self.peer} was closed"), dead=False)
        self._wake()
