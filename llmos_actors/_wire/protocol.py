"""Frame layout, message kinds and limits of the llmos wire protocol.

A message is a ZeroMQ multipart ``[routing ids...] [header] [body] [buffers...]``.
The header is a small msgpack map; the body is msgpack (see ``codec``).

Several small messages to the same peer may travel as one ``batch`` message
whose body is a msgpack array of ``[header, body]`` pairs, built by
concatenating already-packed parts (nothing is packed twice). When every item
has the same header (a run of tells to one method: their header has id 0), the
batch header carries it once, packed, under ``each``, and the body is the array
of bodies alone: the receiver decodes one header per batch instead of one per item.
"""

from __future__ import annotations

from ..errors import ProtocolError
from . import fastpack

VERSION = 1

# Request kinds (caller -> actor or daemon).
CALL = "call"  # one reply expected
TELL = "tell"  # no reply
STREAM = "stream"  # a generator method: items, then end
CANCEL = "cancel"  # stop a stream (or drop a queued call) by id
CREDIT = "credit"  # stream flow control: the caller can take n more items
BATCH = "batch"  # body = array of [header, body] pairs

# Reply kinds (actor or daemon -> caller).
OK = "ok"
ERR = "err"
ITEM = "item"
END = "end"
NOTICE = "notice"  # unsolicited: death notices, topic deliveries

REQUEST_KINDS = frozenset({CALL, TELL, STREAM, CANCEL, CREDIT, BATCH})

#: Largest batch we build, in items and in bytes; keeps one frame bounded.
BATCH_MAX_ITEMS = 128
BATCH_MAX_BYTES = 256 * 1024

#: Bodies above this many bytes are never batched (sent as their own message).
BATCH_ITEM_MAX_BYTES = 16 * 1024

_packb = fastpack.packb
_unpackb = fastpack.unpackb
_ARRAY2 = b"\x92"  # msgpack fixarray of 2: prefix of one [header, body] batch item


_PREFIXES: dict[tuple[str, str], bytes] = {}
_PREFIX_CACHE_MAX = 4096


def request_header(
    kind: str,
    msg_id: int,
    method: str,
    prio: int | None = None,
    deadline: float | None = None,
    extra: dict | None = None,
) -> bytes:
    """Pack a request header. ``deadline`` is absolute ``time.monotonic()`` seconds.

    The common header (no priority, deadline or extras) is the packed map of every field
    but the id, cached per (kind, method), followed by the id: one small pack per call.
    """
    if prio is None and deadline is None and not extra:
        prefix = _PREFIXES.get((kind, method))
        if prefix is None:
            # A 6-entry map whose last key is "id": prefix + packed id is the whole map.
            fields = {"v": VERSION, "kind": kind, "method": method, "prio": None, "deadline": None}
            prefix = b"\x86" + _packb(fields)[1:] + _packb("id")
            if len(_PREFIXES) < _PREFIX_CACHE_MAX:
                _PREFIXES[(kind, method)] = prefix
        return prefix + _packb(msg_id)
    head = {"v": VERSION, "kind": kind, "id": msg_id, "method": method, "prio": prio, "deadline": deadline}
    if extra:
        head.update(extra)
    return _packb(head)


def reply_header(kind: str, msg_id: int) -> bytes:
    """Pack a reply header."""
    return _packb({"v": VERSION, "kind": kind, "id": msg_id})


def batch_header(count: int, each: bytes | None = None) -> bytes:
    """The header of a batch of ``count`` items; ``each``: the packed header all items share."""
    if each is None:
        return _packb({"v": VERSION, "kind": BATCH, "id": 0, "n": count})
    return _packb({"v": VERSION, "kind": BATCH, "id": 0, "n": count, "each": each})


def batch_item(header: bytes, body: bytes) -> bytes:
    """One ``[header, body]`` element of a batch body, from packed parts."""
    return _ARRAY2 + header + body


def array_header(n: int) -> bytes:
    """The msgpack header of an array of ``n`` elements."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 65536:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def batch_body(items: list[bytes]) -> bytes:
    """Concatenate packed batch items under one msgpack array header."""
    return array_header(len(items)) + b"".join(items)


_TELL_HEADERS: dict[str, bytes] = {}


def tell_header(method: str) -> bytes:
    """The whole header of a plain tell (id 0: nobody replies to a tell), cached per method."""
    head = _TELL_HEADERS.get(method)
    if head is None:
        head = request_header(TELL, 0, method)
        if len(_TELL_HEADERS) < _PREFIX_CACHE_MAX:
            _TELL_HEADERS[method] = head
    return head


def parse_header(raw: bytes) -> dict:
    """Unpack and validate a header frame.

    Raises:
        ProtocolError: not a msgpack map, wrong version, or missing fields.
    """
    try:
        head = _unpackb(raw)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"malformed header frame ({len(raw)} bytes): {exc}") from exc
    return check_header(head)


def check_header(head: object) -> dict:
    if type(head) is not dict:
        raise ProtocolError(f"header must be a msgpack map, got {type(head).__name__}")
    version = head.get("v")
    if version != VERSION:
        raise ProtocolError(f"unsupported protocol version {version!r} (this side speaks {VERSION})")
    kind = head.get("kind")
    if type(kind) is not str:
        raise ProtocolError("header lacks a string 'kind'")
    msg_id = head.get("id")
    if type(msg_id) is not int:
        raise ProtocolError("header lacks an integer 'id'")
    return head
