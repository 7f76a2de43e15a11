"""Page handles: how an array or tensor in the pool is described on the wire, and checked on arrival.

``EXT_PAGES`` payload (a msgpack array, 14 fields)::

    [pool_id, kind, dtype, shape, strides, start, pages, gen, base_off, span, first, sender, seq, mode]

- ``pool_id``: the daemon run's pool (a random 63-bit id; a handle from another pool is refused);
- ``kind``: ``"t"`` torch tensor, ``"n"`` numpy array; ``dtype``: torch dtype name / numpy dtype str;
- ``shape``, ``strides``: element counts and byte strides (numpy's convention; torch's are
  always multiples of the item size and never negative);
- ``start``, ``pages``, ``gen``: the block (first page, run length, generation);
- ``base_off``, ``span``: the bytes the view touches, from ``base_off`` into the block;
- ``first``: byte offset of element ``[0, ..., 0]`` from ``base_off`` (numpy: negative strides);
- ``sender``, ``seq``: the transfer token the receiver takes over;
- ``mode``: ``"r"`` read-only share (the receiver maps the pages read-only), ``"w"`` writable
  share, ``"m"`` move (the receiver owns it, writable).

Decoding checks every field against the pool's page table before mapping anything: a
forged offset, a wrong generation or an out-of-range size is a ``ProtocolError``; no read
ever leaves the block.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ..errors import ProtocolError
from .client import PageClient
from .mapping import LocalBlock

FIELDS = 14
KIND_NUMPY = "n"
KIND_TORCH = "t"
READ, WRITE, MOVE = "r", "w", "m"
MODES = (READ, WRITE, MOVE)
MAX_DIMS = 64
#: Tensors at least this large are copied into the pool by torch's (multi-threaded) copy_.
PARALLEL_COPY = 8 << 20


class View(NamedTuple):
    """Where an array's bytes are and how to read them."""

    kind: str
    dtype: str
    itemsize: int
    shape: list
    strides: list  # bytes
    low: int  # lowest address touched
    span: int  # bytes from low to the end of the highest element
    first: int  # address of element [0..0] minus low


def extent(shape: list, strides: list, itemsize: int) -> tuple[int, int]:
    """Lowest and one-past-highest byte touched, relative to element ``[0, ..., 0]``."""
    lo = hi = 0
    for n, s in zip(shape, strides, strict=False):
        if n == 0:
            return 0, 0
        reach = (n - 1) * s
        if reach < 0:
            lo += reach
        else:
            hi += reach
    return lo, hi + itemsize


def describe(obj: Any) -> View:
    """The ``View`` of a numpy array or a CPU torch tensor."""
    if isinstance(obj, np.ndarray):
        dt = obj.dtype
        if dt.hasobject or dt.fields is not None:
            raise TypeError(f"numpy dtype {dt} cannot travel without pickle; use plain numeric dtypes")
        ptr = obj.__array_interface__["data"][0]
        shape, strides = list(obj.shape), list(obj.strides)
        lo, hi = extent(shape, strides, dt.itemsize)
        return View(KIND_NUMPY, dt.str, dt.itemsize, shape, strides, ptr + lo, hi - lo, -lo)
    dtype = obj.dtype
    itemsize = dtype.itemsize
    shape = list(obj.shape)
    strides = [s * itemsize for s in obj.stride()]
    lo, hi = extent(shape, strides, itemsize)
    name = _TORCH_NAMES.get(dtype)
    if name is None:
        name = _TORCH_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return View(KIND_TORCH, name, itemsize, shape, strides, obj.data_ptr(), hi - lo, 0)


_TORCH_NAMES: dict = {}


def copy_in(client: PageClient, obj: Any, view: View, *, moved: bool = False) -> tuple[np.ndarray, View]:
    """Copy an array that is not in the pool into fresh pool pages (C-contiguous); returns the lease.

    ``moved``: the copy goes to one receiver, writable: keep it out of sealed pages.
    """
    nbytes = view.itemsize
    for n in view.shape:
        nbytes *= n
    base = client.alloc(nbytes, unsealed=moved)
    src = obj
    if view.kind == KIND_TORCH and nbytes < PARALLEL_COPY and obj.dtype in _FLAT_OR_INIT():
        # Small: numpy copies on this thread. torch's copy_ fans out to its thread pool, which pays
        # for large copies but costs ms for 1 MiB on a busy machine (waiting for a descheduled worker).
        src = obj.detach().numpy()
    if isinstance(src, np.ndarray):
        dst = np.ndarray(view.shape, dtype=src.dtype, buffer=base)
        np.copyto(dst, src, casting="no")
    else:
        import torch

        torch.from_numpy(base).view(obj.dtype).view(view.shape).copy_(obj.detach())
    strides, step = [], view.itemsize
    for n in reversed(view.shape):
        strides.append(step)
        step *= max(n, 1)
    strides.reverse()
    return base, view._replace(strides=strides, low=int(base.ctypes.data), span=nbytes, first=0)


