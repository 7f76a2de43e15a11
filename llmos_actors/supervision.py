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

from . import _validate
from ._ops import Awaiting, Blocking, Step, Surface, operation
from .errors import CallTimeout, ClosedError

if TYPE_CHECKING:
    from ._rpc.core import ClientCore


def target_id(ref_or_name: Any) -> str:
    """The id of a ref (anything with a str ``id``), or a name as given."""
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
    """The ``supervisor_new`` request, checked here with the daemon's own rules (``_validate``)."""
    limits = {"intensity": intensity, "period": period, "backoff": backoff, "backoff_max": backoff_max}
    spec: dict[str, Any] = {
        "strategy": _validate.strategy(strategy),
        "restart": _validate.restart_policy(restart),
        **_validate.restart_limits(limits, "supervisor"),
    }
    if name is not None:
        spec["name"] = _validate.supervisor_name(name)
    if parent is not None:
        spec["parent"] = target_id(parent)
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


class _MonitorBase(Surface):
    """What both monitor flavours share: registration with the core, callbacks, cancel."""

    def __init__(self, core: ClientCore, target: str, callback: Callable[[DownNotice], Any] | None) -> None:
        self.target = target
        self._core = core
        self._callbacks: list[Callable[[DownNotice], Any]] = [callback] if callback else []
        self.notices: list[DownNotice] = []
        self.finished = False
        self.ref = core.next_id()
        core.monitor_handlers[self.ref] = self._on_notice
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


class Monitor(_MonitorBase, Blocking):
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


class AsyncMonitor(_MonitorBase, Awaiting):
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


class SupervisorOps(Surface):
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

    @operation
    def spawn(self, cls: Any, /, *args: Any, **kwargs: Any) -> Any:
        """``kernel.spawn`` of a child of this supervisor."""
        kwargs["supervisor"] = self.id
        return (yield Step(self._kernel.spawn, cls, *args, **kwargs))

    @operation
    def spawn_with(self, cls: Any, args: tuple | list = (), kwargs: dict | None = None, **options: Any) -> Any:
        """``kernel.spawn_with`` of a child of this supervisor."""
        options["supervisor"] = self.id
        return (yield Step(self._kernel.spawn_with, cls, args, kwargs, **options))

    @operation
    def supervisor(self, **options: Any) -> Any:
        """A child supervisor (its own strategy and limits; escalates to this one)."""
        return (yield Step(self._kernel.supervisor, parent=self.id, **options))

    @operation
    def describe(self) -> Any:
        """This supervisor as the daemon sees it now (state, restarts, children ids)."""
        nodes = yield self._daemon("supervisors")
        return next(s for s in nodes if s["id"] == self.id)

    @operation
    def children(self) -> Any:
        """``ps`` rows of the actor children, in start order."""
        order = (yield from SupervisorOps.describe(self))["children"]
        rows = {r["id"]: r for r in (yield self._daemon("ps", exited=True))}
        return [rows[c] for c in order if c in rows]

    @operation
    def stop(self, *, grace: float | None = None) -> Any:
        """Stop every child (reverse start order) and remove the supervisor."""
        # No deadline: each child may take its grace period, one after the other.
        return (yield self._daemon("supervisor_stop", self.id, grace=grace, timeout=None))

    @operation
    def _exit(self) -> Any:
        yield from SupervisorOps.stop(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name or '-'} id={self.id} {self.strategy}>"


class Supervisor(SupervisorOps, Blocking):
    __doc__ = SupervisorOps.__doc__


class AsyncSupervisor(SupervisorOps, Awaiting):
    """``Supervisor`` for the asyncio kernel (methods are coroutines)."""


class SupervisionOps(Surface):
    """Kernel methods: supervisors, monitors, links."""

    if TYPE_CHECKING:

        @property
        def _core(self) -> ClientCore: ...

    @operation
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
    ) -> Any:
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
        return self._twin(SupervisorOps)(self, (yield self._daemon("supervisor_new", spec)))

    @operation
    def supervisors(self) -> Any:
        """Every supervisor node: id, name, strategy, limits, state, restarts, parent, children."""
        return (yield self._daemon("supervisors"))

    def monitor(self, ref_or_name: Any, *, callback: Callable[[DownNotice], Any] | None = None) -> Any:
        """Death notices of an actor (one per death; the last when no restart follows).

        An actor that is unknown or already gone is reported at once (reason ``noproc``).
        ``callback(notice)`` runs on the thread (or loop) that reads this kernel's replies: keep it
        short. Not a coroutine for asyncio either: it sends one message; wait on the monitor.
        """
        return self._twin(_MonitorBase)(self._core, target_id(ref_or_name), callback)

    @operation
    def link(self, a: Any, b: Any) -> Any:
        """Link two live actors: when one dies abnormally the other is killed (unless it traps exits).

        The link lasts until either dies; a restarted incarnation is not linked.

        Raises:
            ActorDiedError: one of them is not running.
            ActorNotFound: one of them is unknown.
        """
        yield self._daemon("link", target_id(a), target_id(b))

    @operation
    def unlink(self, a: Any, b: Any) -> Any:
        """Undo ``link``."""
        yield self._daemon("unlink", target_id(a), target_id(b))
