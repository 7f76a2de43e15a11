"""The packed bytes of small values this process stored, so its own ``get`` needs no daemon.

Ray's owner serves ``ray.get`` of its small objects from an in-process memory store;
this is ours. ``kernel.put(value)`` of a plain (msgpack) value still stores it in the
pool, where every process can ``get`` it; the process that put it also keeps the
packed bytes (values up to ``MAX_VALUE`` bytes, ``MAX_TOTAL`` in all) and unpacks
them on ``get`` without a round trip. Its own ``free`` drops the copy; so do a fork
and a lost daemon (the object went with it). A ``free`` by another process is not
seen here: the owner keeps reading the value it stored, which is the same value.
"""

from __future__ import annotations

#: Largest packed value kept (larger ones are read from the pool like arrays).
MAX_VALUE = 64 * 1024
#: Bytes kept in all; beyond, new values are not kept.
MAX_TOTAL = 64 * 1024 * 1024


class OwnValues:
    """Packed values by object id (the calling ``PageClient`` holds its lock or needs none:
    dict operations are atomic and the entries are immutable bytes)."""

    def __init__(self) -> None:
        self._bodies: dict[str, bytes] = {}
        self.nbytes = 0

    def keep(self, oid: str, body: bytes) -> None:
        if len(body) <= MAX_VALUE and self.nbytes + len(body) <= MAX_TOTAL and oid not in self._bodies:
            self._bodies[oid] = body
            self.nbytes += len(body)

    def find(self, oid: str) -> bytes | None:
        return self._bodies.get(oid)

    def drop(self, oid: str) -> None:
        body = self._bodies.pop(oid, None)
        if body is not None:
            self.nbytes -= len(body)

    def clear(self) -> None:
        self._bodies.clear()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._bodies)