def locate(client: PageClient, view: View, mode: str) -> tuple[LocalBlock, bool, int] | None:
    """The block holding ``view`` if it can travel as it is (else it must be copied in)."""
    loc = client.locate(view.low, view.span)
    if loc is None:
        if mode == WRITE:
            raise TypeError(
                "a writable share needs memory in the pool: allocate with llmos.empty/zeros/full "
                "(or llmos.np_empty/np_zeros/np_full), or send a copy"
            )
        return None
    if loc[1] and mode != READ:  # a read-only share we received: it stays read-only
        raise TypeError(
            "a tensor or array received read-only cannot be shared writable or moved; clone it into "
            "llmos.empty(...) first"
        )
    block = loc[0]
    if mode == WRITE and _sealed(client, block):
        raise TypeError(
            "a writable share needs pages that were never shared read-only: these were (the daemon sealed "
            "them against writes by anyone but their owner); share a fresh llmos.empty(...) instead"
        )
    return loc


def _sealed(client: PageClient, block: LocalBlock) -> bool:
    region = client.region
    assert region is not None
    return any(region.slab_state(slab)[1] for slab in region.slab_range(block.start, block.pages))


def encode(client: PageClient, obj: Any, mode: str, fanout: bool) -> list:
    """The ``EXT_PAGES`` payload for ``obj``; copies it into the pool first if it is not there."""
    region = client.region
    assert region is not None
    view = describe(obj)
    loc = locate(client, view, mode)
    lease = None
    if loc is None:
        lease, view = copy_in(client, obj, view, moved=not fanout)
        loc = client.locate(view.low, view.span)
        assert loc is not None
        if mode == READ and not fanout:
            mode = MOVE  # nobody else has this copy: the receiver owns it (writable)
    block, _readonly, offset = loc
    sender, seq = client.sent(block, fanout)
    del lease  # after the transfer is registered: our release cannot overtake it
    return [
        region.pool_id,
        view.kind,
        view.dtype,
        view.shape,
        view.strides,
        block.start,
        block.pages,
        block.gen,
        offset,
        view.span,
        view.first,
        sender,
        seq,
        mode,
    ]


# ---------------------------------------------------------------------------- decoding
_DTYPES: dict[tuple[str, str], tuple[Any, int]] = {}
_U8 = np.dtype(np.uint8)
#: The numpy dtype a received buffer is viewed as (so torch needs no dtype reinterpretation).
_FLAT: dict[Any, Any] = {}


def _FLAT_OR_INIT() -> dict:
    if not _FLAT:
        _flat_dtypes()
    return _FLAT


def _flat_dtypes() -> None:
    import torch

    for name in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"):
        _FLAT[getattr(torch, name)] = np.dtype(name)
    _FLAT[torch.complex64] = np.dtype(np.complex64)
    _FLAT[torch.complex128] = np.dtype(np.complex128)


def itemsize_of(kind: str, dtype: Any) -> tuple[Any, int]:
    """The dtype object and item size named by a handle (ProtocolError if unusable)."""
    if type(dtype) is str:
        known = _DTYPES.get((kind, dtype))
        if known is not None:
            return known
        found = _dtype_of(kind, dtype)
        if len(_DTYPES) < 256:
            _DTYPES[kind, dtype] = found
        return found
    raise ProtocolError("page handle: dtype must be a string")


def _dtype_of(kind: str, dtype: Any) -> tuple[Any, int]:
    if type(dtype) is not str:
        raise ProtocolError("page handle: dtype must be a string")
    if kind == KIND_NUMPY:
        try:
            ndt = np.dtype(dtype)
        except TypeError as exc:
            raise ProtocolError(f"page handle: unknown numpy dtype {dtype!r}") from exc
        if ndt.hasobject or ndt.fields is not None or ndt.itemsize == 0:
            raise ProtocolError(f"page handle: numpy dtype {dtype!r} is not allowed")
        return ndt, ndt.itemsize
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ProtocolError("received a torch tensor but torch is not installed here") from exc
    tdt = getattr(torch, dtype, None)
    if not isinstance(tdt, torch.dtype):
        raise ProtocolError(f"page handle: {dtype!r} is not a torch dtype")
    if not _FLAT:
        _flat_dtypes()
    return tdt, tdt.itemsize


