"""The receiving side of a ROUTER socket: parse requests, hand them on, batch replies.

Used by every actor (its own socket) and by the daemon (the control socket).
Malformed input never raises out of here: it becomes an error reply when the
request id can be read, and a counted drop when it cannot (``requests``: decoding).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgpack
import zmq

from .._wire import protocol as P
from .._wire.codec import Codec, error_payload
from .driver import LoopDriver
from .frames import get_option as _get
from .frames import recv_message, send_message
from .requests import Request, RequestReader
from .router import make_router  # noqa: F401  (where callers have always found it)
from .tcp import BY_VALUE_PREFIX

log = logging.getLogger(__name__)

#: Messages read per wake-up before other callbacks get a turn.
DRAIN_LIMIT = 256

_NOBLOCK = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_Again = zmq.Again
_PING = msgpack.packb({"event": "ping"})


def _property(frame: Any, name: str) -> str | None:
    try:
        return frame.get(name)
    except (zmq.ZMQError, AttributeError):
        return None


class RpcServer(RequestReader):
    """Reads requests from a bound ROUTER and sends replies, batched per caller.

    Args:
        driver: the loop to run on (the server is used from that loop's thread only).
        sock: a bound ROUTER (see ``make_router``); owned by this object.
        codec: decodes request bodies and encodes replies.
        on_request: called with each valid ``Request`` (CALL/TELL/STREAM/CANCEL/CREDIT).
        max_message_bytes: larger requests get a ProtocolError reply.
    """

    def __init__(
        self,
        driver: LoopDriver,
        sock: zmq.Socket,
        codec: Codec,
        on_request: Callable[[Request], None],
        *,
        max_message_bytes: int,
        identify: bool = False,
    ) -> None:
        self.driver = driver
        #: Read each message's transport properties (``Peer-Address``, ``User-Id``) into ``current_peer``.
        self.identify = identify
        #: ``(peer_address, user_id)`` of the message being handled (``identify`` servers only).
        self.current_peer: tuple[str | None, str | None] = (None, None)
        self.loop = driver.loop
        self.sock = sock
        self.codec = codec
        self.on_request = on_request
        self.max_message_bytes = max_message_bytes
        self.stats = driver.stats
        self.paused = False
        #: True while ``_on_readable`` runs (it pumps and flushes at its end itself).
        self.in_callback = False
        #: Called after each burst of reads (the actor's executor starts queued work there).
        self.after_read: Callable[[], None] | None = None
        self._gone: dict[bytes, None] = {}  # callers whose replies were unroutable (recent, bounded)
        self.cut_off: dict[bytes, None] = {}  # callers that stopped reading (bounded; see ``_cut_off``)
        self._fd: int = sock.getsockopt(zmq.FD)  # type: ignore[assignment]
        self._outbox: dict[bytes, list[tuple[bytes, bytes]]] = {}
        self._flush_scheduled = False
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.loop.add_reader(self._fd, self._on_readable)
        self.loop.call_soon(self._on_readable)

    def pause_reading(self) -> None:
        """Stop taking messages (mailbox full): zmq's queues fill and senders feel it."""
        self.paused = True

    def resume_reading(self) -> None:
        if self.paused:
            self.paused = False
            self.loop.call_soon(self._on_readable)

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        self.loop.remove_reader(self._fd)
        self.sock.close(linger=200)

    # ------------------------------------------------------------------ reading
    def _on_readable(self) -> None:
        if self.paused or self._closed:
            return
        # While this runs, replies and new work need no extra loop turn: the pump runs
        # below and the flush at the end sends every reply made meanwhile.
        self.in_callback = True
        try:
            if self.intake():
                self.loop.call_soon(self._on_readable)
            if self.after_read is not None:
                self.after_read()
        finally:
            self.in_callback = False
        self.flush()

    def has_input(self) -> bool:
        return not self.paused and bool(_get(self.sock, _EVENTS) & _POLLIN)

    def intake(self) -> bool:
        """Read what waits on the socket (up to ``DRAIN_LIMIT`` messages); True if more remains.

        The executor calls this before each slice of work, so a high-priority request that
        arrived meanwhile is in the mailbox before the next one is chosen.
        """
        if self.paused or self._closed:
            return False
        sock = self.sock
        handle = self._handle
        for _ in range(DRAIN_LIMIT):
            # Ask before reading: pyzmq's "nothing there" exception costs several times an
            # EVENTS query (it builds enums and a message), and every drain would end in one.
            if not _get(sock, _EVENTS) & _POLLIN:
                return False
            try:
                # [ident, head, body] as bytes, buffers as frames
                frames = self._recv_identified() if self.identify else recv_message(sock, _NOBLOCK, 3)
            except _Again:
                return False
            handle(frames)
            if self.paused or self._closed:
                return False
        return True

    def _recv_identified(self) -> list:
        """One message, noting who sent it: the kernel's peer credentials or the ZAP user id."""
        frames = self.sock.recv_multipart(_NOBLOCK, copy=False)
        first = frames[0]
        self.current_peer = (_property(first, "Peer-Address"), _property(first, "User-Id"))
        return [f.bytes if i < 3 else f for i, f in enumerate(frames)]

    # ------------------------------------------------------------------ replying
    def reply(self, ident: bytes, msg_id: int, kind: str, value: Any) -> None:
        """Queue a reply; small ones are batched per caller and flushed this loop turn."""
        try:
            body, bufs = self.codec.pack(value, by_value=ident.startswith(BY_VALUE_PREFIX))
        except Exception as exc:  # cannot travel, or no room in the page pool: the caller still gets a reply
            kind, value = P.ERR, error_payload(exc, with_traceback=False)
            body, bufs = self.codec.pack(value)
        head = P.reply_header(kind, msg_id)
        if bufs or len(body) > P.BATCH_ITEM_MAX_BYTES:
            self._flush_one(ident)
            self._send([ident, head, body, *bufs])
            return
        queue = self._outbox.get(ident)
        if queue is None:
            self._outbox[ident] = [(head, body)]
        else:
            queue.append((head, body))
        if not self._flush_scheduled and not self.in_callback:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def reply_error(self, ident: bytes, msg_id: int, exc: BaseException, *, with_traceback: bool = False) -> None:
        self.reply(ident, msg_id, P.ERR, error_payload(exc, with_traceback=with_traceback))

    def notify(self, ident: bytes, body: dict) -> None:
        """Send an unsolicited notice to a caller (death notices, deliveries)."""
        self.reply(ident, 0, P.NOTICE, body)

    def ping(self, ident: bytes) -> bool:
        """Whether a caller is still connected (a notice it ignores; unroutable means gone)."""
        if ident in self._gone:
            return False
        self.flush()
        self._send([ident, P.reply_header(P.NOTICE, 0), _PING])
        return ident not in self._gone

    def gone(self, ident: bytes) -> bool:
        """Whether replies to this caller recently could not be delivered (it disconnected)."""
        return ident in self._gone

    def _cut_off(self, ident: bytes) -> None:
        """A caller that does not read its replies (its send queue is full): serve it no more.

        Its replies are dropped and its requests ignored from now on, so it cannot make this
        process hold more than ``send_queue`` messages for it. (ZeroMQ cannot close one peer of a
        bound socket; a client that reconnects gets a new routing id and a fresh start.)
        """
        if ident not in self.cut_off:
            self._count("clients_cut_off")
            log.warning("a client stopped reading its replies: it is cut off (send queue full)")
            self.cut_off[ident] = None
            if len(self.cut_off) > 4096:
                del self.cut_off[next(iter(self.cut_off))]
        self._outbox.pop(ident, None)

    def flush(self) -> None:
        self._flush_scheduled = False
        if not self._outbox:
            return
        for ident in list(self._outbox):
            self._flush_one(ident)
        # Sending processes the socket's pending commands, which can swallow the fd's
        # edge for requests that arrived meanwhile: look, and read them if so.
        if not self.paused and not self._closed and _get(self.sock, _EVENTS) & _POLLIN:
            self.loop.call_soon(self._on_readable)

    def _flush_one(self, ident: bytes) -> None:
        queue = self._outbox.pop(ident, None)
        if not queue:
            return
        while queue and ident not in self.cut_off:
            chunk, queue = queue[: P.BATCH_MAX_ITEMS], queue[P.BATCH_MAX_ITEMS :]
            if len(chunk) == 1:
                self._send([ident, chunk[0][0], chunk[0][1]])
            else:
                body = P.batch_body([P.batch_item(h, b) for h, b in chunk])
                self._send([ident, P.batch_header(len(chunk)), body])

    def _send(self, frames: list) -> None:
        if self._closed:
            return
        try:
            send_message(self.sock, frames, _NOBLOCK)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                self._count("replies_unroutable")  # the caller went away
                self._gone[frames[0]] = None
                if len(self._gone) > 1024:
                    del self._gone[next(iter(self._gone))]
            elif exc.errno == zmq.EAGAIN:
                self._cut_off(frames[0])
            else:
                self._count("replies_failed")
                log.warning("reply could not be sent: %s", exc)
