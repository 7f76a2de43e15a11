"""The subscriber side of the topic router: register and drop prefixes, within limits and roles.

A mixin of ``EventBus``: subscribers send ``subscribe``/``unsubscribe`` on the ROUTER
(``[prefixes, who]``), the reply means "live". Limits (prefixes per process, subscriber
sockets) and roles are checked here, from the transport's identity, never the message's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import zmq

from .._wire import protocol as P
from .._wire.codec import error_payload
from .._wire.topics import check_topic
from ..errors import LimitExceeded, PermissionDenied, ProtocolError

#: Batches read per wake-up before other callbacks get a turn.
READ_LIMIT = 256

_NOBLOCK = int(zmq.NOBLOCK)


@dataclass(eq=False)
class Subscriber:
    """One subscriber socket (a client subscription, or an actor's)."""

    ident: bytes
    who: str  # "actor:<id>" or "client:<pid>"
    owner: str = ""  # the peer process, from the transport (quotas count per owner)
    prefixes: set[bytes] = field(default_factory=set)
    delivered: int = 0
    dropped: int = 0
    unreported: int = 0  # dropped since the last delivery (sent in the next header)
    relay: bool = False  # a peer daemon's relay (cluster): batches it brought are not sent back out

    def describe(self) -> dict:
        return {
            "who": self.who,
            "prefixes": sorted(p.decode(errors="replace") for p in self.prefixes),
            "delivered": self.delivered,
            "dropped": self.dropped,
        }


def peer_of(frame: Any) -> str:
    """The sending process as the transport names it (``host:uid:gid:pid`` on unix sockets)."""
    try:
        return frame.get("Peer-Address") or ""
    except zmq.ZMQError:
        return ""


def user_of(frame: Any) -> str:
    """The sender's CURVE identity (``key:<name>``), "" when it has none."""
    try:
        return frame.get("User-Id") or ""
    except zmq.ZMQError:
        return ""


class TopicSubscriptions:
    """Who subscribed to which prefixes, and the control messages that change it."""

    outbox: zmq.Socket
    subscribers: dict[bytes, Subscriber]
    by_prefix: dict[bytes, set[bytes]]
    audit: Any
    max_prefixes: int
    max_subscribers: int
    refused: int
    malformed: int
    relay_user: str
    when_relayed: Any
    _held: dict[str, int]
    _peer: str
    _user: str
    _read_pending: bool
    _refuse_role: Callable[[Any, str], str]
    _read_soon: Callable[[], None]
    _index_changed: Callable[[], None]

    def _on_subscriber(self) -> None:
        self._read_pending = False
        recv = self.outbox.recv_multipart
        for _ in range(READ_LIMIT):
            try:
                parts = recv(_NOBLOCK, copy=False)
            except zmq.Again:
                break
            if len(parts) != 4 or parts[1].bytes != b"":
                self.malformed += 1
                continue
            self._peer = peer_of(parts[0])
            self._user = user_of(parts[0])
            ident, _, head_raw, body = (p.bytes for p in parts)
            msg_id = 0
            try:
                denied = self._refuse_role(parts[0], "subscribe")
                if denied:
                    head = P.parse_header(head_raw)
                    msg_id = head["id"]
                    self.refused += 1
                    if self.audit is not None:
                        self.audit.refused("subscribe", f"peer:{self._peer}", denied)
                    raise PermissionDenied(denied)
                head = P.parse_header(head_raw)
                msg_id = head["id"]
                self._control(ident, head, msgpack.unpackb(body))
            except (ProtocolError, ValueError, TypeError, LimitExceeded, PermissionDenied) as exc:
                self._reply(ident, msg_id, P.ERR, error_payload(exc, with_traceback=False))
        else:
            self._read_soon()

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
            owner = sub.owner if sub is not None else self._peer
            new = len(set(raw) - (sub.prefixes if sub is not None else set()))
            if self._held.get(owner, 0) + new > self.max_prefixes:
                self.refused += 1
                why = (
                    f"subscription refused: one process may hold at most {self.max_prefixes} prefixes "
                    f"([limits] subscriptions = {self.max_prefixes})"
                )
                if self.audit is not None:
                    self.audit.refused("subscribe", f"peer:{owner}", why)
                # Raised, never kept in a local: an exception its own frame refers to is a reference
                # cycle, and under a flood of refusals those piled up between (rare) GC passes.
                raise LimitExceeded(why)
            if sub is None:
                if len(self.subscribers) >= self.max_subscribers:
                    self.refused += 1
                    raise LimitExceeded(
                        f"subscription refused: the daemon serves at most {self.max_subscribers} subscriber "
                        f"sockets ([limits] subscribers = {self.max_subscribers})"
                    )
                relay = bool(self.relay_user) and self._user == self.relay_user
                sub = self.subscribers[ident] = Subscriber(ident, who[:200], owner, relay=relay)
            for prefix in raw:
                if prefix not in sub.prefixes:
                    self._held[owner] = self._held.get(owner, 0) + 1
                sub.prefixes.add(prefix)
                self.by_prefix.setdefault(prefix, set()).add(ident)
            self._index_changed()
            if new and not sub.relay and self.when_relayed is not None:
                reply = functools.partial(self._reply, ident, head["id"], P.OK, len(sub.prefixes))
                self.when_relayed(reply)
            else:
                self._reply(ident, head["id"], P.OK, len(sub.prefixes))
        elif method == "unsubscribe":
            sub = self.subscribers.get(ident)
            if sub is not None:
                for prefix in raw or list(sub.prefixes):
                    if prefix in sub.prefixes:
                        sub.prefixes.discard(prefix)
                        self._release(sub.owner)
                    self._unindex(prefix, ident)
                if not sub.prefixes:
                    del self.subscribers[ident]
                self._index_changed()
            if head.get("kind") == P.CALL:
                self._reply(ident, head["id"], P.OK, None)
        else:
            raise ProtocolError(f"unknown topic control method {method!r}")

    def _reply(self, ident: bytes, msg_id: int, kind: str, value: Any) -> None:
        try:
            self.outbox.send_multipart([ident, b"", P.reply_header(kind, msg_id), msgpack.packb(value)], _NOBLOCK)
        except zmq.ZMQError:
            pass  # gone, or hopelessly behind: it will time out and retry

    def _release(self, owner: str) -> None:
        left = self._held.get(owner, 0) - 1
        if left > 0:
            self._held[owner] = left
        else:
            self._held.pop(owner, None)

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
                self._release(sub.owner)
            self._index_changed()

    def on_actor_exit(self, record: Any) -> None:
        """An actor's subscriptions go with it."""
        who = f"actor:{record.id}"
        for ident in [i for i, s in self.subscribers.items() if s.who == who]:
            self._remove(ident)

    def drops_of(self, who: str) -> int:
        return sum(s.dropped for s in self.subscribers.values() if s.who == who)
