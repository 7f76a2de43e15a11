"""msgpack on the hot paths: ormsgpack (Rust) when it can, msgpack-python as the reference.

The wire format does not change: both write the same bytes for plain data. On this
machine ormsgpack packs a 97-byte call body in 0.35 us against msgpack's 0.95 us,
and reads it back with an extension hook in 0.8 us against 1.8 us; a subscriber or
an actor under load spends much of its time there.

Whatever ormsgpack refuses, or would read differently, goes to msgpack-python, so
what is accepted and what is raised stay msgpack's:

- packing: ormsgpack would write dataclasses, datetimes, enums, UUIDs and big ints
  in its own way; it is told to refuse them (msgpack then packs or refuses them as
  it always did, and the codec's hooks get their turn).
- unpacking: bytes ormsgpack refuses are read again by msgpack, which decodes them
  or raises its own error; an ``ext_hook``'s exception (ormsgpack would hide it
  behind a bare ValueError) is raised as it was.

One difference is left: ormsgpack stops at the end of the first object and does not
complain about bytes after it (msgpack raises ``ExtraData``). Frames are
length-delimited by zmq, so this only concerns a sender that appends garbage; the
object it sent is read as sent.

Without ormsgpack (a platform with no wheel) everything runs on msgpack-python.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

try:
    import ormsgpack as _orm
except ImportError:  # pragma: no cover - ormsgpack is a dependency; this keeps odd platforms working
    _orm = None  # type: ignore[assignment]

_msgpack_packb = msgpack.packb
_msgpack_unpackb = msgpack.unpackb

if _orm is not None:
    _orm_packb = _orm.packb
    _orm_unpackb = _orm.unpackb
    _PACK_OPTIONS = (
        _orm.OPT_PASSTHROUGH_BIG_INT
        | _orm.OPT_PASSTHROUGH_DATACLASS
        | _orm.OPT_PASSTHROUGH_DATETIME
        | _orm.OPT_PASSTHROUGH_ENUM
        | _orm.OPT_PASSTHROUGH_UUID
    )
    _UNPACK_OPTIONS = _orm.OPT_NON_STR_KEYS  # msgpack's strict_map_key=False: int keys read back

    def packb(obj: Any) -> bytes:
        """The msgpack bytes of plain data (no hooks).

        Raises:
            TypeError / ValueError / OverflowError: as ``msgpack.packb`` for what it cannot carry.
        """
        try:
            return _orm_packb(obj, option=_PACK_OPTIONS)
        except TypeError:  # ormsgpack.MsgpackEncodeError: msgpack decides
            return _msgpack_packb(obj)

    def unpackb(raw: Any, ext_hook: Callable[[int, bytes], Any] | None = None) -> Any:
        """Read one msgpack object; map keys may be any hashable (msgpack's ``strict_map_key=False``).

        ``ext_hook(code, data)`` builds extension types (without one they come back
        as ``msgpack.ExtType``). It runs once per extension object, never twice:
        hooks take page leases.

        Raises:
            ValueError / TypeError / the hook's own exception: as ``msgpack.unpackb``.
        """
        if type(raw) is not bytes and not isinstance(raw, (memoryview, bytearray)):
            raw = memoryview(raw)  # a zmq.Frame or another buffer
        if ext_hook is None:
            try:
                return _orm_unpackb(raw, option=_UNPACK_OPTIONS)
            except ValueError:  # ormsgpack.MsgpackDecodeError (or an extension type): msgpack decides
                return _msgpack_unpackb(raw, strict_map_key=False)
        calls: list[BaseException | None] = []

        def hook(code: int, data: bytes) -> Any:
            calls.append(None)
            try:
                return ext_hook(code, data)
            except BaseException as exc:
                calls[-1] = exc
                raise

        try:
            return _orm_unpackb(raw, ext_hook=hook, option=_UNPACK_OPTIONS)
        except ValueError as exc:  # ormsgpack.MsgpackDecodeError: the bytes, or a hook that raised
            if calls:
                failed = calls[-1]
                if failed is not None:
                    raise failed from None
                # Hooks already ran (and took what they took): reading again would run them twice.
                raise ValueError(f"malformed msgpack: {exc}") from None
            return _msgpack_unpackb(raw, ext_hook=ext_hook, strict_map_key=False)

else:  # pragma: no cover

    def packb(obj: Any) -> bytes:
        """The msgpack bytes of plain data (no hooks)."""
        return _msgpack_packb(obj)

    def unpackb(raw: Any, ext_hook: Callable[[int, bytes], Any] | None = None) -> Any:
        """Read one msgpack object; map keys may be any hashable."""
        return _reference_unpackb(raw, ext_hook)


def _reference_unpackb(raw: Any, ext_hook: Callable[[int, bytes], Any] | None) -> Any:
    if ext_hook is None:
        return _msgpack_unpackb(raw, strict_map_key=False)
    return _msgpack_unpackb(raw, ext_hook=ext_hook, strict_map_key=False)


#: Which implementation the hot paths use ("ormsgpack" or "msgpack"), for ``llmos status`` and bench notes.
IMPLEMENTATION = "ormsgpack" if _orm is not None else "msgpack"
