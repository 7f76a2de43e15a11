"""Publishing and subscribing at the socket level (the public API lives in ``topics.py``).

``Publisher``: one socket per client handle. ``publish`` packs on the caller's
thread (errors surface there) and queues; the loop (or the caller, once far
ahead) sends the queue as per-topic batches, never blocking: a full queue drops
the batch, counts it, and reports the count to the daemon with the next one.

``SubscriberSocket``: a DEALER to the daemon's topic router. ``subscribe``
registers prefixes and waits for the daemon's reply, after which nothing
published is missed unless this subscriber falls behind; the daemon then
counts what it missed and says so in the next delivery's header.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import Any

import msgpack
import zmq

from .._wire import fastpack
from .._wire import protocol as P
from .._wire.codec import Codec, error_from_payload
from .._wire.limits import CONTROL_FRAME_BYTES, frame_limit, limit_inbound
from .._wire.topics import BATCH_MAX_ITEMS as TOPIC_BATCH_ITEMS
from .._wire.topics import array_body, check_topic, parse_delivery, pub_header
from ..config import EVENTS_SOCKET, PUBLISH_SOCKET, Config
from ..errors import CallTimeout, DaemonUnavailable, ProtocolError
from .driver import LoopDriver
from .tcp import secure_client

#: The caller sends the queue itself once this many messages wait (it is far ahead of the loop).
FLUSH_AT = TOPIC_BATCH_ITEMS
#: Messages an asyncio publisher may queue while the daemon is full; more are dropped, counted.
MAX_QUEUE = 65_536
#: Seconds before the loop retries sending to a full daemon.
RETRY_DELAY = 0.002

_NOBLOCK = int(zmq.NOBLOCK)
_packb = fastpack.packb


class Publisher:
    """A batching publisher; safe to use from any thread.

    A synchronous ``publish`` is held back while the daemon's queue is full (the
    daemon is the bottleneck: slowing the producer loses nothing). The loop never
    blocks: an asyncio publisher's queue is bounded by ``MAX_QUEUE`` and beyond that
    new messages are dropped and counted (``dropped``, and the daemon's ``publisher_drops``).
    """

    def __init__(self, driver: LoopDriver, ctx: zmq.Context, config: Config, codec: Codec) -> None:
        self.driver = driver
        self.codec = codec
        self.max_bytes = config.max_message_bytes
        # An XPUB, not a PUB: it hears the daemon's "subscribe to everything" once the
        # connection is up (so the first messages are not lost to a half-made connection),
        # and with NODROP a full queue is an error we can act on instead of a silent loss.
        self.sock = ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.XPUB_NODROP, 1)
        self.sock.setsockopt(zmq.SNDHWM, config.topic_queue)
        self.sock.setsockopt(zmq.LINGER, 500)
        limit_inbound(self.sock, CONTROL_FRAME_BYTES)
        secure_client(self.sock, config)
        self.sock.connect(config.endpoint(PUBLISH_SOCKET))
        if not self.sock.poll(int(config.connect_timeout * 1000), zmq.POLLIN):
            self.sock.close(linger=0)
            raise DaemonUnavailable(f"the daemon's topic socket did not answer within {config.connect_timeout} s")
        self.sock.recv()
        self.lock = threading.Lock()
        self._last_topic: str | None = None
        self._last_raw = b""
        #: Batches being filled, oldest first: ``[topic, bodies, bytes]`` (one topic each).
        self.queue: deque[list] = deque()
        self._filling: list | None = None  # the newest batch while it may still grow
        self.queued = 0  # messages in ``queue``
        self.sent = 0
        self.dropped = 0
        self._unreported = 0
        self._scheduled = False
        self._closed = False

    def publish(self, topic: str, msg: Any, *, block: bool = True) -> None:
        """Queue ``msg`` for ``topic``; it leaves within this loop turn, batched with its neighbours.

        Args:
            block: wait while the daemon's queue is full (False on an event loop).

        Raises:
            TypeError / ValueError: a bad topic, or a payload that cannot travel.
            ProtocolError: the payload exceeds ``max_message_bytes``.
        """
        if topic is self._last_topic:  # a stream of messages on one topic: checked once
            raw_topic = self._last_raw
        else:
            raw_topic = check_topic(topic)
            self._last_topic, self._last_raw = topic, raw_topic
        try:
            body = _packb(msg)  # plain data: the common case, no hooks
        except (TypeError, ValueError, OverflowError):
            # Large arrays and tensors travel as page handles valid for every subscriber
            # (fanout); without a pool they are copied inline (a batch has no room for frames).
            body, bufs = self.codec.pack(msg, fanout=True)
            if bufs:
                body, _ = self.codec.pack(msg, inline=True)
        size = len(body)
        if size > self.max_bytes:
            raise ProtocolError(f"payload of {size} bytes exceeds max_message_bytes={self.max_bytes}")
        with self.lock:
            if self._closed:
                raise ValueError("publisher is closed")
            if not block and self.queued >= MAX_QUEUE:
                self.dropped += 1
                self._unreported += 1
                return
            # Batches form as messages arrive: the flush only sends them.
            batch = self._filling
            if (
                batch is not None
                and batch[0] == raw_topic
                and batch[2] < P.BATCH_MAX_BYTES
                and len(batch[1]) < TOPIC_BATCH_ITEMS
            ):
                batch[1].append(body)
                batch[2] += size
            else:
                self._filling = batch = [raw_topic, [body], size]
                self.queue.append(batch)
            queued = self.queued = self.queued + 1
            if queued >= FLUSH_AT:
                self._flush_locked(block)
            if not self._scheduled and self.queue:
                self._scheduled = True
                self.driver.call_soon(self.flush)

    def flush(self) -> None:
        """Send what is queued without blocking (on the loop); retry shortly if the daemon is full."""
        with self.lock:
            self._scheduled = False
            self._flush_locked(False)
            if self.queue and not self._closed:
                self._scheduled = True
                self.driver.loop.call_later(RETRY_DELAY, self.flush)

    def _flush_locked(self, block: bool) -> None:
        queue = self.queue
        send = self.sock.send_multipart
        while queue and not self._closed:
            topic, payloads, _ = queue[0]
            head = pub_header(len(payloads), pd=self._unreported) if self._unreported else pub_header(len(payloads))
            try:
                send([topic, head, array_body(payloads)], _NOBLOCK)
            except zmq.Again:
                if not block:
                    return
                self.sock.poll(100, zmq.POLLOUT)  # the daemon is behind: hold the producer back
                continue
            if queue.popleft() is self._filling:
                self._filling = None
            self.queued -= len(payloads)
            self._unreported = 0
            self.sent += len(payloads)

    def close(self) -> None:
        with self.lock:
            deadline = time.monotonic() + 1.0
            while self.queue and time.monotonic() < deadline:
                self._flush_locked(False)
                if self.queue:
                    self.sock.poll(50, zmq.POLLOUT)
            self.dropped += self.queued
            self._closed = True
            self.sock.close()


class SubscriberSocket:
    """One DEALER to the daemon's topic router, for any number of prefixes."""

    def __init__(self, ctx: zmq.Context, config: Config, codec: Codec, who: str) -> None:
        self.codec = codec
        self.who = who
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.RCVHWM, config.topic_queue)
        self.sock.setsockopt(zmq.RCVBUF, 256 * 1024)
        self.sock.setsockopt(zmq.LINGER, 200)
        limit_inbound(self.sock, frame_limit(config.max_message_bytes))
        secure_client(self.sock, config)
        self.sock.connect(config.endpoint(EVENTS_SOCKET))
        self.prefixes: list[str] = []
        self.dropped = 0
        self.malformed = 0
        self.buffer: deque[tuple[str, Any]] = deque()
        self._ids = itertools.count(1)
        self._acks: dict[int, Any] = {}

    @property
    def fd(self) -> int:
        return int(self.sock.getsockopt(zmq.FD))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ control
    def request(self, method: str, prefixes: list[str]) -> int:
        """Send a subscribe/unsubscribe request; returns its id (the reply arrives with deliveries)."""
        for prefix in prefixes:
            check_topic(prefix, publishing=False)
        msg_id = next(self._ids)
        head = P.request_header(P.CALL, msg_id, method)
        self.sock.send_multipart([b"", head, msgpack.packb([prefixes, self.who])])
        if method == "subscribe":
            self.prefixes.extend(prefixes)
        return msg_id

    def acked(self, msg_id: int) -> bool:
        """Whether the reply to ``msg_id`` arrived (raises the daemon's error if it refused)."""
        if msg_id not in self._acks:
            return False
        ok, value = self._acks.pop(msg_id)
        if not ok:
            raise value
        return True

    def subscribe(self, prefixes: list[str], timeout: float = 10.0) -> None:
        """Register prefixes and block until the daemon confirms (reading deliveries meanwhile).

        Raises:
            CallTimeout: the daemon did not answer (it is gone or overloaded).
        """
        msg_id = self.request("subscribe", prefixes)
        deadline = time.monotonic() + timeout
        while not self.acked(msg_id):
            left = deadline - time.monotonic()
            if left <= 0:
                raise CallTimeout(f"the daemon did not confirm the subscription to {prefixes} within {timeout} s")
            if self.sock.poll(max(1, int(left * 1000)), zmq.POLLIN):
                self.read_available()

    # ------------------------------------------------------------------ reading
    def read_available(self, limit: int = 1 << 30) -> int:
        """Move what the socket holds into ``buffer`` (decoded); returns messages read."""
        recv = self.sock.recv_multipart
        count = 0
        while count < limit:
            try:
                frames = recv(_NOBLOCK)
            except zmq.Again:
                break
            count += 1
            message = self.accept(frames)
            if message is not None:
                topic, payloads = message
                self.buffer.extend((topic, p) for p in payloads)
        return count

    def accept(self, frames: list) -> tuple[str, list] | None:
        """Decode one frame set: a delivery ``(topic, payloads)``, or None (a control reply, or garbage)."""
        if frames and frames[0] == b"":
            self._control_reply(frames)
            return None
        try:
            topic, head, payloads = parse_delivery(frames, self.codec.unpack)
        except ProtocolError:
            self.malformed += 1
            return None
        missed = head.get("dropped")
        if type(missed) is int and missed > 0:
            self.dropped += missed
        return topic, payloads

    def _control_reply(self, frames: list) -> None:
        try:
            head = P.parse_header(frames[1])
            value = msgpack.unpackb(frames[2])
        except (ProtocolError, IndexError, ValueError):
            self.malformed += 1
            return
        if head["kind"] == P.OK:
            self._acks[head["id"]] = (True, value)
        else:
            self._acks[head["id"]] = (False, error_from_payload(value))

    def close(self) -> None:
        try:
            if self.prefixes:
                head = P.request_header(P.TELL, 0, "unsubscribe")
                self.sock.send_multipart([b"", head, msgpack.packb([[], self.who])], _NOBLOCK)
        except zmq.ZMQError:
            pass
        self.sock.close(linger=200)
