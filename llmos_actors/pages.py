"""Shared-memory pages for clients: allocate tensors in pages, share or move them, put and get objects.

``llmos.empty/zeros/full`` return torch tensors and ``llmos.np_empty/np_zeros/np_full``
numpy arrays whose memory is shared-memory pages, so sending them costs the same whatever
their size. Without ``kernel=`` they use this process's default page region: inside an actor,
its daemon's; elsewhere the daemon of the first kernel this process connected to (or, with
none, the default runtime dir's). (Actor pools, ``kernel.pool``, are another thing: ``pools``.)
"""

from __future__ import annotations

import math
import sys
import warnings
from typing import TYPE_CHECKING, Any

from ._ops import Surface, offload, operation
from ._pages.codec import Shared
from ._pages.objref import ObjectRef
from .errors import LlmosError, ProtocolError

if TYPE_CHECKING:  # numpy and the client load on first use: `import llmos_actors` stays light
    import numpy as np

    from ._pages.client import PageClient
    from ._rpc.core import ClientCore
    from ._wire.codec import Codec


# ---------------------------------------------------------------------------- which page region
def _client(kernel: Any) -> PageClient:
    from ._pages.registry import client_for, default_client

    if kernel is not None:
        arrays = kernel._core.codec.arrays
        client = getattr(arrays, "client", None)
        if client is None:
            raise LlmosError("this kernel handle has no shared-memory page region attached")
    else:
        client = default_client()
        if client is None:
            from .config import load_config

            client = client_for(load_config().runtime_dir)
    if not client.attach():
        raise LlmosError(client.error or f"no shared-memory page region at {client.runtime_dir}")
    return client


def _shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, int):
        shape = (shape,)
    shape = tuple(int(n) for n in shape)
    if any(n < 0 for n in shape):
        raise ValueError(f"negative dimension in shape {shape}")
    return shape


# ---------------------------------------------------------------------------- torch
def empty(shape: Any, dtype: Any = None, *, kernel: Any = None) -> Any:
    """An uninitialised CPU torch tensor whose memory is shared pages (sending it is O(1)).

    Args:
        shape: an int or a sequence of ints.
        dtype: a torch dtype (default: ``torch.get_default_dtype()``).
        kernel: whose page region (default: this process's default, see the module docstring).

    Raises:
        PagesExhausted: no room in the page region, even after spilling and waiting.
    """
    import torch

    dtype = torch.get_default_dtype() if dtype is None else dtype
    shape = _shape(shape)
    nbytes = math.prod(shape) * dtype.itemsize
    if not nbytes:
        return torch.empty(shape, dtype=dtype)
    base = _client(kernel).alloc(nbytes)
    return torch.from_numpy(base).view(dtype).view(shape)


def zeros(shape: Any, dtype: Any = None, *, kernel: Any = None) -> Any:
    """``empty`` filled with zeros."""
    return empty(shape, dtype, kernel=kernel).zero_()


def full(shape: Any, fill_value: Any, dtype: Any = None, *, kernel: Any = None) -> Any:
    """``empty`` filled with ``fill_value``."""
    return empty(shape, dtype, kernel=kernel).fill_(fill_value)


# ---------------------------------------------------------------------------- numpy
def np_empty(shape: Any, dtype: Any = float, *, kernel: Any = None) -> np.ndarray:
    """An uninitialised numpy array in shared pages (the numpy twin of ``empty``)."""
    import numpy as np

    dt = np.dtype(dtype)
    if dt.hasobject or dt.fields is not None:
        raise TypeError(f"numpy dtype {dt} cannot live in shared memory")
    shape = _shape(shape)
    nbytes = math.prod(shape) * dt.itemsize
    if not nbytes:
        return np.empty(shape, dtype=dt)
    return np.ndarray(shape, dtype=dt, buffer=_client(kernel).alloc(nbytes))


def np_zeros(shape: Any, dtype: Any = float, *, kernel: Any = None) -> np.ndarray:
    arr = np_empty(shape, dtype, kernel=kernel)
    arr.fill(0)
    return arr


