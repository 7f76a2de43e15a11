"""The per-process channel to the daemon's page table: a unix stream socket, one per process.

Frames are a 4-byte little-endian length and a msgpack array ``[op, args...]``. The
client sends requests (answered in order, one map each) and one-way notes (never
answered). One channel per process, so everything a process says about its pages
arrives in the order it said it: a transfer before the sender's own release.

The daemon learns the peer's pid from ``SO_PEERCRED`` (it cannot be forged), and hands
over the pool's file descriptor (``SCM_RIGHTS``) in its answer to ``hello``.

    hello   {pid}                                   -> pool info + the pool fd
    alloc   nbytes [unsealed]                       -> {start, pages, gen} | {error, ...}
    send    seq start gen fanout                    (note: a handle is in a message)
    take    sender seq start gen adopt              (note: a receiver decoded it)
    release start gen n                             (note: n holds dropped)
    put     start gen meta detached                 -> {oid}
    get     oid                                     -> {start, pages, gen, meta}  (held for the caller)
    free    oid                                     -> {}
    drain                                           -> {}  (its ring is read: room for more notes)
    map     slab writable                           -> {slab, incarnation} + the slab's fd | {error, ...}

``alloc`` answers carry the descriptors of the allocator's own slabs it has not had yet
(``slabs``: ``[[slab, incarnation], ...]``, descriptors in that order); ``map`` gives a slab of
which the process holds a page (``_kernel.pages_slabs`` says who may map what, and how).

Notes go into the process's note ring (``ring.py``); only a full ring makes the process ask
the daemon to ``drain`` it, so that every note still travels the same FIFO.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

SOCKET_NAME = "pages"
LEN = struct.Struct("<I")
MAX_FRAME = 1 << 20
#: Descriptors one answer carries at most (the kernel allows 253 per message); an allocation
#: spanning more new slabs gets the rest by ``map``.
MAX_FDS = 64

HELLO = "hello"
ALLOC = "alloc"
SEND = "send"
TAKE = "take"
RELEASE = "release"
PUT = "put"
GET = "get"
FREE = "free"
DRAIN = "drain"
MAP = "map"

REQUESTS = frozenset({HELLO, ALLOC, PUT, GET, FREE, DRAIN, MAP})
NOTES = frozenset({SEND, TAKE, RELEASE})


def frame(*parts: Any) -> bytes:
    """A client frame: ``[op, args...]``."""
    return reply(list(parts))


def reply(obj: Any) -> bytes:
    """A frame holding one msgpack value (the daemon's answers are maps)."""
    body = msgpack.packb(obj)
    return LEN.pack(len(body)) + body


class FrameReader:
    """Splits a byte stream into decoded frames."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        buf = self.buf
        buf += data
        out = []
        while len(buf) >= 4:
            (size,) = LEN.unpack_from(buf)
            if size > MAX_FRAME:
                raise ValueError(f"frame of {size} bytes exceeds {MAX_FRAME}")
            if len(buf) < 4 + size:
                break
            out.append(msgpack.unpackb(bytes(buf[4 : 4 + size]), strict_map_key=False))
            del buf[: 4 + size]
        return out
