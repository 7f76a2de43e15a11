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
Registering subscribers (limits, roles) is ``topic_subscriptions``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

import msgpack
import zmq

from .._wire import protocol as P
from .._wire.limits import CONTROL_FRAME_BYTES, frame_limit, limit_inbound
from .._wire.topics import PUB, SYSTEM_PREFIX, array_body, pub_header, refuse_topic
from ..config import EVENTS_SOCKET, PUBLISH_SOCKET
from ..errors import ProtocolError
from .service import Service
from .topic_subscriptions import READ_LIMIT, Subscriber, TopicSubscriptions, peer_of

log = logging.getLogger(__name__)

#: Kernel socket buffer (bytes) per subscriber connection.
TOPIC_SOCKET_BUFFER = 256 * 1024
#: Default bounds on subscriptions (``[limits]`` overrides them).
DEFAULT_MAX_PREFIXES = 1024
DEFAULT_MAX_SUBSCRIBERS = 4096
#: Topics whose subscriber list is remembered between subscription changes.
MATCH_CACHE = 4096
#: A publisher reports at most this many of its own drops in one batch header (more is a lie).
MAX_REPORTED_DROPS = 1 << 32

_NOBLOCK = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


class EventBus(TopicSubscriptions, Service):
    """The topic router, on the daemon's loop."""

    name = "topics"

    def __init__(self, ctx: zmq.Context, config: Any, loop: Any) -> None:
        self.ctx = ctx
        self.config = config
        self.loop = loop
        self.subscribers: dict[bytes, Subscriber] = {}
        self.by_prefix: dict[bytes, set[bytes]] = {}
        self._match: OrderedDict[bytes, tuple[bytes, ...]] = OrderedDict()
        self._lengths: list[int] = []  # distinct lengths of subscribed prefixes, ascending
        #: Refusals go on ``sys.audit`` (the daemon sets it).
        self.audit: Any = None
        #: Most prefixes one subscriber socket may hold (``[limits] subscriptions``).
        self.max_prefixes = DEFAULT_MAX_PREFIXES
        #: Most subscriber sockets at once (``[limits] subscribers``).
        self.max_subscribers = DEFAULT_MAX_SUBSCRIBERS
        self.refused = 0
        self._held: dict[str, int] = {}  # prefixes held per peer process
        self._peer = ""  # the peer of the control message being handled
        self._user = ""  # its transport identity (CURVE key name), "" on unix sockets
        #: The transport identity of peer daemons' relays (``[cluster]``; "" outside a cluster).
        self.relay_user = ""
        #: Called when the subscribed prefixes change (the cluster relay follows them).
        self.on_prefixes_changed: Any = None
        #: ``fn(done)``: calls ``done`` once the other nodes of a cluster know this node's prefixes
        #: (the cluster relay sets it), so a subscription is confirmed only once publishes anywhere reach it.
        self.when_relayed: Any = None
        #: ``may(peer_address, user_id, action) -> why not ("" if allowed)``: roles (the daemon sets it).
        self.may: Any = None
        self._verdicts: dict[tuple, str] = {}
        self.published = 0
        self.delivered = 0
        self.dropped = 0
        self.publisher_drops = 0
        self.malformed = 0
        self.daemon_events = 0
        self._sockets: list[zmq.Socket] = []
        self._read_pending = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        config = self.config
        inbox = self.ctx.socket(zmq.SUB)
        inbox.setsockopt(zmq.RCVHWM, config.topic_queue)
        inbox.setsockopt(zmq.LINGER, 0)
        inbox.setsockopt(zmq.SUBSCRIBE, b"")
        limit_inbound(inbox, frame_limit(config.max_message_bytes))
        inbox.bind(config.endpoint(PUBLISH_SOCKET))
        outbox = self.ctx.socket(zmq.ROUTER)
        outbox.setsockopt(zmq.ROUTER_MANDATORY, 1)
        outbox.setsockopt(zmq.SNDHWM, config.topic_queue)
        # Small kernel buffers too: a stalled subscriber costs topic_queue batches, not megabytes.
        outbox.setsockopt(zmq.SNDBUF, TOPIC_SOCKET_BUFFER)
        outbox.setsockopt(zmq.RCVHWM, 1000)
        outbox.setsockopt(zmq.LINGER, 0)
        limit_inbound(outbox, CONTROL_FRAME_BYTES)
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
        # Only the lengths some prefix has are looked up: the work is bounded by the number of
        # distinct prefix lengths (at most MAX_TOPIC_BYTES + 1), not by the topic's length squared.
        idents: set[bytes] = set()
        by_prefix = self.by_prefix
        size = len(topic)
        for end in self._lengths:
            if end > size:
                break
            found = by_prefix.get(topic[:end])
            if found:
                idents |= found
        result = tuple(idents)
        self._match[topic] = result
        if len(self._match) > MATCH_CACHE:
            self._match.popitem(last=False)
        return result

    def _index_changed(self) -> None:
        self._match.clear()
        self._lengths = sorted({len(p) for p in self.by_prefix})
        if self.on_prefixes_changed is not None:
            self.on_prefixes_changed()

    def local_prefixes(self) -> set[bytes]:
        """Prefixes held by this node's own subscribers (not by peer daemons' relays)."""
        subs = self.subscribers
        return {p for p, idents in self.by_prefix.items() if any(not subs[i].relay for i in idents if i in subs)}

    def route(self, topic: bytes, head: Any, body: Any, n: int, relayed: bool = False, missed: int = 0) -> None:
        """Send one batch to every matching subscriber (never blocking; full queues drop and count).

        ``relayed``: the batch came from a peer daemon (it goes to this node's subscribers only),
        whose relay had missed ``missed`` messages before it (told to the receivers, like their own).
        """
        if not relayed:  # relayed ones are counted per peer (``llmos status`` -> cluster)
            self.published += n
        send = self.outbox.send_multipart
        for ident in self._matching(topic):
            sub = self.subscribers.get(ident)
            if sub is None or (relayed and sub.relay):
                continue
            extra = sub.unreported + missed
            frame_head = pub_header(n, dropped=extra) if extra else head
            try:
                send([ident, topic, frame_head, body], _NOBLOCK, copy=False)
            except zmq.Again:
                sub.dropped += n
                sub.unreported += n + missed
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
                # n messages take at least n bytes of body: a larger count is a lie that would
                # inflate every counter (and overflow what status can send)
                if head["kind"] != PUB or type(n) is not int or not 1 <= n <= len(body):
                    raise ProtocolError("not a topic batch")
            except (ValueError, ProtocolError):
                self.malformed += 1
                continue
            raw = topic.bytes
            why = refuse_topic(raw) or self._refuse_role(topic, "publish")
            if why:
                self._refuse_published(topic, why)
                continue
            pd = head.get("pd")
            if type(pd) is int and 0 < pd <= MAX_REPORTED_DROPS:
                self.publisher_drops += pd
            self.route(raw, head_frame, body, n)
        else:
            self.loop.call_soon(self._on_published)
        self._check_subscribers()

    def _refuse_role(self, frame: Any, action: str) -> str:
        """Why the sender of ``frame`` may not ``action`` ("" if it may): its role, from the transport."""
        if self.may is None:
            return ""
        try:
            user = frame.get("User-Id")
        except zmq.ZMQError:
            user = None
        key = (peer_of(frame), user, action)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self.may(key[0], user, action)
            if len(self._verdicts) > 4096:
                self._verdicts.clear()
            self._verdicts[key] = verdict
        return verdict

    def _refuse_published(self, topic_frame: Any, why: str) -> None:
        self.refused += 1
        if self.audit is not None:
            self.audit.refused("publish", f"peer:{peer_of(topic_frame)}", why)

    def _check_subscribers(self) -> None:
        # Sends on the ROUTER can swallow its fd's edge for control messages waiting there.
        if int(self.outbox.getsockopt(_EVENTS)) & _POLLIN:
            self._read_soon()

    def _read_soon(self) -> None:
        """Read the subscriber socket on the next loop turn, once however often asked: every refusal
        publishes an audit event, and one pending read per event piled up under a flood."""
        if not self._read_pending:
            self._read_pending = True
            self.loop.call_soon(self._on_subscriber)

    def publish(self, topic: str, body: dict) -> None:
        """Publish one daemon event (on the daemon's loop thread)."""
        self.daemon_events += 1
        self.route(topic.encode(), pub_header(1), array_body([msgpack.packb(body)]), 1)
        self._check_subscribers()

    # ------------------------------------------------------------------ reporting
    def status(self) -> dict:
        return {
            "subscribers": len(self.subscribers),
            "published": self.published,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "publisher_drops": self.publisher_drops,
            "daemon_events": self.daemon_events,
            "malformed": self.malformed,
            "refused": self.refused,
            "slowest": sorted((s.describe() for s in self.subscribers.values()), key=lambda d: -d["dropped"])[:5],
            "system_prefix": SYSTEM_PREFIX,
        }
