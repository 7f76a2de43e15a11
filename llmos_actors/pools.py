"""Actor pools: one handle, many identical actors, a shared queue, dispatch by tags and load.

    pool = kernel.pool(Worker, size=2, max=4, tags=["cpu"])
    pool.call("work", 1)                      # to the least loaded member
    pool.options(tags=["gpu"]).call("work")   # only members tagged "gpu"

The pool is served by a dispatcher actor that holds the shared queue: a call
waits there until a member whose tags include the request's tags has room
(``window`` calls in flight each), and goes to the least loaded such member.
The daemon's scheduler grows the pool toward ``max`` while work queues up and
shrinks it toward ``min`` when members sit idle (``llmos status`` shows why).
A call in flight on a member that dies fails with ``ActorDiedError``: pools do
not retry work that may have partly run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _spawnspec
from ._ops import Awaiting, Blocking, Step, Surface, operation
from .refs import CallOptions

if TYPE_CHECKING:
    from ._rpc.core import ClientCore

#: Calls in flight per member before more wait in the shared queue.
DEFAULT_WINDOW = 2
_POOL_SETTINGS: tuple[str, ...] = ("size", "min", "max", "tags", "window", "name")


_NO_OPTIONS = CallOptions()


@dataclass(frozen=True, slots=True)
class PoolOptions:
    """Per-call options of a pool handle: the call options plus the tags a member must have."""

    call: CallOptions = _NO_OPTIONS
    tags: tuple[str, ...] = ()


class PoolOps(Surface):
    """A handle on an actor pool: ``call``, ``ask``, ``tell`` like an ``ActorRef``, to the least
    loaded member whose tags include the handle's."""

    def __init__(self, dispatcher: Any, info: dict, options: PoolOptions = PoolOptions()) -> None:
        self._dispatcher = dispatcher
        self._kernel = dispatcher._kernel
        self.info = info
        self._opts = options

    @property
    def name(self) -> str:
        return self.info.get("name", "")

    @property
    def dispatcher(self) -> Any:
        """The dispatcher actor's ref."""
        return self._dispatcher

    def options(self, *, tags: list[str] | tuple[str, ...] | None = None, **call_options: Any) -> Any:
        """A handle whose calls need members with ``tags`` and carry ``call_options`` (timeout, priority...)."""
        opts = PoolOptions(
            self._opts.call.merge(**call_options) if call_options else self._opts.call,
            tuple(tags) if tags is not None else self._opts.tags,
        )
        return type(self)(self._dispatcher, self.info, opts)

    def _via(self) -> Any:
        """The dispatcher's ref carrying this handle's call options."""
        if self._opts.call == _NO_OPTIONS:
            return self._dispatcher
        return self._dispatcher.options(**dataclasses.asdict(self._opts.call))

    def _submit(self, how: str, method: str, args: tuple, kwargs: dict) -> Any:
        return Step(getattr(self._via(), how), "submit", method, list(args), kwargs, list(self._opts.tags))

    @operation
    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` on a member and return its result (errors as in ``ActorRef.call``)."""
        return (yield self._submit("call", method, args, kwargs))

    def ask(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Start the call and return a future of its result (the flavour's future, as ``ref.ask``)."""
        return self._via().ask("submit", method, list(args), kwargs, list(self._opts.tags))

    @operation
    def tell(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Send one way (as ``ActorRef.tell``)."""
        return (yield self._submit("tell", method, args, kwargs))

    @operation
    def load(self) -> Any:
        """Backlog and members as the dispatcher sees them."""
        return (yield Step(self._dispatcher.call, "load"))

    @operation
    def stop(self, *, drain: bool = True) -> Any:
        """Stop the dispatcher and every member; work still queued fails with ``ActorDiedError``.

        Members stop as ``kernel.kill`` stops an actor: with ``drain=True`` each lets the calls
        it has already taken finish within the grace period; ``drain=False`` fails them at once.
        """
        timeout = self._kernel.config.grace * 2 + 10
        return (yield self._daemon("pool_stop", self.name, drain=drain, timeout=timeout))

    @operation
    def _exit(self) -> Any:
        yield from PoolOps.stop(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} via {self._dispatcher!r}>"


class Pool(PoolOps, Blocking):
    __doc__ = PoolOps.__doc__


class AsyncPool(PoolOps, Awaiting):
    """The asyncio actor pool handle."""


def _pool_request(core: ClientCore, cls: Any, args: tuple, kwargs: dict, settings: dict) -> dict:
    size = settings.pop("size", 2)
    low = settings.pop("min", None)
    high = settings.pop("max", None)
    tags = settings.pop("tags", None)
    window = settings.pop("window", DEFAULT_WINDOW)
    name = settings.pop("name", None)
    low = size if low is None else low
    high = max(size, low) if high is None else high
    for label, value in (("size", size), ("min", low), ("max", high), ("window", window)):
        if type(value) is not int or value < (0 if label == "min" else 1):
            raise ValueError(f"pool {label} must be a positive int, not {value!r}")
    if not low <= size <= high:
        raise ValueError(f"pool sizes must satisfy min <= size <= max (got {low} <= {size} <= {high})")
    if tags is not None:
        if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
            raise TypeError("tags must be a list of strings")
        tags = list(tags)
    if name is not None and not _spawnspec.NAME_RE.match(name):
        raise ValueError(f"pool name must match {_spawnspec.NAME_RE.pattern}, not {name!r}")
    member = _spawnspec.build_spawn_request(core.codec, cls, args, kwargs, settings)
    member.pop("name", None)
    return {"member": member, "size": size, "min": low, "max": high, "tags": tags or [], "window": window, "name": name}


class ActorPoolOps(Surface):
    """``kernel.pool(...)``: start an actor pool."""

    if TYPE_CHECKING:

        @property
        def _core(self) -> ClientCore: ...

        def ref(self, address: Any) -> Any: ...

    @operation
    def pool(self, cls: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Start a pool of ``cls`` actors behind one dispatcher; returns its handle.

        Pool settings (keywords): ``size`` (2), ``min`` (= size), ``max`` (= size),
        ``tags`` (list of strings every member has), ``window`` (calls in flight per
        member, 2), ``name``; the spawn options of ``spawn`` (``cpus``, ``priority``, ...)
        apply to every member; other keywords go to the members' constructor.
        """
        settings: dict[str, Any] = {k: kwargs.pop(k) for k in _POOL_SETTINGS if k in kwargs}
        settings.update({k: kwargs.pop(k) for k in _spawnspec.SPAWN_OPTIONS if k in kwargs and k != "name"})
        request = _pool_request(self._core, cls, args, kwargs, settings)
        timeout = self._core.config.spawn_timeout * 2 + 10
        info = yield self._daemon("pool_create", request, timeout=timeout)
        return self._twin(PoolOps)(self.ref(_address(info)), info)


def _address(info: dict) -> Any:
    from ._wire.address import ActorAddress

    return ActorAddress.from_dict(info["dispatcher"])
