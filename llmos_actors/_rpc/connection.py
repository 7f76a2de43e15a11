"""One DEALER socket to one peer (an actor, or the daemon's control socket): sending and the peer's life.

``SocketLink`` (``link.py``) shares the socket between the IO loop and caller threads;
``Outbox`` orders, batches and bounds what waits to leave; ``Replies`` routes what arrives.
"""

from __future__ import annotations

import asyncio
from typing import Any

import zmq

from .._wire import protocol as P
from ..errors import ClosedError
from .frames import get_option as _get
from .frames import recv_message
from .link import READ_SLICE, SocketLink

__all__ = ["READ_SLICE", "Connection"]

_BATCH = P.BATCH_MAX_ITEMS
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)
_Again = zmq.Again


class Connection(SocketLink):
    """The ways to send to the peer, and what happens when it dies, restarts or is closed.

    Four ways to send, one per caller: ``call_blocking`` (a blocked caller that reads its own
    reply), ``request`` (a request whose reply the loop reads: asks, asyncio calls, batched),
    ``send_now`` (a small control message that must leave at once) and ``tell``/``tell_async``
    (one-way messages, under the overflow policy).
    """

    #: Set by the owning ``ClientCore`` (tracing): its call tracer and the root spans awaiting replies.
    tracer: Any = None
    roots: dict = {}

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
                    self.outbox.push((head, body, bufs, prio))
                    self._flush_locked(block=True, deadline=deadline)
                else:
                    self._send_locked([head, body, *bufs], block=True, deadline=deadline)
            except BaseException:
                self._direct -= 1
                self.pending.pop(msg_id, None)
                raise
            self._read_locked(waiter.finished)
        finally:
            self._release()

    def _read_locked(self, finished: Any) -> None:
        """Read replies on this thread until ``finished()`` or for ``READ_SLICE`` seconds at most.

        Then the caller sleeps on its waiter and the loop reads for it (see ``_release``).
        """
        # Blocking receive with the socket's RCVTIMEO (= READ_SLICE): cheaper than poll + recv.
        clock = self.clock
        end = clock() + READ_SLICE
        sock = self.sock
        while not finished():
            try:
                frames = recv_message(sock, 0, 2)
            except _Again:
                break
            self.route(frames)
            if clock() > end:
                break
        # Read everything already here so the loop is not left with a silent socket.
        # (Only if the loop reads for others: then it relies on the fd's edge we just ate.)
        if (self.pending or self.always_armed) and _get(sock, _EVENTS) & _POLLIN:
            self._drain_locked()
        self._direct -= 1  # not done yet? the loop takes over reading (see _release)

    def pump(self, waiter: Any) -> None:
        """A caller about to block on ``waiter`` (an ask's future) sends and reads for it on its own
        thread for a slice, as ``call_blocking`` does, instead of waking the loop for every batch:
        pipelined asks then cost no thread hand-off (``llmos bench`` 1_1_actor_calls_pipelined).

        Does nothing if the loop or another caller holds the socket: the waiter is served anyway.
        """
        if not self.lock.acquire(False):
            return
        try:
            if self._closed:
                return
            self._direct += 1
            if self.outbox:
                self._flush_locked(block=False)
            self._read_locked(waiter.finished)
        finally:
            self._release()

    def send_now(self, msg_id: int | None, head: bytes, body: bytes, bufs: list, waiter: Any = None) -> None:
        """Send one small control message at once, from any thread (stream credit, notices to the daemon)."""
        lock = self.lock
        lock.acquire()
        try:
            if waiter is not None:
                self.pending[msg_id] = waiter  # type: ignore[index]
            self._check_open()  # after registering: see call_blocking
            # Messages that expect a reply are never dropped: if the peer is not reading, they
            # wait in the outbox (the caller holds a waiter for each, so it bounds them itself).
            if self.outbox:
                self.outbox.push((head, body, bufs, None))
                self._flush_locked(block=False)
            elif not self._send_locked([head, body, *bufs], block=False):
                self.outbox.push((head, body, bufs, None))
        except BaseException:
            if waiter is not None:
                self.pending.pop(msg_id, None)  # type: ignore[arg-type]
            raise
        finally:
            self._release()

    def request(self, msg_id: int, head: bytes, body: bytes, bufs: list, waiter: Any, prio: int | None = None) -> None:
        """Queue a request whose reply the loop reads, from any thread; it leaves batched with its
        neighbours (a full batch at once, by the caller; the rest when the loop next turns).

        Pipelined asks pay one loop wake-up per batch instead of a socket send each.
        """
        with self.lock:
            self.pending[msg_id] = waiter
            try:
                self._check_open()  # after registering: see call_blocking
            except BaseException:
                self.pending.pop(msg_id, None)
                raise
            outbox = self.outbox
            outbox.push((head, body, bufs, prio))
            if len(outbox) >= _BATCH:
                self._flush_locked(block=False)
            if self._io_scheduled and not self._io_wanted:
                return  # the loop flushes (and reads) soon anyway
        self._schedule_io()

    def tell(
        self, head: bytes, body: bytes, bufs: list, *, deadline: float | None = None, prio: int | None = None
    ) -> bool:
        """Queue a one-way message; the loop sends it (batched) shortly. Blocks under policy ``block``.

        Returns False if the message was dropped by the ``drop`` overflow policy.

        Raises:
            MailboxFull: the peer is not keeping up and the policy is ``raise``
                (or ``block`` and ``deadline`` passed).
        """
        outbox = self.outbox
        with self.lock:
            if self._closed or self.dead is not None:
                self._check_open()
            while outbox.full and not self._flush_locked(block=False) and outbox.full:
                if not outbox.on_full(deadline):
                    return False
                self._wait_room_locked(deadline)
            outbox.push((head, body, bufs, prio))
            n = len(outbox)
            if n >= _BATCH:
                self._flush_locked(block=False)
        # One loop wake-up per batch: the first message of a batch schedules the flush; the
        # rest ride along (or the caller sends them itself when the batch is full).
        if (n == 1 and not self._io_scheduled) or self._io_wanted:
            self._schedule_io()
        return True

    def _wait_room_locked(self, deadline: float | None) -> None:
        """Wait (at most one poll slice) until the socket takes messages; read replies meanwhile."""
        self._drain_locked()
        left = self.outbox.left(deadline)
        self.sock.poll(50 if left is None else max(1, min(50, int(left * 1000))), _POLLOUT)

    async def tell_async(
        self, head: bytes, body: bytes, bufs: list, *, deadline: float | None = None, prio: int | None = None
    ) -> bool:
        """``tell`` for asyncio callers: waits (policy ``block``) without blocking the loop."""
        outbox = self.outbox
        while True:
            with self.lock:
                self._check_open()
                if not outbox.full:
                    outbox.push((head, body, bufs, prio))
                    break
                if not outbox.on_full(deadline):
                    return False
            if self._writable is None:
                self._writable = asyncio.Event()
            self._writable.clear()
            self._schedule_io()
            try:
                await asyncio.wait_for(self._writable.wait(), outbox.left(deadline))
            except asyncio.TimeoutError:
                pass  # on_full decides: the deadline has passed
        if len(outbox) >= _BATCH:
            self._io()
        else:
            self._schedule_io()
        return True

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
        self.liveness.wake()

    def wait_alive(self, deadline: float | None) -> None:
        """Block while the peer is restarting (until revived, dead for good, or the deadline).

        Raises:
            CallTimeout: the deadline passed while it was still restarting.
        """
        self.liveness.wait(deadline)

    async def wait_alive_async(self, deadline: float | None) -> None:
        """``wait_alive`` for coroutines (on any loop: wake-ups cross threads safely)."""
        await self.liveness.wait_async(deadline)

    def retire(self) -> None:
        """The peer is gone for good (on the loop thread): close the socket, which zmq would
        otherwise keep reconnecting, and keep failing sends with the death error.

        A client that outlives many short-lived actors must not keep a socket (and its
        descriptors) for each; refs that still hold this connection get ``ActorDiedError``.
        """
        if self._closed or self.dead is None:
            return
        with self.lock:
            self.outbox.clear()
            self._shut_locked(0)
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
            self._shut_locked(int(linger * 1000))
        self.fail_all(ClosedError(f"connection to {self.peer} was closed"), dead=False)
        self._wake()

    def _shut_locked(self, linger_ms: int) -> None:
        self._closed = True
        if self._armed:
            self.driver.loop.remove_reader(self._fd)
            self._armed = False
        self.sock.close(linger=linger_ms)
