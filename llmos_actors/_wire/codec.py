"""msgpack bodies with extension types: refs, arrays, tensors, errors. Never pickle.

The codec knows no classes of the layers above it. An object that wants to
travel implements ``__llmos_wire__(self) -> (ext_code, payload)``; the layer
that owns the class registers a decoder for that code when it builds its
``Codec``. Arrays and tensors go through an ``ArrayCodec`` hook so that the
shared-memory page layer can replace the inline (copying) default.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any

import msgpack

from ..errors import WIRE_ERRORS, ActorDiedError, LlmosError, ProtocolError, RemoteError
from . import fastpack

# Extension type codes. Stable: part of the wire contract.
EXT_REF = 1  # an actor ref: [id, name, endpoint, policy]
EXT_NDARRAY = 2  # numpy array: [dtype, shape, data | buffer index]
EXT_TENSOR = 3  # torch tensor: [dtype, shape, data | buffer index]
EXT_OBJREF = 4  # an object-store ref
EXT_PAGES = 5  # array or tensor living in shared-memory pages
EXT_CUDA = 6  # CUDA tensor by IPC handle

#: Arrays at least this large travel as their own frame (no copy into the body).
OOB_THRESHOLD = 64 * 1024
#: Larger out-of-band arrays travel as frames of this size (``[first, count]`` in the payload),
#: joined by one copy on receipt. CurveZMQ copies and encrypts each frame into a fresh buffer
#: of its size: 1 MiB frames reuse warm heap memory where one 64 MiB frame faults in new
#: pages on both sides (64 MiB over TCP + CURVE, raw pyzmq: about 1.45x the rate of one frame).
FRAME_CHUNK = 1 << 20

_packb = msgpack.packb
_fast_packb = fastpack.packb
_unpackb = fastpack.unpackb
_ExtType = msgpack.ExtType

Decoder = Callable[[Any], Any]


class ArrayCodec:
    """Inline encoding of numpy arrays and torch tensors (copies the bytes).

    ``encode`` returns ``(ext_code, payload)`` or None for objects it does not
    handle; ``decode`` gets the payload back. ``bufs`` collects out-of-band
    frames on encode (None: keep everything inline) and supplies them on decode.
    """

    oob_threshold = OOB_THRESHOLD
    #: Extension codes this codec decodes (the page layer adds page and CUDA handles).
    codes: tuple[int, ...] = (EXT_NDARRAY, EXT_TENSOR, EXT_PAGES, EXT_CUDA)

    def encode(self, obj: Any, bufs: list | None, fanout: bool = False) -> tuple[int, Any] | None:
        """``fanout``: the message goes to many receivers (publish); only the page layer cares."""
        np = sys.modules.get("numpy")
        if np is not None and isinstance(obj, np.ndarray):
            return EXT_NDARRAY, self._encode_ndarray(np, obj, bufs)
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(obj, torch.Tensor):
            return EXT_TENSOR, self._encode_tensor(torch, obj, bufs)
        return None

    def decode(self, code: int, payload: Any, bufs: list) -> Any:
        if code == EXT_NDARRAY:
            return self._decode_ndarray(payload, bufs)
        if code == EXT_TENSOR:
            return self._decode_tensor(payload, bufs)
        raise ProtocolError("received a shared-memory page or CUDA handle, but this side has no page pool attached")

    def close(self) -> None:
        """Let go of what the codec holds (the page layer's pool attachment)."""

    # -- numpy ----------------------------------------------------------------------
    def _data(self, view: memoryview, bufs: list | None) -> Any:
        if bufs is not None and view.nbytes >= self.oob_threshold:
            if view.nbytes <= FRAME_CHUNK:
                bufs.append(view)
                return len(bufs) - 1
            first = len(bufs)
            bufs.extend(view[i : i + FRAME_CHUNK] for i in range(0, view.nbytes, FRAME_CHUNK))
            return [first, len(bufs) - first]
        return view.tobytes()

    @staticmethod
    def _buffer(data: Any, bufs: list) -> Any:
        if type(data) is int:
            try:
                frame = bufs[data]
            except IndexError:
                raise ProtocolError(f"body names buffer {data} but the message has {len(bufs)}") from None
            return getattr(frame, "buffer", frame)
        if type(data) is list:  # [first, count]: frames joined into one writable buffer
            if len(data) != 2 or not all(type(n) is int for n in data) or data[0] < 0 or data[1] < 1:
                raise ProtocolError(f"malformed buffer range {data!r:.100}")
            first, count = data
            if first + count > len(bufs):
                raise ProtocolError(f"body names buffers {first}..{first + count - 1} but the message has {len(bufs)}")
            parts = [memoryview(getattr(f, "buffer", f)).cast("B") for f in bufs[first : first + count]]
            joined = bytearray(sum(p.nbytes for p in parts))
            offset = 0
            for part in parts:
                joined[offset : offset + part.nbytes] = part
                offset += part.nbytes
            return memoryview(joined)
        return data

    def _encode_ndarray(self, np: Any, arr: Any, bufs: list | None) -> list:
        if arr.dtype.hasobject or arr.dtype.fields is not None:
            raise TypeError(f"numpy dtype {arr.dtype} cannot travel without pickle; use plain numeric dtypes")
        arr = np.ascontiguousarray(arr)
        return [arr.dtype.str, list(arr.shape), self._data(memoryview(arr).cast("B"), bufs)]

    def _decode_ndarray(self, payload: Any, bufs: list) -> Any:
        import numpy as np

        try:
            dtype, shape, data = payload
            data = self._buffer(data, bufs)
            arr = np.frombuffer(data, dtype=np.dtype(dtype))
            return arr.reshape(shape)
        except ProtocolError:
            raise
        except Exception as exc:
            raise ProtocolError(f"malformed ndarray payload: {exc}") from exc

    # -- torch ----------------------------------------------------------------------
    def _encode_tensor(self, torch: Any, t: Any, bufs: list | None) -> list:
        if t.device.type != "cpu":
            raise TypeError(
                f"a {t.device.type} tensor cannot travel inline; CUDA tensors need the shared-memory "
                "page layer (IPC handles), or call .cpu() yourself"
            )
        t = t.detach().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b""
        view = memoryview(raw).cast("B") if t.numel() else memoryview(b"")
        return [str(t.dtype).removeprefix("torch."), list(t.shape), self._data(view, bufs)]

    def _decode_tensor(self, payload: Any, bufs: list) -> Any:
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ProtocolError("received a torch tensor but torch is not installed here") from exc
        try:
            dtype_name, shape, data = payload
            dtype = getattr(torch, dtype_name)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"{dtype_name!r} is not a torch dtype")
            data = self._buffer(data, bufs)
            if not len(data):
                return torch.empty(shape, dtype=dtype)
            # bytearray: a private, writable copy for inline data (small by construction).
            buf = data if isinstance(data, memoryview) and not data.readonly else bytearray(data)
            return torch.frombuffer(buf, dtype=dtype).reshape(shape)
        except ProtocolError:
            raise
        except Exception as exc:
            raise ProtocolError(f"malformed tensor payload: {exc}") from exc


