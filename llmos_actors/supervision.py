"""Supervision for clients: supervisor trees, monitors (death notices on request) and links.

    sup = kernel.supervisor(strategy="one_for_all", intensity=3, period=5.0)
    db = sup.spawn(Db, name="db")              # children start in order...
    api = sup.spawn(Api, db, name="api")       # ...and stop in reverse (sup.stop())
    with kernel.monitor(api) as mon:
        notice = mon.wait(timeout=10)          # a DownNotice: exit code / signal, reason, restarting?
    kernel.link(db, api)                       # one dies abnormally -> the other is killed too

The daemon does the supervising (``_kernel/supervisor.py``): these are handles.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import CallTimeout, ClosedError

if TYPE_CHECKING:
    from ._rpc.core import ClientCore

STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")


def _target(ref_or_name: Any) -> str:
    if isinstance(ref_or_name, str):
        return ref_or_name
    ident = getattr(ref_or_name, "id", None)
    if not isinstance(ident, str):
        raise TypeError(f"expected an actor ref or name, not {ref_or_name!r}")
    return ident


def _supervisor_spec(
    strategy: str,
    intensity: int | None,
    period: float | None,
    backoff: float | None,
    backoff_max: float | None,
    name: str | None,
    parent: Any,
    restart: str,
) -> dict:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
    if intensity is not None and (type(intensity) is not int or intensity < 0):
        raise ValueError(f"intensity must be an int >= 0, not {intensity!r}")
    for key, value in (("period", period), ("backoff", backoff), ("backoff_max", backoff_max)):
        if value is not None and (not isinstance(value, (int, float)) or value < 0):
            raise ValueError(f"{key} must be a number of seconds >= 0, not {value!r}")
    if period is not None and period <= 0:
        raise ValueError("period must be > 0 seconds")
    spec: dict[str, Any] = {"strategy": strategy, "restart": restart}
    item: Any
    for key, item in (
        ("intensity", intensity),
        ("period", period),
        ("backoff", backoff),
        ("backoff_max", backoff_max),
        ("name", name),
    ):
        if item is not None:
            spec[key] = item
    if parent is not None:
        spec["parent"] = parent if isinstance(parent, str) else parent.id
    return spec


@dataclass(frozen=True)
class DownNotice:
    """One death of a monitored actor.

    Attributes:
        actor: its id; ``name`` its name.
        exitcode / signal: how the process ended (None when unknown, e.g. ``noproc``).
        reason: one human line (``noproc: no such actor`` if it was never there).
        restarting: its supervisor is starting another incarnation (more notices may follow).
    """

    actor: str
    name: str
    pid: int | None
    exitcode: int | None
    signal: int | None
    reason: str
    restarting: bool
    incarnation: int | None = None

    @classmethod
    def from_wire(cls, body: dict) -> DownNotice:
        return cls(
            actor=str(body.get("actor", "")),
            name=str(body.get("name") or ""),
            pid=body.get("pid"),
            exitcode=body.get("exitcode"),
            signal=body.get("signal"),
            reason=str(body.get("reason") or ""),
            restarting=bool(body.get("restarting")),
            incarnation=body.get("incarnation"),
        )

    @property
    def abnormal(self) -> bool:
        return bool(self.signal) or self.exitcode != 0


class _MonitorBase:
    """What both monitor flavours share: registration with the core, callbacks, cancel."""

    def __init__(self, core: ClientCore, target: str, callback: Callable[[DownNotice], Any] | None) -> None:
        self.target = target
        self._core = core
        self._callbacks: list[Callable[[DownNotice], Any]] = [callback] if callback else []
        self.notices: list[DownNotice] = []
        self.finished = False
        self.ref = core.next_id()
        core.monitor_handlers[self.ref] = self._on_notice
        core.link.monitors[self.ref] = target  # registered again if the daemon restarts
        core.tell_daemon("monitor", target, self.ref)

    def _on_notice(self, body: dict) -> None:  # on the thread that reads the control socket
        notice = DownNotice.from_wire(body)
        self.notices.append(notice)
        if not notice.restarting:
            self.finished = True
        self._push(notice)
        for callback in list(self._callbacks):
            try:
                callback(notice)
            except Exception:  # a user callback must not break the reader
                self._core.driver.log.exception("monitor callback failed")

    def _push(self, notice: DownNotice) -> None:
        raise NotImplementedError

    def add_callback(self, fn: Callable[[DownNotice], Any]) -> None:
        """Call ``fn(notice)`` for each death (past ones at once), on the kernel's IO thread or loop."""
        self._callbacks.append(fn)
        for notice in list(self.notices):
            fn(notice)

    def cancel(self) -> None:
        """Stop monitoring (no more notices)."""
        if self._core.monitor_handlers.pop(self.ref, None) is not None and not self.finished:
            try:
                self._core.tell_daemon("demonitor", self.target, self.ref)
            except Exception:
                pass
        self.finished = True
        self._push(None)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.target} deaths={len(self.notices)}{' done' if self.finished else ''}>"


