"""Connecting to the kernel daemon: ``connect()`` (synchronous) and ``connect_async()``.

A kernel handle talks to the daemon for control (spawn, kill, lookup, ps);
calls to actors go straight to each actor's socket, never through the daemon.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from ._actor_ops import ActorOps
from ._auditing import AuditOps
from ._connecting import check_reachable, config_for
from ._ops import Awaiting, Blocking, operation
from ._rpc.connection import Connection
from ._rpc.core import ClientCore
from ._rpc.driver import IOThread, LoopDriver
from ._rpc.waiters import AsyncWaiter, BlockingWaiter
from ._wire import protocol as P
from ._wire.address import ActorAddress
from .config import Config
from .errors import CallTimeout, ClosedError, DaemonUnavailable
from .pages import PageOps
from .pools import ActorPoolOps
from .refs import RefOps, wait_blocking
from .snapshots import SnapshotOps
from .supervision import SupervisionOps
from .sync import SyncObjectOps
from .topics import TopicOps

#: Seconds a control request may take by default (spawn has its own, longer, bound).
CONTROL_TIMEOUT = 30.0


def _hello_payload() -> dict:
    return {"pid": os.getpid(), "protocol": P.VERSION}


def _expire(conn: Connection, msg_id: int, what: str) -> None:
    waiter = conn.cancel(msg_id)
    if waiter is not None:
        waiter.resolve(False, CallTimeout(f"{what} got no reply from {conn.peer} before its deadline"))


class KernelOps(ActorOps, TopicOps, ActorPoolOps, SupervisionOps, SyncObjectOps, SnapshotOps, PageOps, AuditOps):
    """Every operation of a kernel handle, written once; ``Kernel`` blocks, ``AsyncKernel`` awaits.

    A new operation is one ``@operation`` method here (or in its subsystem's ``...Ops`` mixin).
    """

    config: Config
    daemon_info: dict
    _closed: bool

    @property
    def _kernel(self) -> Any:
        return self

    def ref(self, address: ActorAddress) -> Any:
        """A ref of this handle's flavour, bound to it, for a known address."""
        return self._twin(RefOps)(address, self)

    @operation
    def _hello(self) -> Any:
        """Introduce this client to the daemon (its pid, our protocol) and keep what it says of itself."""
        try:
            self.daemon_info = yield self._daemon("hello", _hello_payload(), timeout=self.config.connect_timeout)
        except CallTimeout as exc:
            raise DaemonUnavailable(
                f"the daemon at {self.config.runtime_dir} did not answer within {self.config.connect_timeout} s"
            ) from exc

    @operation
    def status(self) -> Any:
        """The daemon's own state: pid, uptime, inventory, counts, counters."""
        return (yield self._daemon("status"))

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.config.runtime_dir}{' closed' if self._closed else ''}>"


