"""Topic messages on the wire.

A topic message is ``[topic] [header] [body]``: the topic frame (UTF-8), a header
``{"v", "kind": "pub", "id": 0, "n": count, ...}`` and a body that is a msgpack
array of ``n`` payloads: consecutive messages to one topic travel as one batch.

Publisher -> daemon headers carry ``pd``: messages this publisher dropped since
its previous batch (its queue to the daemon was full). Daemon -> subscriber
headers carry ``dropped``: messages this subscriber missed since its previous
delivery (its queue was full). Nothing is lost without being counted.

Subscribers talk to the daemon on the same socket with control messages whose
topic frame is empty: ``[b""] [request header] [body]``.
"""

from __future__ import annotations

import msgpack

from ..errors import ProtocolError
from . import protocol as P

PUB = "pub"
#: Longest topic accepted (bytes of UTF-8).
MAX_TOPIC_BYTES = 1024
#: Most messages in one topic batch. Larger than a call batch: every batch costs the daemon
#: a wake-up and a send per subscriber, and each subscriber a wake-up and a read, while a
#: subscriber reads a batch in one unpack. Measured on 2 cores, 4 subscribers: 1,024 per
#: batch delivers ~1.5x the messages/s of 128; beyond that nothing gained. Bytes stay
#: bounded by ``protocol.BATCH_MAX_BYTES``.
BATCH_MAX_ITEMS = 1024
#: Reserved for the daemon's own events (actor started, exited, restarted).
SYSTEM_PREFIX = "sys."
_SYSTEM_RAW = SYSTEM_PREFIX.encode()


def check_topic(topic: object, *, publishing: bool = True) -> bytes:
    """Validate a topic (or subscription prefix) and return its bytes.

    Raises:
        TypeError / ValueError: not a str, too long, empty, or reserved for the daemon.
    """
    if not isinstance(topic, str):
        raise TypeError(f"topic must be a str, not {type(topic).__name__}")
    raw = topic.encode()
    if len(raw) > MAX_TOPIC_BYTES:
        raise ValueError(f"topic of {len(raw)} bytes exceeds the limit of {MAX_TOPIC_BYTES} bytes")
    if publishing:
        if not topic:
            raise ValueError("topic must not be empty")
        if topic.startswith(SYSTEM_PREFIX):
            raise ValueError(f"topics starting with {SYSTEM_PREFIX!r} are reserved for the daemon's events")
    return raw


def refuse_topic(raw: bytes) -> str:
    """Why the daemon refuses a published topic ("" if it is acceptable); O(length) at most.

    The same rules as ``check_topic``, applied to what arrived on the wire: a client that
    skips the library's check still cannot publish a long, non-UTF-8 or ``sys.`` topic.
    """
    if len(raw) > MAX_TOPIC_BYTES:
        return f"topic of {len(raw)} bytes exceeds the limit of {MAX_TOPIC_BYTES} bytes (MAX_TOPIC_BYTES)"
    if not raw:
        return "empty topic"
    if raw.startswith(_SYSTEM_RAW):
        return f"topics starting with {SYSTEM_PREFIX!r} are reserved for the daemon's events"
    try:
        raw.decode()
    except UnicodeDecodeError:
        return "topic is not UTF-8"
    return ""


def pub_header(n: int, **extra: int) -> bytes:
    head = {"v": P.VERSION, "kind": PUB, "id": 0, "n": n}
    if extra:
        head.update(extra)
    return msgpack.packb(head)


def array_body(payloads: list[bytes]) -> bytes:
    """A msgpack array from already-packed payloads (nothing is packed twice)."""
    return P.batch_body(payloads)


def parse_delivery(frames: list, unpack) -> tuple[str, dict, list]:
    """``(topic, header, payloads)`` of a topic message.

    Raises:
        ProtocolError: wrong shape, header or body.
    """
    if len(frames) != 3:
        raise ProtocolError(f"topic message has {len(frames)} frames, not 3")
    topic_raw, head_raw, body = frames
    head = P.parse_header(head_raw)
    if head["kind"] != PUB or type(head.get("n")) is not int:
        raise ProtocolError("malformed topic message header")
    payloads = unpack(body)
    if type(payloads) is not list or len(payloads) != head["n"]:
        raise ProtocolError("topic message body does not hold the announced number of payloads")
    try:
        topic = topic_raw.decode()
    except UnicodeDecodeError as exc:
        raise ProtocolError("topic is not UTF-8") from exc
    return topic, head, payloads
