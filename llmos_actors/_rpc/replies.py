"""What a received message means: which waiter it resolves, with which outcome.

No socket here: a connection reads frames and hands them to ``Replies.route``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._wire import protocol as P
from .._wire.codec import Codec, error_from_payload
from ..errors import ProtocolError
from .driver import LoopDriver


class Replies:
    """The pending requests of one connection, by message id, and the routing of replies to them.

    Args:
        driver: its ``stats`` count malformed replies; its ``log`` says so.
        codec: decodes reply bodies.
        peer: a label for errors.
        on_notice: called as ``on_notice(head, body)`` for unsolicited messages.
    """

    def __init__(
        self, driver: LoopDriver, codec: Codec, peer: str, on_notice: Callable[[dict, Any], None] | None = None
    ) -> None:
        self.driver = driver
        self.codec = codec
        self.peer = peer
        self.on_notice = on_notice
        self.pending: dict[int, Any] = {}

    def route(self, frames: list[bytes]) -> None:
        """Hand one received message (maybe a batch of replies) to the waiters it resolves."""
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
                self.on_notice(head, body if decoded else self._decode(body, bufs))
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
