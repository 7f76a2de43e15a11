"""Actor pools: a dispatcher actor in front of members that the daemon grows and shrinks.

A pool grows by one member while work has waited in its queue for ``grow_after``
seconds (up to ``max``), shrinks by one when a member has been idle
``idle_after`` seconds (down to ``min``), and replaces members that died. The
scheduler's loop calls ``size`` once per interval; the dispatcher is asked
through the daemon's own asyncio client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .._spawnspec import check_pool_request
from .._wire.codec import Codec
from ..errors import ActorImportError, LlmosError, ProtocolError
from .lifecycle import Lifecycle
from .proctable import EXITED, RESTARTING, ActorRecord, ProcessTable

DISPATCHER_CLASS = "llmos_actors.pool_dispatcher:PoolDispatcher"


@dataclass
class PoolRecord:
    name: str
    dispatcher: ActorRecord
    member_request: dict
    min: int
    max: int
    tags: list[str]
    members: list[str] = field(default_factory=list)
    serial: int = 0
    ready: bool = False  # its initial members are up: the loop may size it from then on
    backlog_since: float | None = None
    last_change: float = field(default_factory=time.monotonic)

    def describe(self, table: Any) -> dict:
        return {
            "name": self.name,
            "dispatcher": self.dispatcher.id,
            "members": [table.by_id[m].label for m in self.members if m in table.by_id],
            "min": self.min,
            "max": self.max,
            "tags": self.tags,
        }


class ActorPools:
    """The pools of one daemon, sized by the scheduler's loop.

    Args:
        decide: records a decision with its reason (the scheduler's ``Decisions``).
        settings: the ``[scheduler]`` section (``grow_after``, ``idle_after``).
        spawn: starts the dispatcher and the members (the daemon's checked spawn).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        table: ProcessTable,
        lifecycle: Lifecycle,
        decide: Callable[..., None],
        settings: dict,
        spawn: Callable[..., Awaitable[ActorRecord]] | None = None,
    ) -> None:
        self.loop = loop
        #: Spawns as a client's spawn does (every service may check the request first).
        self.spawn = spawn or lifecycle.spawn
        self.table = table
        self.lifecycle = lifecycle
        self.decide = decide
        self.settings = settings
        self.by_name: dict[str, PoolRecord] = {}
        #: The daemon's own asyncio client, set when the scheduler starts.
        self.kernel: Any = None
        self._codec = Codec()
        self._tasks: set[asyncio.Task] = set()

    def describe(self) -> list[dict]:
        return [p.describe(self.table) for p in self.by_name.values()]

    def membership(self) -> dict[str, str]:
        """Pool name by member actor id."""
        return {member: pool.name for pool in self.by_name.values() for member in pool.members}

    async def h_create(self, req: Any, request: Any) -> dict:
        return await self.create(request)

    async def create(self, request: Any, dispatcher_id: str | None = None) -> dict:
        """Start a pool; ``dispatcher_id``: the id its dispatcher had before the daemon restarted
        (recovery), so the clients' ``Pool`` handles reach it again."""
        if not isinstance(request, dict) or not isinstance(request.get("member"), dict):
            raise ProtocolError("pool_create takes one map with the member spawn request")
        try:
            check_pool_request(request)  # the member request is checked like a spawn
        except (TypeError, ValueError, ActorImportError) as exc:
            raise ProtocolError(f"invalid pool request: {exc}") from None
        name = request.get("name") or f"pool-{self.table.new_id()[1:7]}"
        if name in self.by_name:
            raise LlmosError(f"a pool named {name!r} exists")
        window = int(request.get("window", 2))
        args, _ = self._codec.pack([[window], {}], inline=True)
        spec: dict[str, Any] = {"cls": DISPATCHER_CLASS, "args": args, "name": name, "path": []}
        dispatcher = await (self.spawn(spec, actor_id=dispatcher_id) if dispatcher_id else self.spawn(spec))
        pool = PoolRecord(
            name,
            dispatcher,
            dict(request["member"]),
            int(request.get("min", 1)),
            int(request.get("max", 1)),
            list(request.get("tags") or []),
        )
        self.by_name[name] = pool
        try:
            for _ in range(int(request.get("size", 1))):
                await self._grow(pool, "initial size")
        except BaseException:
            await self._stop_pool(pool)
            raise
        pool.ready = True
        return {**pool.describe(self.table), "dispatcher": dispatcher.address()}

    async def _grow(self, pool: PoolRecord, reason: str) -> None:
        pool.serial += 1
        member_request = {**pool.member_request, "name": f"{pool.name}.{pool.serial}"}
        record = await self.spawn(member_request)
        pool.members.append(record.id)
        pool.last_change = time.monotonic()
        await self._tell_dispatcher(pool, "add_member", self._ref_of(record), pool.tags)
        self.decide("grow", pool.name, reason, member=record.label, size=len(pool.members))

    def _ref_of(self, record: ActorRecord) -> Any:
        from ..refs import ActorRef

        return ActorRef(record.actor_address(), None)

    async def _tell_dispatcher(self, pool: PoolRecord, method: str, *args: Any) -> Any:
        record = pool.dispatcher
        ref = self.kernel.ref(record.actor_address())
        return await ref.options(timeout=10.0).call(method, *args)

    async def _forget_member(self, pool: PoolRecord, actor_id: str) -> None:
        try:
            await self._tell_dispatcher(pool, "remove_member", actor_id)
        except LlmosError:
            pass

    async def size(self) -> None:
        """One round of sizing: replace the dead, grow on backlog, shrink the idle."""
        now = time.monotonic()
        table = self.table
        for pool in list(self.by_name.values()):
            if pool.dispatcher.state == EXITED or not pool.ready:
                continue
            gone = [m for m in pool.members if m not in table.by_id or not table.by_id[m].live]
            for actor_id in gone:
                pool.members.remove(actor_id)
                try:
                    await self._tell_dispatcher(pool, "remove_member", actor_id)
                except LlmosError:
                    pass
            if len(pool.members) < pool.min:
                await self._grow(pool, f"a member exited: back to min={pool.min}")
                continue
            try:
                load = await self._tell_dispatcher(pool, "load")
            except (LlmosError, asyncio.TimeoutError):
                continue
            if load["queued"] and load["oldest_wait"] >= self.settings["grow_after"]:
                if len(pool.members) < pool.max:
                    await self._grow(pool, f"{load['queued']} calls waited {load['oldest_wait']:.1f} s for a member")
                continue
            if len(pool.members) > pool.min and now - pool.last_change >= self.settings["idle_after"]:
                idle = [(info["idle"], mid) for mid, info in load["members"].items() if info["idle"] > 0]
                if idle:
                    idle_for, victim = max(idle)
                    if idle_for >= self.settings["idle_after"] and victim in pool.members:
                        await self._shrink(pool, victim, f"member idle {idle_for:.0f} s")

    async def _shrink(self, pool: PoolRecord, actor_id: str, reason: str) -> None:
        await self._tell_dispatcher(pool, "remove_member", actor_id)
        pool.members.remove(actor_id)
        pool.last_change = time.monotonic()
        record = self.table.by_id.get(actor_id)
        label = record.label if record else actor_id
        self.decide("shrink", pool.name, reason, member=label, size=len(pool.members))
        if record is not None:
            await self.lifecycle.kill(record)

    async def h_stop(self, req: Any, name: Any, drain: Any = True) -> dict:
        pool = self.by_name.get(name) if isinstance(name, str) else None
        if pool is None:
            raise LlmosError(f"no pool named {name!r}")
        if type(drain) is not bool:
            raise LlmosError(f"drain must be true or false, not {drain!r}")
        await self._stop_pool(pool, drain=drain)
        return {"name": pool.name, "stopped": True}

    async def _stop_pool(self, pool: PoolRecord, *, drain: bool = True) -> None:
        """The dispatcher first (no new work goes out), then the members together."""
        self.by_name.pop(pool.name, None)

        async def stop(actor_id: str) -> None:
            record = self.table.by_id.get(actor_id)
            if record is not None and record.live:
                await self.lifecycle.kill(record, drain=drain)

        await stop(pool.dispatcher.id)
        await asyncio.gather(*(stop(actor_id) for actor_id in list(pool.members)))

    def on_actor_exit(self, record: ActorRecord) -> None:
        if record.state == RESTARTING:
            return  # it comes back as itself (same id): the pool keeps it
        for pool in list(self.by_name.values()):
            if record.id in pool.members and pool.dispatcher.live:
                # Tell the dispatcher at once, not at the next tick: no call should go to the dead.
                pool.members.remove(record.id)
                task = self.loop.create_task(self._forget_member(pool, record.id))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if pool.dispatcher is record and record.stop_reason:
                # The pool's dispatcher was stopped: its members go with it.
                task = self.loop.create_task(self._stop_pool(pool))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
