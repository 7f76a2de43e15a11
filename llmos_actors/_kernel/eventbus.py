"""Topics: the daemon routes every published batch to every subscriber whose prefix matches.

    publisher XPUB --> [publish] SUB  daemon  ROUTER [events] <--> subscriber DEALER

Publishers connect to the daemon's SUB socket; subscribers connect a DEALER to
its ROUTER and register their prefixes there (the reply means "live": nothing
published after it is missed unless the subscriber falls behind). Batches are
forwarded as they arrived (one send per subscriber per batch, frames reused).

At-most-once to slow subscribers, counted exactly: a subscriber whose queue is
full (``topic_queue`` batches) misses the batch; the daemon counts it against
that subscriber (``llmos status``, ``topic_drops`` in ``llmos ps``) and tells it
how many it missed in the header of its next delivery. Publishers count their
own drops the same way and report them in their next batch (``pd``).

The daemon's own events go out on ``sys.`` topics: actor started, exited, restarted.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import msgpack
import zmq

from .._wire import protocol as P
from .._wire.codec import error_payload
from .._wire.topics import PUB, SYSTEM_PREFIX, array_body, check_topic, pub_header
from ..config import EVENTS_SOCKET, PUBLISH_SOCKET
from ..errors import ProtocolError
from .service import Service

log = logging.getLogger(__name__)

#: Batches read from publishers per wake-up before other callbacks get a turn.
READ_LIMIT = 256
#: Kernel socket buffer (bytes) per subscriber connection.
TOPIC_SOCKET_BUFFER = 256 * 1024
#: Topics whose subscriber list is remembered between subscription changes.
MATCH_CACHE = 4096

_NOBLOCK = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


@dataclass(eq=False)
class Subscriber:
    """One subscriber socket (a client subscription, or an actor's)."""

    ident: bytes
    who: str  # "actor:<id>" or "client:<pid>"
    prefixes: set[bytes] = field(default_factory=set)
    delivered: int = 0
    dropped: int = 0
    unreported: int = 0  # dropped since the last delivery (sent in the next header)

    def describe(self) -> dict:
        return {
            "who": self.who,
            "prefixes": sorted(p.decode(errors="replace") for p in self.prefixes),
            "delivered": self.delivered,
            "dropped": self.dropped,
        }


class EventBus(Service):
    """The topic router, on the daemon's loop."""

    name = "topics"

    def __init__(self, ctx: zmq.Context, config: Any, loop: Any) -> None:
        self.ctx = ctx
        self.config = config
        self.loop = loop
        self.subscribers: dict[bytes, Subscriber] = {}
        self.by_prefix: dict[bytes, set[bytes]] = {}
        self._match: OrderedDict[bytes, tuple[bytes, ...]] = OrderedDict()
        self.published = 0
        self.delivered = 0
        self.dropped = 0
        self.publisher_drops = 0
        self.malformed = 0
        self.daemon_events = 0
        self._sockets: list[zmq.Socket] = []

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        config = self.config
        inbox = self.ctx.socket(zmq.SUB)
        inbox.setsockopt(zmq.RCVHWM, config.topic_queue)
        inbox.setsockopt(zmq.LINGER, 0)
        inbox.setsockopt(zmq.SUBSCRIBE, b"")
        inbox.bind(config.endpoint(PUBLISH_SOCKET))
        outbox = self.ctx.socket(zmq.ROUTER)
        outbox.setsockopt(zmq.ROUTER_MANDATORY, 1)
        outbox.setsockopt(zmq.SNDHWM, config.topic_queue)
        # Small kernel buffers too: a stalled subscriber costs topic_queue batches, not megabytes.
        outbox.setsockopt(zmq.SNDBUF, TOPIC_SOCKET_BUFFER)
        outbox.setsockopt(zmq.RCVHWM, 1000)
        outbox.setsockopt(zmq.LINGER, 0)
        outbox.bind(config.endpoint(EVENTS_SOCKET))
        self.inbox, self.outbox = inbox, outbox
        self._sockets = [inbox, outbox]
        self.loop.add_reader(inbox.getsockopt(zmq.FD), self._on_published)
        self.loop.add_reader(outbox.getsockopt(zmq.FD), self._on_subscriber)

    async def stop(self) -> None:
        for sock in self._sockets:
            self.loop.remove_reader(sock.getsockopt(zmq.FD))
            sock.close(linger=0)
        self._sockets = []

    # ------------------------------------------------------------------ routing
    def _matching(self, topic: bytes) -> tuple[bytes, ...]:
        hit = self._match.get(topic)
        if hit is not None:
            return hit
        idents: set[bytes] = set()
        by_prefix = self.by_prefix
        for end in range(len(topic) + 1):
            found = by_prefix.get(topic[:end])
            if found:
                idents |= found
        result = tuple(idents)
        self._match[topic] = result
        if len(self._match) > MATCH_CACHE:
            self._match.popitem(last=False)
        return result

    def route(self, topic: bytes, head: Any, body: Any, n: int) -> None:
        """Send one batch to every matching subscriber (never blocking; full queues drop and count)."""
        self.published += n
        send = self.outbox.send_multipart
        for ident in self._matching(topic):
            sub = self.subscribers.get(ident)
            if sub is None:
                continue
            frame_head = pub_header(n, dropped=sub.unreported) if sub.unreported else head
            try:
                send([ident, topic, frame_head, body], _NOBLOCK, copy=False)
            except zmq.Again:
                sub.dropped += n
                sub.unreported += n
                self.dropped += n
                continue
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EHOSTUNREACH:
                    self._remove(ident)  # it went away without saying so
                    continue
                raise
            sub.unreported = 0
            sub.delivered += n
            self.delivered += n

    def _on_published(self) -> None:
        recv = self.inbox.recv_multipart
        for _ in range(READ_LIMIT):
            try:
                frames = recv(_NOBLOCK, copy=False)
            except zmq.Again:
                break
            try:
                topic, head_frame, body = frames
                head = P.parse_header(head_frame.bytes)
                n = head.get("n")
                if head["kind"] != PUB or type(n) is not int or n < 1:
                    raise ProtocolError("not a topic batch")
            except (ValueError, ProtocolError):
                self.malformed += 1
                continue
            pd = head.get("pd")
            if type(pd) is int and pd > 0:
                self.publisher_drops += pd
            self.route(topic.bytes, head_frame, body, n)
        else:
            self.loop.call_soon(self._on_published)
        self._check_subscribers()

    def _check_subscribers(self) -> None:
        # Sends on the ROUTER can swallow its fd's edge for control messages waiting there.
        if int(self.outbox.getsockopt(_EVENTS)) & _POLLIN:
            self.loop.call_soon(self._on_subscriber)

    def publish(self, topic: str, body: dict) -> None:
        """Publish one daemon event (on the daemon's loop thread)."""
        self.daemon_events += 1
        self.route(topic.encode(), pub_header(1), array_body([msgpack.packb(body)]), 1)
        self._check_subscribers()

    # ------------------------------------------------------------------ subscriptions
    def _on_subscriber(self) -> None:
        recv = self.outbox.recv_multipart
        for _ in range(READ_LIMIT):
            try:
                frames = recv(_NOBLOCK)
            except zmq.Again:
                break
            if len(frames) != 4 or frames[1] != b"":
                self.malformed += 1
                continue
            ident, _, head_raw, body = frames
            msg_id = 0
            try:
                head = P.parse_header(head_raw)
                msg_id = head["id"]
                self._control(ident, head, msgpack.unpackb(body))
            except (ProtocolError, ValueError, TypeError) as exc:
                self._reply(ident, msg_id, P.ERR, error_payload(exc, with_traceback=False))
        else:
            self.loop.call_soon(self._on_subscriber)

    def _control(self, ident: bytes, head: dict, args: Any) -> None:
        method = head.get("method")
        if type(args) is not list or len(args) != 2:
            raise ProtocolError("topic control body must be [prefixes, who]")
        prefixes, who = args
        if not isinstance(prefixes, list) or not isinstance(who, str):
            raise ProtocolError("topic control body must be [prefixes, who]")
        raw = [check_topic(p, publishing=False) for p in prefixes]
        if method == "subscribe":
            sub = self.subscribers.get(ident)
            if sub is None:
                sub = self.subscribers[ident] = Subscriber(ident, who[:200])
            for prefix in raw:
                sub.prefixes.add(prefix)
                self.by_prefix.setdefault(prefix, set()).add(ident)
            self._match.clear()
            self._reply(ident, head["id"], P.OK, len(sub.prefixes))
        elif method == "unsubscribe":
            sub = self.subscribers.get(ident)
            if sub is not None:
                for prefix in raw or list(sub.prefixes):
                    sub.prefixes.discard(prefix)
                    self._unindex(prefix, ident)
                if not sub.prefixes:
                    del self.subscribers[ident]
                self._match.clear()
            if head.get("kind") == P.CALL:
                self._reply(ident, head["id"], P.OK, None)
        else:
            raise ProtocolError(f"unknown topic control method {method!r}")

    def _reply(self, ident: bytes, msg_id: int, kind: str, value: Any) -> None:
        try:
            self.outbox.send_multipart([ident, b"", P.reply_header(kind, msg_id), msgpack.packb(value)], _NOBLOCK)
        except zmq.ZMQError:
            pass  # gone, or hopelessly behind: it will time out and retry

    def _unindex(self, prefix: bytes, ident: bytes) -> None:
        idents = self.by_prefix.get(prefix)
        if idents is not None:
            idents.discard(ident)
            if not idents:
                del self.by_prefix[prefix]

    def _remove(self, ident: bytes) -> None:
        sub = self.subscribers.pop(ident, None)
        if sub is not None:
            for prefix in sub.prefixes:
                self._unindex(prefix, ident)
            self._match.clear()

    def on_actor_exit(self, record: Any) -> None:
        """An actor's subscriptions go with it."""
        who = f"actor:{record.id}"
        for ident in [i for i, s in self.subscribers.items() if s.who == who]:
            self._remove(ident)

    # ------------------------------------------------------------------ reporting
    def drops_of(self, who: str) -> int:
        return sum(s.dropped for s in self.subscribers.values() if s.who == who)

    def status(self) -> dict:
        return {
            "subscribers": len(self.subscribers),
            "published": self.published,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "publisher_drops": self.publisher_drops,
            "daemon_events": self.daemon_events,
            "malformed": self.malformed,
            "slowest": sorted((s.describe() for s in self.subscribers.values()), key=lambda d: -d["dropped"])[:5],
            "system_prefix": SYSTEM_PREFIX,
        }
