"""The adaptive loop: watch load, move placed actors, renice under load, size pools.

Every ``interval`` seconds the daemon samples each live actor (CPU and RSS from
psutil, mailbox depth from heartbeats) and decides:

- **rebalance**: an actor the daemon placed (``cpus="auto"`` or a count) that is
  busy on a core shared with other busy actors, while another core idles, is
  moved to the idle core. Explicit pins (``cpus=[...]``) are never touched;
  unpinned actors (``cpus=None``) are left to the kernel's own scheduler.
- **renice**: while our actors keep the cores busy, actors below the default priority get
  ``renice_step`` more nice, so higher-priority actors win the CPU; restored when
  the load passes (restoring needs CAP_SYS_NICE or RLIMIT_NICE: noted if refused).
- **pools**: a pool grows by one member while work has waited in its queue for
  ``grow_after`` seconds (up to ``max``), shrinks by one when a member has been
  idle ``idle_after`` seconds (down to ``min``), and replaces members that died.

Every decision is kept with its reason: ``llmos status`` (recent ones),
``llmos ps`` (the last one per actor) and the ``sys.sched.decision`` topic.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import psutil

from .._rpc.core import ClientCore
from .._rpc.driver import LoopDriver
from .._wire.address import ActorAddress
from .._wire.codec import Codec
from ..client import AsyncKernel
from ..errors import ConfigError, LlmosError, ProtocolError
from .proctable import EXITED, RESTARTING, RUNNING, ActorRecord
from .resources import nice_for
from .service import Service

log = logging.getLogger(__name__)

DISPATCHER_CLASS = "llmos_actors.pool_dispatcher:PoolDispatcher"

DEFAULTS: dict[str, Any] = {
    "interval": 1.0,
    "rebalance": True,
    "renice": True,
    "load_threshold": 0.85,  # share of all cores busy that counts as "loaded"
    "busy_actor": 0.30,  # share of one core that makes an actor "busy"
    "idle_core": 0.50,  # a core below this share has room
    "renice_step": 5,
    "grow_after": 0.5,
    "idle_after": 10.0,
    "goal": None,
    "mailbox_policy": "priority",
    "aging": 1.0,
    "flood_share": 0.25,
}


def scheduler_settings(extra: dict) -> dict:
    """The ``[scheduler]`` config section with defaults, validated.

    Raises:
        ConfigError: unknown keys or values of the wrong type.
    """
    given = dict(extra.get("scheduler", {}))
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown [scheduler] keys: {', '.join(sorted(unknown))}")
    out = dict(DEFAULTS)
    for key, value in given.items():
        default = DEFAULTS[key]
        if default is None or isinstance(default, str):
            out[key] = value
            continue
        try:
            out[key] = type(default)(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"[scheduler] {key} must be a {type(default).__name__}") from exc
    if out["interval"] <= 0:
        raise ConfigError("[scheduler] interval must be > 0")
    return out


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


class Scheduler(Service):
    """Adaptive placement, nice values under load, and pool sizing (see the module docstring)."""

    name = "scheduler"

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.settings = scheduler_settings(dict(daemon.config.extra))
        self.decisions: deque[dict] = deque(maxlen=200)
        self.decision_counts: dict[str, int] = {}  # by action, for the metrics
        self.last_by_actor: dict[str, str] = {}
        self.pools: dict[str, PoolRecord] = {}
        self.reniced: dict[str, int] = {}  # actor id -> nice it had before we raised it
        self.loaded = False
        self._procs: dict[int, psutil.Process] = {}
        self._task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._core: ClientCore | None = None
        self.samples = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        d = self.daemon
        # The daemon's own client (to talk to pool dispatchers), on its loop and context.
        self._core = ClientCore(d.config, LoopDriver(d.loop), lambda a: self._kernel.ref(a), ctx=d.ctx)
        self._kernel = AsyncKernel(d.config, core=self._core)
        self._codec = Codec()
        d.lifecycle.exit_hooks.append(self._on_exit)
        psutil.cpu_percent(percpu=True)  # prime: the next call measures since now
        self._task = d.loop.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._core is not None:
            self._core.close()

    def handlers(self) -> dict:
        return {"pool_create": self.pool_create, "pool_stop": self.pool_stop}

    # ------------------------------------------------------------------ decisions
    def decide(self, action: str, target: str, reason: str, **detail: Any) -> None:
        entry = {"time": time.time(), "action": action, "target": target, "reason": reason, **detail}
        self.decisions.append(entry)
        self.decision_counts[action] = self.decision_counts.get(action, 0) + 1
        self.last_by_actor[target] = f"{action}: {reason}"
        log.info("scheduler: %s %s: %s", action, target, reason)
        self.daemon.lifecycle.publish("sys.sched.decision", entry)

    # ------------------------------------------------------------------ the loop
    async def _run(self) -> None:
        interval = self.settings["interval"]
        while True:
            await asyncio.sleep(interval)  # the sampling period itself
            try:
                self.tick()
                await self._size_pools()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler tick failed")

    def _proc(self, pid: int) -> psutil.Process | None:
        proc = self._procs.get(pid)
        if proc is None:
            try:
                proc = self._procs[pid] = psutil.Process(pid)
                proc.cpu_percent(None)
            except psutil.Error:
                return None
        return proc

    def sample(self) -> dict[str, dict]:
        """CPU share (of one core), current core and RSS of each live actor."""
        out: dict[str, dict] = {}
        live_pids = set()
        for record in self.daemon.table.live():
            if record.pid is None or record.state != RUNNING:
                continue
            proc = self._proc(record.pid)
            if proc is None:
                continue
            try:
                with proc.oneshot():
                    out[record.id] = {
                        "cpu": proc.cpu_percent(None) / 100.0,
                        "core": proc.cpu_num(),
                        "rss": proc.memory_info().rss,
                    }
                live_pids.add(record.pid)
            except psutil.Error:
                continue
        for pid in set(self._procs) - live_pids:
            del self._procs[pid]
        self.samples += 1
        return out

    def tick(self) -> None:
        usage = self.sample()
        per_core = psutil.cpu_percent(percpu=True)
        cores = self.daemon.inventory.cores
        # Load = what our actors demand of our cores (what priorities arbitrate between);
        # other programs' load does not make the daemon renice its actors.
        busy = sum(u["cpu"] for u in usage.values()) / max(1, len(cores))
        if self.settings["rebalance"]:
            self._rebalance(usage, per_core)
        if self.settings["renice"]:
            self._renice(busy)

    # ------------------------------------------------------------------ rebalance
    def _movable(self, record: ActorRecord) -> bool:
        cpus = record.request.get("cpus")
        return (cpus == "auto" or isinstance(cpus, int)) and not record.exclusive and record.cpus is not None

    def _rebalance(self, usage: dict[str, dict], per_core: list[float]) -> None:
        table = self.daemon.table
        threshold = self.settings["busy_actor"]
        on_core: dict[int, list[tuple[float, ActorRecord]]] = {}
        for actor_id, u in usage.items():
            record = table.by_id.get(actor_id)
            if record is not None and u["cpu"] >= threshold:
                on_core.setdefault(u["core"], []).append((u["cpu"], record))
        cores = self.daemon.inventory.cores
        reserved = self.daemon.inventory.reserved_cores()
        idle = [
            c
            for c in cores
            if c not in reserved and c < len(per_core) and per_core[c] < self.settings["idle_core"] * 100
        ]
        for core, hot in sorted(on_core.items()):
            if len(hot) < 2:
                continue  # one busy actor per core is what we want
            movable = sorted((cpu, r) for cpu, r in hot if self._movable(r) and len(r.cpus or ()) == 1)
            targets = [c for c in idle if c != core and not on_core.get(c)]
            if not movable or not targets:
                continue
            cpu, record = movable[-1]
            target = min(targets, key=lambda c: per_core[c])
            try:
                os.sched_setaffinity(record.pid, [target])  # type: ignore[arg-type]
            except OSError as exc:
                self.decide("rebalance-failed", record.label, f"could not move from core {core}: {exc.strerror}")
                continue
            record.cpus = [target]
            placement = self.daemon.inventory.placements.get(record.id)
            if placement is not None:
                placement.cpus = [target]
            on_core.setdefault(target, []).append((cpu, record))
            idle.remove(target)
            busy_here = ", ".join(f"{r.label} {c:.0%}" for c, r in hot)
            self.decide(
                "move",
                record.label,
                f"core {core} was shared by busy actors ({busy_here}) while core {target} "
                f"was {per_core[target]:.0f}% busy: moved to core {target}",
                core_from=core,
                core_to=target,
            )

    # ------------------------------------------------------------------ renice
    def _renice(self, busy: float) -> None:
        table = self.daemon.table
        threshold = self.settings["load_threshold"]
        if busy >= threshold and not self.loaded:
            self.loaded = True
        elif busy < threshold - min(0.2, threshold / 2) and self.loaded:
            self.loaded = False
        step = self.settings["renice_step"]
        for record in table.live():
            if record.pid is None or record.state != RUNNING:
                continue
            base = nice_for(record.priority)
            if self.loaded and record.priority < 4 and record.id not in self.reniced:
                target = min(19, base + step)
                if self._set_nice(record, target):
                    self.reniced[record.id] = base
                    self.decide(
                        "renice",
                        record.label,
                        f"machine {busy:.0%} busy: priority {record.priority} actor yields (nice {base} -> {target})",
                        nice=target,
                    )
            elif not self.loaded and record.id in self.reniced:
                before = self.reniced.pop(record.id)
                if self._set_nice(record, before):
                    self.decide(
                        "renice", record.label, f"load fell to {busy:.0%}: nice restored to {before}", nice=before
                    )
                else:
                    self.decide("renice-failed", record.label, "load fell but restoring nice needs CAP_SYS_NICE")

    @staticmethod
    def _set_nice(record: ActorRecord, nice: int) -> bool:
        try:
            os.setpriority(os.PRIO_PROCESS, record.pid, nice)  # type: ignore[arg-type]
        except OSError:
            return False
        record.nice = nice
        return True

    # ------------------------------------------------------------------ pools
    async def pool_create(self, req: Any, request: Any) -> dict:
        if not isinstance(request, dict) or not isinstance(request.get("member"), dict):
            raise ProtocolError("pool_create takes one map with the member spawn request")
        d = self.daemon
        name = request.get("name") or f"pool-{d.table.new_id()[1:7]}"
        if name in self.pools:
            raise LlmosError(f"a pool named {name!r} exists")
        window = int(request.get("window", 2))
        args, _ = self._codec.pack([[window], {}], inline=True)
        dispatcher = await d.lifecycle.spawn({"cls": DISPATCHER_CLASS, "args": args, "name": name, "path": []})
        pool = PoolRecord(
            name,
            dispatcher,
            dict(request["member"]),
            int(request.get("min", 1)),
            int(request.get("max", 1)),
            list(request.get("tags") or []),
        )
        self.pools[name] = pool
        try:
            for _ in range(int(request.get("size", 1))):
                await self._grow(pool, "initial size")
        except BaseException:
            await self._stop_pool(pool)
            raise
        pool.ready = True
        return {**pool.describe(d.table), "dispatcher": dispatcher.address()}

    async def _grow(self, pool: PoolRecord, reason: str) -> None:
        d = self.daemon
        pool.serial += 1
        member_request = {**pool.member_request, "name": f"{pool.name}.{pool.serial}"}
        record = await d.lifecycle.spawn(member_request)
        pool.members.append(record.id)
        pool.last_change = time.monotonic()
        await self._tell_dispatcher(pool, "add_member", self._ref_of(record), pool.tags)
        self.decide("grow", pool.name, reason, member=record.label, size=len(pool.members))

    def _ref_of(self, record: ActorRecord) -> Any:
        from ..refs import ActorRef

        address = ActorAddress(record.id, record.name, record.endpoint, record.overflow)
        return ActorRef(address, None)

    async def _tell_dispatcher(self, pool: PoolRecord, method: str, *args: Any) -> Any:
        record = pool.dispatcher
        ref = self._kernel.ref(ActorAddress(record.id, record.name, record.endpoint, record.overflow))
        return await ref.options(timeout=10.0).call(method, *args)

    async def _forget_member(self, pool: PoolRecord, actor_id: str) -> None:
        try:
            await self._tell_dispatcher(pool, "remove_member", actor_id)
        except LlmosError:
            pass

    async def _size_pools(self) -> None:
        now = time.monotonic()
        table = self.daemon.table
        for pool in list(self.pools.values()):
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
        record = self.daemon.table.by_id.get(actor_id)
        label = record.label if record else actor_id
        self.decide("shrink", pool.name, reason, member=label, size=len(pool.members))
        if record is not None:
            await self.daemon.lifecycle.kill(record)

    async def pool_stop(self, req: Any, name: Any, drain: Any = True) -> dict:
        pool = self.pools.get(name) if isinstance(name, str) else None
        if pool is None:
            raise LlmosError(f"no pool named {name!r}")
        if type(drain) is not bool:
            raise LlmosError(f"drain must be true or false, not {drain!r}")
        await self._stop_pool(pool, drain=drain)
        return {"name": pool.name, "stopped": True}

    async def _stop_pool(self, pool: PoolRecord, *, drain: bool = True) -> None:
        """The dispatcher first (no new work goes out), then the members together."""
        self.pools.pop(pool.name, None)
        d = self.daemon

        async def stop(actor_id: str) -> None:
            record = d.table.by_id.get(actor_id)
            if record is not None and record.live:
                await d.lifecycle.kill(record, drain=drain)

        await stop(pool.dispatcher.id)
        await asyncio.gather(*(stop(actor_id) for actor_id in list(pool.members)))

    def _on_exit(self, record: ActorRecord) -> None:
        self.reniced.pop(record.id, None)
        if record.state == RESTARTING:
            return  # it comes back as itself (same id): the pool keeps it
        for pool in list(self.pools.values()):
            if record.id in pool.members and pool.dispatcher.live:
                # Tell the dispatcher at once, not at the next tick: no call should go to the dead.
                pool.members.remove(record.id)
                task = self.daemon.loop.create_task(self._forget_member(pool, record.id))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if pool.dispatcher is record and record.stop_reason:
                # The pool's dispatcher was stopped: its members go with it.
                task = self.daemon.loop.create_task(self._stop_pool(pool))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ reporting
    def status(self) -> dict:
        return {
            "loaded": self.loaded,
            "samples": self.samples,
            "pools": [p.describe(self.daemon.table) for p in self.pools.values()],
            "decisions": list(self.decisions)[-20:],
            "settings": {k: self.settings[k] for k in ("interval", "rebalance", "renice", "grow_after", "idle_after")},
        }

    def annotate(self, rows: list[dict]) -> None:
        """Add the last decision about each actor to ``ps`` rows."""
        by_name = {}
        for pool in self.pools.values():
            for member in pool.members:
                by_name[member] = pool.name
        for row in rows:
            note = self.last_by_actor.get(row["name"] or row["id"])
            if note:
                row["sched"] = note
            if row["id"] in by_name:
                row["pool"] = by_name[row["id"]]