class Monitor(_MonitorBase):
    """Death notices of one actor: ``wait()``, iterate, or ``add_callback``.

    Every death is reported (with ``restarting`` when a new incarnation follows);
    the monitor ends after a death with no restart, or on ``cancel()``.
    """

    def __init__(self, core: ClientCore, target: str, callback: Callable[[DownNotice], Any] | None = None) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[DownNotice | None] = deque()
        super().__init__(core, target, callback)

    def _push(self, notice: DownNotice | None) -> None:
        with self._cond:
            self._queue.append(notice)
            self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> DownNotice:
        """The next death notice.

        Raises:
            CallTimeout: none within ``timeout`` seconds.
            ClosedError: the monitor was cancelled (or ended) and nothing is left.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._queue:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise CallTimeout(f"no death of {self.target!r} within {timeout} s")
                self._cond.wait(left)
            notice = self._queue.popleft()
            if notice is None:
                self._queue.appendleft(None)
                raise ClosedError(f"monitor of {self.target!r} is cancelled")
            return notice

    def __iter__(self) -> Monitor:
        return self

    def __next__(self) -> DownNotice:
        if self.finished and not any(self._queue):
            raise StopIteration
        try:
            return self.wait()
        except ClosedError:
            raise StopIteration from None

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cancel()


class AsyncMonitor(_MonitorBase):
    """``Monitor`` for asyncio: ``await mon.wait()``, ``async for notice in mon``."""

    def __init__(self, core: ClientCore, target: str, callback: Callable[[DownNotice], Any] | None = None) -> None:
        self._queue: asyncio.Queue = asyncio.Queue()
        super().__init__(core, target, callback)

    def _push(self, notice: DownNotice | None) -> None:
        self._queue.put_nowait(notice)

    async def wait(self, timeout: float | None = None) -> DownNotice:
        try:
            notice = await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            raise CallTimeout(f"no death of {self.target!r} within {timeout} s") from None
        if notice is None:
            self._queue.put_nowait(None)
            raise ClosedError(f"monitor of {self.target!r} is cancelled")
        return notice

    def __aiter__(self) -> AsyncMonitor:
        return self

    async def __anext__(self) -> DownNotice:
        if self.finished and self._queue.empty():
            raise StopAsyncIteration
        try:
            return await self.wait()
        except ClosedError:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> AsyncMonitor:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.cancel()


class Supervisor:
    """A handle on a supervisor node in the daemon (plain data: id and settings).

    ``spawn`` starts a child (restart policy defaults to ``permanent``); children
    start in the order spawned and stop in reverse. ``stop()`` (or leaving a
    ``with`` block) stops them all and removes the supervisor.
    """

    def __init__(self, kernel: Any, info: dict) -> None:
        self._kernel = kernel
        self.info = info
        self.id: str = info["id"]
        self.name: str = info.get("name") or ""
        self.strategy: str = info.get("strategy", "one_for_one")

    def spawn(self, cls: Any, /, *args: Any, **kwargs: Any) -> Any:
        """``kernel.spawn`` of a child of this supervisor."""
        kwargs["supervisor"] = self.id
        return self._kernel.spawn(cls, *args, **kwargs)

    def spawn_with(self, cls: Any, args: tuple | list = (), kwargs: dict | None = None, **options: Any) -> Any:
        options["supervisor"] = self.id
        return self._kernel.spawn_with(cls, args, kwargs, **options)

    def supervisor(self, **options: Any) -> Supervisor:
        """A child supervisor (its own strategy and limits; escalates to this one)."""
        return self._kernel.supervisor(parent=self.id, **options)

    def describe(self) -> dict:
        """This supervisor as the daemon sees it now (state, restarts, children ids)."""
        return next(s for s in self._kernel.supervisors() if s["id"] == self.id)

    def children(self) -> list[dict]:
        """``ps`` rows of the actor children, in start order."""
        order = self.describe()["children"]
        rows = {r["id"]: r for r in self._kernel.ps()}
        return [rows[c] for c in order if c in rows]

    def stop(self, *, grace: float | None = None) -> dict:
        """Stop every child (reverse start order) and remove the supervisor."""
        # No deadline: each child may take its grace period, one after the other.
        return self._kernel._control("supervisor_stop", self.id, grace=grace, timeout=None)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Supervisor {self.name or '-'} id={self.id} {self.strategy}>"


class AsyncSupervisor:
    """``Supervisor`` for the asyncio kernel (methods are coroutines)."""

    def __init__(self, kernel: Any, info: dict) -> None:
        self._kernel = kernel
        self.info = info
        self.id: str = info["id"]
        self.name: str = info.get("name") or ""
        self.strategy: str = info.get("strategy", "one_for_one")

    async def spawn(self, cls: Any, /, *args: Any, **kwargs: Any) -> Any:
        kwargs["supervisor"] = self.id
        return await self._kernel.spawn(cls, *args, **kwargs)

    async def spawn_with(self, cls: Any, args: tuple | list = (), kwargs: dict | None = None, **options: Any) -> Any:
        options["supervisor"] = self.id
        return await self._kernel.spawn_with(cls, args, kwargs, **options)

    async def supervisor(self, **options: Any) -> AsyncSupervisor:
        return await self._kernel.supervisor(parent=self.id, **options)

    async def describe(self) -> dict:
        return next(s for s in await self._kernel.supervisors() if s["id"] == self.id)

    async def stop(self, *, grace: float | None = None) -> dict:
        return await self._kernel._control("supervisor_stop", self.id, grace=grace, timeout=None)

    async def __aenter__(self) -> AsyncSupervisor:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"<AsyncSupervisor {self.name or '-'} id={self.id} {self.strategy}>"


class SupervisionMixin:
    """``Kernel`` methods: supervisors, monitors, links."""

    _control: Callable[..., Any]

    def supervisor(
        self,
        *,
        strategy: str = "one_for_one",
        intensity: int | None = None,
        period: float | None = None,
        backoff: float | None = None,
        backoff_max: float | None = None,
        name: str | None = None,
        parent: Any = None,
        restart: str = "permanent",
    ) -> Supervisor:
        """Create a supervisor: a group of children restarted by ``strategy``.

        Args:
            strategy: "one_for_one" (restart the failed child), "one_for_all" (all
                children), "rest_for_one" (it and those started after it).
            intensity, period: more than ``intensity`` restarts within ``period`` seconds
                and the supervisor gives up: stops its children and escalates to ``parent``.
            backoff, backoff_max: delay before the 2nd restart in a window, doubling, capped.
            parent: a supervisor (handle or id) this one is a child of.
            restart: this supervisor's own policy as a child of ``parent``.

        Defaults come from the daemon's ``[supervisor]`` config section.
        """
        spec = _supervisor_spec(strategy, intensity, period, backoff, backoff_max, name, parent, restart)
        return Supervisor(self, self._control("supervisor_new", spec))

    def supervisors(self) -> list[dict]:
        """Every supervisor node: id, name, strategy, limits, state, restarts, parent, children."""
        return self._control("supervisors")

    def monitor(self, ref_or_name: Any, *, callback: Callable[[DownNotice], Any] | None = None) -> Monitor:
        """Death notices of an actor (one per death; the last when no restart follows).

        An actor that is unknown or already gone is reported at once (reason ``noproc``).
        ``callback(notice)`` runs on this kernel's IO thread: keep it short.
        """
        return Monitor(self._core, _target(ref_or_name), callback)  # type: ignore[attr-defined]

    def link(self, a: Any, b: Any) -> None:
        """Link two live actors: when one dies abnormally the other is killed (unless it traps exits).

        The link lasts until either dies; a restarted incarnation is not linked.

        Raises:
            ActorDiedError: one of them is not running.
            ActorNotFound: one of them is unknown.
        """
        self._control("link", _target(a), _target(b))

    def unlink(self, a: Any, b: Any) -> None:
        self._control("unlink", _target(a), _target(b))


class AsyncSupervisionMixin:
    """``AsyncKernel`` methods: the same as ``SupervisionMixin``, as coroutines."""

    _control: Callable[..., Any]

    async def supervisor(
        self,
        *,
        strategy: str = "one_for_one",
        intensity: int | None = None,
        period: float | None = None,
        backoff: float | None = None,
        backoff_max: float | None = None,
        name: str | None = None,
        parent: Any = None,
        restart: str = "permanent",
    ) -> AsyncSupervisor:
        spec = _supervisor_spec(strategy, intensity, period, backoff, backoff_max, name, parent, restart)
        return AsyncSupervisor(self, await self._control("supervisor_new", spec))

    async def supervisors(self) -> list[dict]:
        return await self._control("supervisors")

    def monitor(self, ref_or_name: Any, *, callback: Callable[[DownNotice], Any] | None = None) -> AsyncMonitor:
        """As ``Kernel.monitor`` (not a coroutine: it sends one message); wait on it with ``await``."""
        return AsyncMonitor(self._core, _target(ref_or_name), callback)  # type: ignore[attr-defined]

    async def link(self, a: Any, b: Any) -> None:
        await self._control("link", _target(a), _target(b))

    async def unlink(self, a: Any, b: Any) -> None:
        await self._control("unlink", _target(a), _target(b))