def check_view(kind: str, shape: Any, strides: Any, itemsize: int, first: int, span: int) -> None:
    """The view must stay inside its ``span`` bytes."""
    if type(shape) is not list or type(strides) is not list or len(shape) != len(strides) or len(shape) > MAX_DIMS:
        raise ProtocolError("page handle: shape and strides must be lists of equal length")
    for n, s in zip(shape, strides, strict=False):
        if type(n) is not int or type(s) is not int or n < 0:
            raise ProtocolError("page handle: shape and strides must be ints (shape >= 0)")
        if kind == KIND_TORCH and (s < 0 or s % itemsize):
            raise ProtocolError("page handle: torch strides must be non-negative multiples of the item size")
    lo, hi = extent(shape, strides, itemsize)
    if hi > lo and (first + lo < 0 or first + hi > span):
        raise ProtocolError(f"page handle: the view reaches outside its {span} bytes")
    if kind == KIND_TORCH and (first % itemsize or span % itemsize):
        raise ProtocolError("page handle: torch view is not aligned to its item size")


def decode(client: PageClient, payload: Any) -> Any:
    """The array or tensor a handle names, aliasing the pool's pages (no copy).

    Raises:
        ProtocolError: malformed, forged, stale or foreign handle; or no pool here.
    """
    if type(payload) is not list or len(payload) != FIELDS:
        raise ProtocolError(f"page handle must be an array of {FIELDS} fields")
    pool_id, kind, dtype, shape, strides, start, pages, gen, base_off, span, first, sender, seq, mode = payload
    if kind not in (KIND_NUMPY, KIND_TORCH) or mode not in MODES:
        raise ProtocolError("page handle: unknown kind or mode")
    region = client.require()
    if pool_id != region.pool_id:
        raise ProtocolError("page handle from another pool (another daemon, or a daemon that restarted)")
    for value in (start, pages, gen, base_off, span, first, sender, seq):
        if type(value) is not int:
            raise ProtocolError(f"page handle: {value!r:.40} where an int belongs")
    if not 0 <= start < region.n_pages or not 1 <= pages <= region.n_pages - start:
        raise ProtocolError(f"page handle: pages {start}+{pages} are outside the pool ({region.n_pages} pages)")
    if region.run(start) != (gen, pages) or gen <= 0:
        raise ProtocolError(
            f"stale or forged page handle: pages {start}+{pages} generation {gen} are not allocated as such "
            "(freed and reused, or never handed out)"
        )
    if base_off < 0 or span < 0 or base_off + span > pages * region.page_size:
        raise ProtocolError("page handle: offset and size lie outside its pages")
    dt, itemsize = itemsize_of(kind, dtype)
    check_view(kind, shape, strides, itemsize, first, span)
    flat = _FLAT.get(dt, _U8) if not span % itemsize and not base_off % itemsize else _U8
    if mode == MOVE and not client.writable_here(start, pages):
        # Moved out of pages that were shared read-only before (sealed): ours to write, so a copy.
        shared = client.take(start, pages, gen, base_off, span, sender, seq, readonly=True, dtype=_U8)
        base = client.alloc(span)
        base[:] = shared
        del shared
        base = base.view(flat) if flat is not _U8 else base
    else:
        base = client.take(start, pages, gen, base_off, span, sender, seq, readonly=mode == READ, dtype=flat)
    return build(kind, dt, itemsize, base, shape, strides, first, writable=mode != READ)


def build(
    kind: str, dt: Any, itemsize: int, base: np.ndarray, shape: list, strides: list, first: int, *, writable: bool
) -> Any:
    """The array or tensor over a lease (already checked with ``check_view``)."""
    if kind == KIND_NUMPY:
        arr = np.ndarray(tuple(shape), dtype=dt, buffer=base, offset=first, strides=tuple(strides))
        if not writable:
            arr.flags.writeable = False
        return arr
    import torch

    if not base.nbytes:
        return torch.empty(shape, dtype=dt)
    # Read-only shares view a read-only mapping: torch has no read-only tensors, so the memory
    # protection is what keeps the sender's data intact (a write is a segmentation fault).
    return _torch_view(torch, base, dt, shape, strides, first, itemsize)


def _torch_view(torch: Any, base: np.ndarray, dt: Any, shape: list, strides: list, first: int, itemsize: int) -> Any:
    flat = torch.from_numpy(base)
    if flat.dtype != dt:
        flat = flat.view(dt)
    if not first and flat.numel() == math.prod(shape) and _contiguous(shape, strides, itemsize):
        return flat if len(shape) == 1 else flat.view(shape)
    return flat.as_strided(shape, [s // itemsize for s in strides], first // itemsize)


def _contiguous(shape: list, strides: list, itemsize: int) -> bool:
    step = itemsize
    for n, s in zip(reversed(shape), reversed(strides), strict=True):
        if n != 1 and s != step:
            return False
        step *= n
    return True