class Codec:
    """Packs and unpacks message bodies.

    Args:
        decoders: ext code -> function(payload) for the owning layer's types.
        arrays: the array/tensor hook (inline by default, pages when a pool is attached).
    """

    def __init__(self, decoders: dict[int, Decoder] | None = None, arrays: ArrayCodec | None = None) -> None:
        self.decoders: dict[int, Decoder] = dict(decoders or {})
        self.arrays = arrays or ArrayCodec()
        self._plain_hook = self._make_ext_hook(())

    # -- encoding -------------------------------------------------------------------
    def pack(
        self, obj: Any, *, inline: bool = False, fanout: bool = False, by_value: bool = False
    ) -> tuple[bytes, list]:
        """Pack ``obj``; returns the body and the out-of-band buffers it needs.

        With ``inline`` every byte goes into the body (no extra frames, no page
        handles), for bodies that are nested inside other messages or kept to be
        decoded again (spawn arguments). ``fanout``: the body goes to several
        receivers (publish), so page handles stay valid for all of them. ``by_value``:
        arrays go as frames, never as page handles (a receiver on another machine).

        Raises:
            TypeError: an object msgpack cannot carry (and we will not pickle).
        """
        try:
            # Fast path: plain data needs no hook (a TypeError means it holds special objects).
            return _fast_packb(obj), []
        except TypeError:
            pass
        except (ValueError, OverflowError) as exc:
            raise TypeError(f"cannot pack message body: {exc}") from exc
        bufs: list | None = None if inline else []

        def default(o: Any) -> Any:
            wire = getattr(o, "__llmos_wire__", None)
            if wire is not None:
                code, payload = wire()
                return _ExtType(code, _packb(payload, default=default))
            if by_value:
                enc = ArrayCodec.encode(self.arrays, o, bufs)
            else:
                enc = self.arrays.encode(o, bufs, fanout) if fanout else self.arrays.encode(o, bufs)
            if enc is not None:
                return _ExtType(enc[0], _packb(enc[1], default=default))
            item = getattr(o, "item", None)  # numpy / torch scalars
            if item is not None and getattr(o, "shape", None) == ():
                return item()
            if isinstance(o, (set, frozenset, tuple)):
                return list(o)
            raise TypeError(
                f"cannot send an object of type {type(o).__module__}.{type(o).__qualname__}: "
                "messages carry msgpack data (None, bool, int, float, str, bytes, list, dict), "
                "numpy arrays, torch tensors and llmos refs; pickle is never used"
            )

        try:
            body = _packb(obj, default=default)
        except (ValueError, OverflowError) as exc:
            raise TypeError(f"cannot pack message body: {exc}") from exc
        return body, bufs if bufs is not None else []

    def close(self) -> None:
        self.arrays.close()

    # -- decoding -------------------------------------------------------------------
    def _make_ext_hook(self, bufs: Any) -> Callable[[int, bytes], Any]:
        return _ExtHook(self.decoders, self.arrays, bufs)

    def unpack(self, raw: Any, bufs: Any = ()) -> Any:
        """Unpack a body; ``bufs`` are the message's extra frames.

        Raises:
            ProtocolError: the body is not valid msgpack or names bad buffers.
        """
        hook = self._plain_hook if not bufs else self._make_ext_hook(list(bufs))
        try:
            return _unpackb(raw, hook)
        except ProtocolError:
            raise
        except Exception as exc:
            raise ProtocolError(f"malformed message body: {exc}") from exc


