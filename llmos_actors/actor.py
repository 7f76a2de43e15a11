"""The ``Actor`` base class: what user code subclasses to run in its own process."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import AsyncKernel, Kernel
    from .refs import ActorRef

#: Names of the framework's own hooks and attributes; never callable remotely.
RESERVED_NAMES = frozenset(
    {
        "on_start",
        "on_stop",
        "on_failure",
        "on_exit",
        "on_monitor_down",
        "on_metrics",
        "on_decisions",
        "on_snapshot",
        "on_restore",
    }
)


class Actor:
    """Base class for actors.

    Each instance lives in its own OS process, forked by the daemon's fork
    server. Public methods (names not starting with ``_``) can be called by
    name from any client: plain methods run on the actor's main thread, one at
    a time; ``async def`` methods run on the actor's event loop; generator
    methods stream their items to the caller.

    The framework's attributes are prefixed ``actor_`` so they never collide
    with your own, and they are available from ``__init__`` on.

    Class attributes you may set:
        max_concurrency: sync methods run on a pool of this many threads (default 1: the main thread).
        max_async: ``async def`` calls running at once (default 1000); more wait in the mailbox.
        mailbox_size: bound of the mailbox (default from the daemon config).
        overflow: "block", "raise" or "drop" for senders when the mailbox is full.
        trap_exits: a linked actor's abnormal death arrives as a call to ``on_exit(notice)``
            instead of killing this one (default False).
        mailbox_policy: "priority" (default: multi-level feedback queue) or "fifo".
        mailbox_aging: seconds a waiting message needs to climb one priority level (default 1.0).
        flood_share: share of the mailbox one sender may fill before its messages are demoted (0.25).
        goal: ``staticmethod(fn(objective, time_left, priority) -> level)``, see ``llmos_actors.scheduling``.

    Optional hook: ``on_metrics(self) -> dict`` of numbers and histogram snapshots, sent with
    the heartbeat while the daemon serves metrics and exported as ``llmos_llm_*`` /
    ``llmos_custom_*`` (see docs/metrics.md).

    Optional hook: ``on_decisions(self) -> list[dict]``, the scheduling decisions made since the
    last heartbeat (at most 32 a heartbeat are sent); the daemon publishes each on the
    ``sys.device.decision`` topic with the actor's name and id attached (the LLM device does).
    """

    max_concurrency: int | None = None
    max_async: int | None = None
    mailbox_size: int | None = None
    overflow: str | None = None
    trap_exits: bool = False
    mailbox_policy: str | None = None
    mailbox_aging: float | None = None
    flood_share: float | None = None
    goal: Any = None

    # Set by the runtime before __init__ runs.
    _llmos_runtime: Any = None

    def on_start(self) -> Any:
        """Called once after ``__init__``, before the first message (may be ``async def``)."""

    def on_stop(self) -> Any:
        """Called once when the actor is asked to stop (may be ``async def``)."""

    def on_exit(self, notice: Any) -> Any:
        """A linked actor died (only with ``trap_exits = True``): a ``DownNotice``, through the mailbox."""

    def on_monitor_down(self, notice: Any) -> Any:
        """An actor this one monitors (``actor_monitor``) died: a ``DownNotice``, through the mailbox."""

    def actor_monitor(self, target: Any) -> int:
        """Have each death of ``target`` (ref or name) delivered as a call to ``on_monitor_down(notice)``.

        Never blocks (one message to the daemon). Returns a monitor reference for ``actor_demonitor``.
        """
        return self._llmos_runtime.monitor(target)

    def actor_demonitor(self, monitor_ref: int) -> None:
        self._llmos_runtime.demonitor(monitor_ref)

    def actor_link(self, other: Any) -> None:
        """Link this actor with ``other``: if either dies abnormally, the other is killed (unless it traps exits).

        Blocks for one round trip to the daemon; from ``async def`` methods use
        ``await self.actor_kernel_async.link(self.actor_ref, other)``.
        """
        self.actor_kernel.link(self.actor_id, other)

    def actor_unlink(self, other: Any) -> None:
        self.actor_kernel.unlink(self.actor_id, other)

    @property
    def actor_call_priority(self) -> int | None:
        """The level (0..7) of the call being run, after the goal function (objective, deadline).

        Seen by ``async def`` and async generator methods (None elsewhere): an actor that
        queues work of its own, like the LLM device, passes its callers' priorities on.
        """
        from .scheduling import CALL_LEVEL

        return CALL_LEVEL.get()

    def actor_caller_connected(self) -> bool:
        """Whether the caller of the ``async def`` call running now is still connected (True outside one).

        For long calls that hold something for their caller: the LLM device cancels a plain
        ``generate`` whose caller's process died. Sends the caller one notice it ignores; call it
        on the actor's event loop (from the ``async def`` method or a task it started).
        """
        from ._callctx import CURRENT_CALL

        req = CURRENT_CALL.get()
        server = getattr(self._llmos_runtime, "server", None)
        if req is None or server is None:
            return True
        return bool(server.ping(req.ident))

    def actor_crash(self, exc: BaseException) -> None:
        """End this actor as crashed, ``exc`` the reason; safe from any thread (e.g. a background load that failed).

        Its callers in flight get ``ActorDiedError`` naming ``exc``, its supervisor and monitors see a
        crash (exit code 1, restarted as its policy says); before it is ready, the spawn fails instead.
        """
        self._llmos_runtime.crash(exc)

    @property
    def actor_name(self) -> str:
        """The name this actor was spawned with."""
        return self._llmos_runtime.name

    @property
    def actor_id(self) -> str:
        """The daemon-wide id of this actor (kept across restarts)."""
        return self._llmos_runtime.actor_id

    @property
    def actor_ref(self) -> ActorRef:
        """A ref to this actor, to hand to others."""
        return self._llmos_runtime.self_ref()

    @property
    def actor_kernel(self) -> Kernel:
        """A connected (synchronous) kernel handle: spawn, look up, call, publish from sync methods."""
        return self._llmos_runtime.kernel()

    def actor_subscribe(self, prefix: str, method: str) -> None:
        """Deliver messages on topics starting with ``prefix`` to ``method(topic, msg)`` from now on.

        The declarative form is the ``@llmos.subscribe(prefix)`` method decorator.
        """
        self._llmos_runtime.subscribe(prefix, method)

    @property
    def actor_kernel_async(self) -> AsyncKernel:
        """The asyncio kernel handle, on this actor's own loop: for ``async def`` methods."""
        return self._llmos_runtime.kernel_async()
