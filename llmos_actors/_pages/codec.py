"""The page-aware ``ArrayCodec``: large arrays and tensors travel as page handles.

Below ``inline_threshold`` bytes they are copied into the message as before (cheaper than
any bookkeeping). At or above it they go as a handle to shared pages: a tensor allocated
in the page region travels as it is (O(1) whatever its size); any other is copied into the page region
once. CUDA tensors travel by CUDA IPC handle. Without a page region (pages disabled, or the
daemon has none) the inline path remains.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._wire.codec import EXT_CUDA, EXT_NDARRAY, EXT_PAGES, EXT_TENSOR, ArrayCodec

if TYPE_CHECKING:
    from .client import PageClient

# Modes of a share (see handles.py): read-only (copy-on-write receiver), writable, move.
READ, WRITE, MOVE = "r", "w", "m"


class Shared:
    """An array or tensor marked for a writable share or a move (see ``llmos.share``/``llmos.move``)."""

    __slots__ = ("mode", "value")

    def __init__(self, value: Any, mode: str) -> None:
        self.value = value
        self.mode = mode

    def __repr__(self) -> str:
        return f"<{'move' if self.mode == MOVE else 'writable share'} of {type(self.value).__name__}>"


class PageArrayCodec(ArrayCodec):
    """``ArrayCodec`` over this process's ``PageClient`` for the daemon at ``runtime_dir``."""

    codes = (EXT_NDARRAY, EXT_TENSOR, EXT_PAGES, EXT_CUDA)

    def __init__(self, runtime_dir: Path | str) -> None:
        self.runtime_dir = runtime_dir
        self._client: PageClient | None = None
        self._closed = False

    @property
    def client(self) -> PageClient:
        """This process's client for the pages (made on first use: numpy loads only then)."""
        client = self._client
        if client is None:
            from .registry import client_for

            client = client_for(self.runtime_dir)
            client.use()
            if self._closed:  # used after close (a late reply): do not keep the pages mapped for us
                client.unuse()
            self._client = client
        return client

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._client is not None:
                self._client.unuse()

    def encode(self, obj: Any, bufs: list | None, fanout: bool = False) -> tuple[int, Any] | None:
        mode = READ
        if type(obj) is Shared:
            mode, obj = obj.mode, obj.value
        np = sys.modules.get("numpy")
        torch = sys.modules.get("torch")
        if np is not None and isinstance(obj, np.ndarray):
            nbytes = obj.nbytes
        elif torch is not None and isinstance(obj, torch.Tensor):
            if obj.device.type == "cuda":
                from . import cuda

                return EXT_CUDA, cuda.encode(obj)
            if obj.device.type != "cpu" or obj.layout != torch.strided:
                raise TypeError(
                    f"a {obj.device.type} {obj.layout} tensor cannot travel; send a CPU or CUDA strided tensor"
                )
            if obj.is_conj() or obj.is_neg():
                obj = obj.resolve_conj().resolve_neg()
            nbytes = obj.numel() * obj.element_size()
        else:
            if mode != READ:
                raise TypeError(f"llmos.share/move take a numpy array or torch tensor, not {type(obj).__name__}")
            return None
        client = self.client
        if mode == READ and (bufs is None or nbytes < client.inline_threshold):
            return super().encode(obj, bufs)
        if bufs is None or not client.attach():
            if mode != READ:
                raise TypeError(
                    "a writable share or move needs the shared-memory pool"
                    + ("" if bufs is not None else " (not available in nested, inline bodies)")
                    + (f": {client.error}" if client.error else "")
                )
            return super().encode(obj, bufs)
        from . import handles

        payload = handles.encode(client, obj, mode, fanout)
        if mode == MOVE:
            _disown(obj, np, torch)
        return EXT_PAGES, payload

    def decode(self, code: int, payload: Any, bufs: list) -> Any:
        if code == EXT_PAGES:
            from . import handles

            return handles.decode(self.client, payload)
        if code == EXT_CUDA:
            from . import cuda

            return cuda.decode(payload)
        return super().decode(code, payload, bufs)


def _disown(obj: Any, np: Any, torch: Any) -> None:
    """After a move the sender's object no longer views the pages (torch) or is read-only (numpy)."""
    if torch is not None and isinstance(obj, torch.Tensor):
        with torch.no_grad():
            obj.set_()
    elif np is not None and isinstance(obj, np.ndarray):
        obj.flags.writeable = False
