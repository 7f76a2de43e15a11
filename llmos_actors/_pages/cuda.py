"""CUDA tensors by CUDA IPC handle: torch's own sharing of CUDA storage, over msgpack.

The sender calls torch's ``reduce_tensor`` (what ``torch.multiprocessing`` uses): it
exports the storage's CUDA allocation (``cudaIpcGetMemHandle``) and registers it with
torch's IPC reference counting, which keeps the allocation alive in the sender until
every receiver has released it (``torch.cuda.ipc_collect()``). The receiver rebuilds it
with ``rebuild_cuda_tensor`` (``cudaIpcOpenMemHandle``, cached per handle). Only the
arguments travel, as plain data: classes and dtypes by name, never pickle.

    EXT_CUDA payload: [size, stride, offset, dtype, device, handle, storage_bytes, storage_offset_bytes,
                       ref_counter_handle, ref_counter_offset, event_handle, event_sync_required]

Lifetime rules match the pages: the receiver's tensor keeps the sender's memory alive
until it dies; the sender must not free (or overwrite) it before receivers are done.
"""

from __future__ import annotations

from typing import Any

from ..errors import ProtocolError

FIELDS = 12


def encode(t: Any) -> list:
    """The ``EXT_CUDA`` payload of a CUDA tensor."""
    from torch.multiprocessing.reductions import reduce_tensor

    t = t.detach()
    _rebuild, args = reduce_tensor(t)
    (
        _cls,
        size,
        stride,
        offset,
        _storage_cls,
        dtype,
        device,
        handle,
        storage_bytes,
        storage_offset_bytes,
        _requires_grad,
        ref_counter_handle,
        ref_counter_offset,
        event_handle,
        event_sync_required,
    ) = args
    return [
        list(size),
        list(stride),
        int(offset),
        str(dtype).removeprefix("torch."),
        int(device),
        handle,
        int(storage_bytes),
        int(storage_offset_bytes),
        ref_counter_handle,
        int(ref_counter_offset),
        event_handle,
        bool(event_sync_required),
    ]


def decode(payload: Any) -> Any:
    """Open a CUDA IPC handle as a tensor on the same device (requires_grad False).

    Raises:
        ProtocolError: malformed payload, no CUDA here, or torch refused the handle.
    """
    if type(payload) is not list or len(payload) != FIELDS:
        raise ProtocolError(f"CUDA handle must be an array of {FIELDS} fields")
    try:
        import torch
        from torch.multiprocessing.reductions import rebuild_cuda_tensor
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ProtocolError("received a CUDA tensor but torch is not installed here") from exc
    if not torch.cuda.is_available():
        raise ProtocolError("received a CUDA tensor but this process has no CUDA device")
    size, stride, offset, dtype_name, device, handle, sbytes, soff, rc_handle, rc_off, ev_handle, ev_sync = payload
    dtype = getattr(torch, dtype_name, None) if type(dtype_name) is str else None
    if not isinstance(dtype, torch.dtype):
        raise ProtocolError(f"CUDA handle: {dtype_name!r} is not a torch dtype")
    ints = (offset, device, sbytes, soff, rc_off)
    if not all(type(v) is int and v >= 0 for v in ints) or not all(type(b) is bytes for b in (handle, rc_handle)):
        raise ProtocolError("malformed CUDA handle")
    if type(size) is not list or type(stride) is not list or not all(type(v) is int for v in size + stride):
        raise ProtocolError("malformed CUDA handle shape")
    try:
        return rebuild_cuda_tensor(
            torch.Tensor,
            torch.Size(size),
            tuple(stride),
            offset,
            torch.storage.UntypedStorage,
            dtype,
            device,
            handle,
            sbytes,
            soff,
            False,
            rc_handle,
            rc_off,
            ev_handle,
            bool(ev_sync),
        )
    except Exception as exc:
        raise ProtocolError(f"cannot open CUDA IPC handle: {exc}") from exc
