"""Reading one ROUTER message into requests: the single request, batches, and what is malformed.

``RequestReader`` is a mixin of ``RpcServer`` (its ``codec``, ``on_request``, limits and
counters); the socket, the read loop and the replies stay there. A well-formed call or tell in
a batch takes a fast path here, per message: anything else takes the checked road, and
malformed input becomes an error reply when the request id can be read, a counted drop when not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._wire import protocol as P
from .._wire.codec import Codec
from .._wire.fastpack import unpackb as _unpackb
from ..errors import ProtocolError

_SIMPLE = frozenset({P.CALL, P.TELL})


class Request:
    """One decoded request, as the dispatcher sees it."""

    # ``peer``: who sent it, set only on servers made with ``identify=True`` (the daemon's).
    __slots__ = ("args", "bufs", "deadline", "head", "id", "ident", "kind", "kwargs", "method", "peer", "prio")

    def __init__(
        self,
        ident: bytes,
        msg_id: int,
        kind: str,
        method: str,
        args: list,
        kwargs: dict,
        prio: int | None,
        deadline: float | None,
        head: dict,
        bufs: Any = (),
    ) -> None:
        self.ident = ident
        self.id = msg_id
        self.kind = kind
        self.method = method
        self.args = args
        self.kwargs = kwargs
        self.prio = prio
        self.deadline = deadline
        self.head = head
        self.bufs = bufs


class RequestReader:
    """Turns the frames of one message into ``Request`` objects for ``on_request``."""

    codec: Codec
    on_request: Callable[[Request], None]
    max_message_bytes: int
    stats: dict
    cut_off: dict[bytes, None]
    reply_error: Callable[..., None]

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    def _handle(self, frames: list[bytes]) -> None:
        ident = frames[0]
        if self.cut_off and ident in self.cut_off:
            self._count("ignored_cut_off")
            return
        if len(frames) < 2:
            self._count("malformed")
            return
        try:
            head = _unpackb(frames[1])
        except Exception:
            self._count("malformed")
            return
        try:
            P.check_header(head)
        except ProtocolError as exc:
            msg_id = head.get("id") if type(head) is dict else None
            if type(msg_id) is int:
                self.reply_error(ident, msg_id, exc)
            else:
                self._count("malformed")
            return
        size = sum(len(f) for f in frames[2:])
        if size > self.max_message_bytes:
            self.reply_error(
                ident,
                head["id"],
                ProtocolError(f"message of {size} bytes exceeds this actor's limit of {self.max_message_bytes}"),
            )
            return
        if head["kind"] == P.BATCH:
            try:
                items = self.codec.unpack(frames[2]) if len(frames) > 2 else None
                if type(items) is not list:
                    raise ProtocolError("batch body must be an array")
            except ProtocolError:
                self._count("malformed")
                return
            each = head.get("each")
            if each is not None:
                self._shared_header_batch(ident, each, items)
                return
            on_request = self.on_request
            for item in items:
                # Fast path for a well-formed call or tell; anything else takes the checked road.
                try:
                    head, body = item
                    if head["v"] == 1 and head["kind"] in _SIMPLE:
                        method = head["method"]
                        args, kwargs = body
                        if type(method) is str and type(args) is list and type(kwargs) is dict and not kwargs:
                            prio = head.get("prio")
                            deadline = head.get("deadline")
                            if (prio is None or type(prio) is int) and (deadline is None or type(deadline) is float):
                                on_request(
                                    Request(ident, head["id"], head["kind"], method, args, kwargs, prio, deadline, head)
                                )
                                continue
                except (TypeError, ValueError, KeyError):
                    pass
                if type(item) is not list or len(item) != 2:
                    self._count("malformed")
                    continue
                try:
                    sub = P.check_header(item[0])
                except ProtocolError:
                    self._count("malformed")
                    continue
                self._request(ident, sub, item[1], True, ())
        else:
            self._request(ident, head, frames[2] if len(frames) > 2 else None, False, frames[3:])

    def _shared_header_batch(self, ident: bytes, each: Any, bodies: list) -> None:
        """A batch whose items all have the header ``each`` (packed): the body holds only their bodies."""
        try:
            if type(each) is not bytes:
                raise ProtocolError("a batch's shared header must be packed bytes")
            head = P.parse_header(each)
        except ProtocolError:
            self._count("malformed")
            return
        kind, method, prio, deadline = head["kind"], head.get("method"), head.get("prio"), head.get("deadline")
        if not (
            kind in _SIMPLE
            and type(method) is str
            and (prio is None or type(prio) is int)
            and (deadline is None or type(deadline) is float)
        ):
            for body in bodies:
                self._request(ident, head, body, True, ())  # the checked road (errors, odd kinds)
            return
        on_request, msg_id = self.on_request, head["id"]
        for body in bodies:
            try:
                args, kwargs = body
                if type(args) is list and type(kwargs) is dict and not kwargs:
                    on_request(Request(ident, msg_id, kind, method, args, kwargs, prio, deadline, head))
                    continue
            except (TypeError, ValueError):
                pass
            self._request(ident, head, body, True, ())

    def _request(self, ident: bytes, head: dict, body: Any, decoded: bool, bufs: Any) -> None:
        kind = head["kind"]
        msg_id = head["id"]
        if kind not in P.REQUEST_KINDS or kind == P.BATCH:
            self.reply_error(ident, msg_id, ProtocolError(f"unknown request kind {kind!r}"))
            return
        method = head.get("method")
        if type(method) is not str:
            self.reply_error(ident, msg_id, ProtocolError("request header lacks a string 'method'"))
            return
        try:
            if body is None:
                args, kwargs = [], {}
            else:
                payload = body if decoded else self.codec.unpack(body, bufs)
                if type(payload) is not list or len(payload) != 2:
                    raise ProtocolError("request body must be [args, kwargs]")
                args, kwargs = payload
                if type(args) is not list or type(kwargs) is not dict:
                    raise ProtocolError("request body must be [args (array), kwargs (map)]")
                if kwargs and not all(type(k) is str for k in kwargs):
                    raise ProtocolError("keyword argument names must be strings")
        except ProtocolError as exc:
            if kind == P.TELL:
                self._count("malformed")
            else:
                self.reply_error(ident, msg_id, exc)
            return
        prio = head.get("prio")
        deadline = head.get("deadline")
        if prio is not None and type(prio) is not int:
            prio = None
        if deadline is not None and type(deadline) not in (int, float):
            deadline = None
        self.on_request(Request(ident, msg_id, kind, method, args, kwargs, prio, deadline, head, bufs))