class _ExtHook:
    """msgpack's ``ext_hook`` for a message with buffers; nested payloads reuse it.

    An object, not a closure: a closure that names itself (for the nested unpacks)
    is a reference cycle, and the cycle kept the message's buffers (a whole
    tensor's frame) alive until the cyclic garbage collector ran.
    """

    __slots__ = ("arrays", "bufs", "decoders")

    def __init__(self, decoders: dict[int, Decoder], arrays: ArrayCodec, bufs: Any) -> None:
        self.decoders = decoders
        self.arrays = arrays
        self.bufs = bufs

    def __call__(self, code: int, data: bytes) -> Any:
        if code in self.arrays.codes:
            return self.arrays.decode(code, _unpackb(data, self), self.bufs)
        dec = self.decoders.get(code)
        if dec is None:
            raise ProtocolError(f"unknown extension type {code} in message body")
        return dec(_unpackb(data, self))


# -- errors on the wire -------------------------------------------------------------------
def error_payload(exc: BaseException, *, with_traceback: bool = True) -> dict:
    """Describe an exception as plain data (code, type, message, traceback text)."""
    cls = type(exc)
    if isinstance(exc, RemoteError):
        # Re-raised remote errors keep their original remote type.
        return {
            "code": "remote",
            "type": exc.remote_type,
            "message": exc.remote_message,
            "traceback": exc.remote_traceback,
        }
    # Our own errors carry the remote traceback they came with, never this process's.
    if isinstance(exc, LlmosError):
        tb = exc.remote_traceback
    elif with_traceback:
        tb = "".join(traceback.format_exception(exc))
    else:
        tb = ""
    payload: dict[str, Any] = {
        "code": exc.code if isinstance(exc, LlmosError) else "remote",
        "type": cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}",
        "message": str(exc),
        "traceback": tb,
    }
    if isinstance(exc, ActorDiedError):
        payload.update(
            exitcode=exc.exitcode, signal=exc.signal, reason=exc.reason, actor=exc.actor, restarting=exc.restarting
        )
    return payload


def error_from_payload(payload: Any) -> LlmosError:
    """Rebuild the local exception for an error payload (the inverse of ``error_payload``)."""
    if type(payload) is not dict:
        return ProtocolError(f"malformed error reply: {payload!r:.200}")
    code = payload.get("code", "remote")
    message = str(payload.get("message", ""))
    if code == "remote":
        return RemoteError(str(payload.get("type", "Exception")), message, str(payload.get("traceback", "")))
    if code == ActorDiedError.code:
        err: LlmosError = ActorDiedError(
            message,
            exitcode=payload.get("exitcode"),
            signal=payload.get("signal"),
            reason=str(payload.get("reason") or ""),
            actor=str(payload.get("actor") or ""),
            restarting=bool(payload.get("restarting")),
        )
    else:
        cls = WIRE_ERRORS.get(code, LlmosError)
        try:
            err = cls(message)
        except TypeError:  # a class with a richer constructor
            err = LlmosError(message)
    tb = payload.get("traceback")
    if tb:
        err.remote_traceback = str(tb)
    return err