class Kernel(KernelOps, Blocking):
    """A synchronous handle on the daemon. Use as a context manager, or ``close()`` it.

    Replies are read by a private IO thread; a blocking ``call`` reads its own
    reply directly when it can, so the common path has no thread hand-off.
    """

    def __init__(self, config: Config, *, ctx: Any = None, lazy: bool = False) -> None:
        self.config = config
        self._ctx = ctx
        self._io: IOThread | None = None
        self._core_obj: ClientCore | None = None
        self._init_lock = threading.Lock()
        self._closed = False
        self._pending_tasks: set[asyncio.Task] = set()
        self.daemon_info: dict = {}
        if not lazy:
            self._start()

    # ------------------------------------------------------------------ plumbing
    @property
    def _core(self) -> ClientCore:
        core = self._core_obj
        return core if core is not None else self._start()

    def _start(self) -> ClientCore:
        with self._init_lock:
            if self._closed:
                raise ClosedError("this kernel handle is closed")
            if self._core_obj is not None:
                return self._core_obj
            check_reachable(self.config)
            io = IOThread()
            try:
                core = ClientCore(self.config, io.driver, self.ref, ctx=self._ctx)
            except BaseException:
                io.stop()
                raise
            self._io, self._core_obj = io, core
        try:
            self._hello()
        except BaseException:
            self.close()
            raise
        return core

    def _control(self, method: str, *args: Any, timeout: float | None = CONTROL_TIMEOUT, **kwargs: Any) -> Any:
        core = self._core
        core.link.wait_back()  # the daemon went away: wait (bounded) for it before asking
        conn = core.control
        msg_id, head, body, bufs, deadline = core.encode(P.CALL, method, args, kwargs, timeout=timeout)
        try:
            waiter = BlockingWaiter()
            conn.call_blocking(msg_id, head, body, bufs, waiter, deadline)
            result = wait_blocking(conn, msg_id, waiter, deadline, f"daemon request {method!r}")
        except BaseException as exc:
            core.end_root(msg_id, exc)
            raise
        core.end_root(msg_id)
        return result

    def _expire_later(self, conn: Connection, msg_id: int, deadline: float, what: str) -> None:
        assert self._io is not None
        loop = self._io.loop
        self._io.driver.call_soon(lambda: loop.call_later(deadline - time.monotonic(), _expire, conn, msg_id, what))

    def _send_when_alive(
        self,
        conn: Connection,
        msg_id: int,
        head: bytes,
        body: bytes,
        bufs: list,
        fut: Any,
        deadline: float | None,
        prio: int | None = None,
    ) -> None:
        """``ask`` with ``wait_restart`` on a restarting actor: send from the IO loop once it is back."""
        assert self._io is not None

        async def later() -> None:
            try:
                await conn.wait_alive_async(deadline)
                conn.request(msg_id, head, body, bufs, fut, prio)
            except BaseException as exc:
                fut.resolve(False, exc)

        def start() -> None:
            task = self._io.loop.create_task(later())  # type: ignore[union-attr]
            self._pending_tasks.add(task)
            task.add_done_callback(self._pending_tasks.discard)

        self._io.driver.call_soon(start)

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Close all sockets and stop the IO thread. Pending calls fail with ClosedError."""
        with self._init_lock:
            if self._closed:
                return
            self._closed = True
            io, core = self._io, self._core_obj
            self._io = self._core_obj = None
        if io is not None:
            if core is not None:
                try:
                    io.run(core.close, timeout=10)
                except Exception:
                    pass
            io.stop()

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and getattr(self, "_core_obj", None) is not None:
            warnings.warn(f"unclosed llmos kernel handle {self!r}", ResourceWarning, stacklevel=2)
            try:
                self.close()
            except Exception:
                pass


class AsyncKernel(KernelOps, Awaiting):
    """The asyncio handle on the daemon: ``async with llmos.connect_async() as kernel``.

    Every socket is driven by the running loop; many calls can be in flight and
    small ones leave in batches at the end of each loop turn.
    """

    def __init__(self, config: Config, *, ctx: Any = None, core: ClientCore | None = None) -> None:
        self.config = config
        self._ctx = ctx
        self._core_obj = core
        self._own_core = core is None
        self._loop: asyncio.AbstractEventLoop | None = None if core is None else core.driver.loop
        self._closed = False
        self.daemon_info: dict = {}

    @property
    def _core(self) -> ClientCore:
        if self._core_obj is None:
            raise ClosedError("this async kernel is not connected: await it or use `async with`")
        return self._core_obj

    async def _connect(self) -> AsyncKernel:
        if self._core_obj is None:
            if self._closed:
                raise ClosedError("this kernel handle is closed")
            check_reachable(self.config)
            loop = asyncio.get_running_loop()
            self._loop = loop
            self._core_obj = ClientCore(self.config, LoopDriver(loop), self.ref, ctx=self._ctx)
            try:
                await self._hello()
            except BaseException:
                await self.close()
                raise
        return self

    def __await__(self):
        return self._connect().__await__()

    async def __aenter__(self) -> AsyncKernel:
        return await self._connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def _control(self, method: str, *args: Any, timeout: float | None = CONTROL_TIMEOUT, **kwargs: Any) -> Any:
        core = self._core
        if core.link.lost:  # the daemon went away: wait (bounded) for it, then ask
            return asyncio.ensure_future(self._control_when_back(method, args, kwargs, timeout))
        msg_id, head, body, bufs, deadline = core.encode(P.CALL, method, args, kwargs, timeout=timeout)
        waiter = AsyncWaiter(self._loop)  # type: ignore[arg-type]
        core.end_root_with(msg_id, waiter.future)
        core.control.request(msg_id, head, body, bufs, waiter)
        if deadline is not None:
            self._expire_later(core.control, msg_id, deadline, f"daemon request {method!r}")
        return waiter.future

    async def _control_when_back(self, method: str, args: tuple, kwargs: dict, timeout: float | None) -> Any:
        await self._core.link.wait_back_async()
        return await self._control(method, *args, timeout=timeout, **kwargs)

    def _expire_later(self, conn: Connection, msg_id: int, deadline: float, what: str) -> None:
        self._loop.call_later(deadline - time.monotonic(), _expire, conn, msg_id, what)  # type: ignore[union-attr]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._core_obj is not None and self._own_core:
            self._core_obj.close()
        self._core_obj = None


#: ``connect("SCHEME://...")`` handlers registered by layers built on this one (``ray`` by ``llmos_actors.cluster``).
URL_SCHEMES: dict[str, Callable[[str], Any]] = {}
#: The same for ``connect_async("SCHEME://...")``.
ASYNC_URL_SCHEMES: dict[str, Callable[[str], Any]] = {}


def connect(
    runtime_dir: str | os.PathLike[str] | None = None,
    *,
    config: Config | None = None,
    key: str | os.PathLike[str] | None = None,
    server_key: str | None = None,
) -> Kernel:
    """Connect to the daemon of ``runtime_dir`` (default: ``$LLMOS_RUNTIME_DIR`` or the user's).

    A remote daemon: ``connect("tcp://host:7700", key="~/.config/llmos/me.key", server_key=...)``
    (CurveZMQ; ``server_key`` is the daemon's public key or its ``.pub`` file).

    Raises:
        DaemonUnavailable: no daemon runs there, or it does not answer.
        ConfigError: the runtime directory is not trustworthy, or keys are missing or bad.
    """
    scheme = runtime_dir.partition("://")[0] if isinstance(runtime_dir, str) and "://" in runtime_dir else ""
    if scheme in URL_SCHEMES:
        return URL_SCHEMES[scheme](str(runtime_dir))
    return Kernel(config_for(runtime_dir, config, key=key, server_key=server_key))


def connect_async(
    runtime_dir: str | os.PathLike[str] | None = None,
    *,
    config: Config | None = None,
    key: str | os.PathLike[str] | None = None,
    server_key: str | None = None,
) -> AsyncKernel:
    """The asyncio handle: ``async with connect_async() as kernel`` or ``kernel = await connect_async()``."""
    scheme = runtime_dir.partition("://")[0] if isinstance(runtime_dir, str) and "://" in runtime_dir else ""
    if scheme in ASYNC_URL_SCHEMES:
        return ASYNC_URL_SCHEMES[scheme](str(runtime_dir))
    return AsyncKernel(config_for(runtime_dir, config, key=key, server_key=server_key))