def np_full(shape: Any, fill_value: Any, dtype: Any = None, *, kernel: Any = None) -> np.ndarray:
    import numpy as np

    arr = np_empty(shape, np.array(fill_value).dtype if dtype is None else dtype, kernel=kernel)
    arr.fill(fill_value)
    return arr


# ---------------------------------------------------------------------------- sharing modes
def share(value: Any) -> Shared:
    """Send ``value`` (a tensor or array in shared pages) as a *writable* share: the receiver's writes are seen here.

    The default share is read-only for the receiver (mapped read-only; torch tensors arrive as
    inference tensors, numpy arrays with ``writeable=False``).
    """
    return Shared(value, "w")


def move(value: Any) -> Shared:
    """Send ``value`` and give it away: the receiver gets it writable, and here a torch tensor
    becomes empty (a numpy array becomes read-only). Not in shared pages yet: copied in once."""
    return Shared(value, "m")


def in_pages(value: Any, *, kernel: Any = None) -> bool:
    """Whether a tensor's or array's memory lies in shared-memory pages (so sending it costs no copy)."""
    from ._pages import handles

    client = _client(kernel)
    view = handles.describe(value)
    return client.locate(view.low, view.span) is not None


def in_pool(value: Any, *, kernel: Any = None) -> bool:
    """Deprecated name of ``in_pages`` ("pool" now means actor pools only); removed in the next release."""
    warnings.warn("llmos.in_pool is renamed llmos.in_pages", DeprecationWarning, stacklevel=2)
    return in_pages(value, kernel=kernel)


# ---------------------------------------------------------------------------- object store
#: The kind of a stored object that is a msgpack value (not an array or tensor).
KIND_VALUE = "v"


#: Seconds a ``get`` of an object that lives on another node waits for its daemon to fetch it.
IMPORT_TIMEOUT = 120.0


def object_home(config: Any) -> str:
    """Where objects stored through this daemon live for other nodes: its first TCP address ("" if none)."""
    from ._rpc.tcp import NetworkSettings

    try:
        listen = NetworkSettings.from_config(config.extra.get("network"), config.state_dir).listen
    except LlmosError:
        return ""
    return listen[0] if listen else ""


def put_value(client: PageClient, value: Any, codec: Codec, *, detached: bool = False, home: str = "") -> ObjectRef:
    import numpy as np

    from ._pages import handles

    torch = sys.modules.get("torch")
    kind = None
    if isinstance(value, np.ndarray):
        pass
    elif torch is not None and isinstance(value, torch.Tensor):
        if value.device.type != "cpu" or value.layout != torch.strided:
            raise TypeError("kernel.put takes CPU strided tensors (call .cpu() first)")
        if value.is_conj() or value.is_neg():
            value = value.resolve_conj().resolve_neg()
    else:
        # Any other message value (None, numbers, strings, lists, maps, refs): stored packed,
        # unpacked by ``get``. Arrays inside it are copied into the packed bytes.
        body, _ = codec.pack(value, inline=True)
        value, kind = np.frombuffer(body, dtype=np.uint8), KIND_VALUE
    view = handles.describe(value)
    loc = handles.locate(client, view, handles.READ)
    lease = None
    if loc is None:
        lease, view = handles.copy_in(client, value, view)
        loc = client.locate(view.low, view.span)
        assert loc is not None
    block, _readonly, offset = loc
    meta = [kind or view.kind, view.dtype, view.shape, view.strides, offset, view.span, view.first]
    oid = client.put(block, meta, detached)
    del lease
    if kind == KIND_VALUE:
        client.own_values.keep(oid, body)
    return ObjectRef(oid, view.span, home)


def get_value(client: PageClient, ref: Any, codec: Codec, timeout: float | None = None) -> Any:
    from ._pages import handles

    if not isinstance(ref, ObjectRef):
        raise TypeError(f"kernel.get takes an ObjectRef, not {type(ref).__name__}")
    own = client.own_values.find(ref.id)
    if own is not None:
        return codec.unpack(own)  # a value this process stored: no round trip (``owned``)
    base, meta = client.get(ref.id, timeout)
    if type(meta) is not list or len(meta) != 7:
        raise ProtocolError("malformed object metadata from the daemon")
    kind, dtype, shape, strides, _offset, span, first = meta
    if kind == KIND_VALUE:
        if type(first) is not int or type(span) is not int or not 0 <= first <= first + span <= len(base):
            raise ProtocolError("malformed stored value")
        return codec.unpack(bytes(base[first : first + span]))
    dt, itemsize = handles.itemsize_of(kind, dtype)
    handles.check_view(kind, shape, strides, itemsize, first, span)
    return handles.build(kind, dt, itemsize, base, shape, strides, first, writable=False)


class PageOps(Surface):
    """Kernel methods of the shared pages: allocators in this kernel's pages (plain functions in both
    flavours: allocating never waits on the daemon for long) and the object store (``put``/``get``/
    ``free`` may wait for room or for the daemon: the asyncio flavour runs them in a thread)."""

    if TYPE_CHECKING:

        @property
        def _core(self) -> ClientCore: ...

    def empty(self, shape: Any, dtype: Any = None) -> Any:
        """``llmos.empty`` in this kernel's pages."""
        return empty(shape, dtype, kernel=self)

    def zeros(self, shape: Any, dtype: Any = None) -> Any:
        return zeros(shape, dtype, kernel=self)

    def full(self, shape: Any, fill_value: Any, dtype: Any = None) -> Any:
        return full(shape, fill_value, dtype, kernel=self)

    def np_empty(self, shape: Any, dtype: Any = float) -> np.ndarray:
        return np_empty(shape, dtype, kernel=self)

    def np_zeros(self, shape: Any, dtype: Any = float) -> np.ndarray:
        return np_zeros(shape, dtype, kernel=self)

    def np_full(self, shape: Any, fill_value: Any, dtype: Any = None) -> np.ndarray:
        return np_full(shape, fill_value, dtype, kernel=self)

    @operation
    def put(self, value: Any, *, detached: bool = False) -> Any:
        """Store a value in the pages; returns a ref anyone can ``get``.

        A tensor already in the pages is stored without a copy (do not write to it afterwards);
        any other array or tensor is copied in once; any other message value (numbers,
        strings, lists, maps...) is stored packed and ``get`` returns a copy of it (this process
        reads its own small values back without the daemon: ``_pages.owned``). The object
        lives until ``free``, or until this process exits unless ``detached`` (refs are not
        counted: drop one and the object stays). When the page region is full, objects no process maps
        are spilled to disk (least recently used first) and read back on ``get``.

        Raises:
            PagesExhausted: no room, even after spilling and waiting.
        """
        home = object_home(self._core.config)
        return (yield offload(put_value, _client(self), value, self._core.codec, detached=detached, home=home))

    @operation
    def get(self, ref: ObjectRef, *, timeout: float | None = None) -> Any:
        """The stored array or tensor, mapped read-only, without a copy (other values: unpacked).

        An object stored on another node of a cluster (its ref's ``home``) is fetched from
        there by this node's daemon once, kept in this node's pages, and read from them.

        Raises:
            ObjectLost: freed, its owner exited, or another daemon's (with no ``home`` to fetch it from).
        """
        client, codec = _client(self), self._core.codec
        if isinstance(ref, ObjectRef) and (own := client.own_values.find(ref.id)) is not None:
            return codec.unpack(own)  # this process's own value: no thread, no daemon
        if isinstance(ref, ObjectRef) and ref.home and ref.pool != f"{client.require().pool_id:016x}":
            local = yield self._daemon("object_import", ref.id, ref.home, timeout=IMPORT_TIMEOUT)
            ref = ObjectRef(local, ref.nbytes)
        return (yield offload(get_value, client, ref, codec, timeout))

    @operation
    def free(self, ref: ObjectRef) -> Any:
        """Drop a stored object (its pages go once nobody maps them)."""
        yield offload(_client(self).free, ref.id)
