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
- **pools**: actor pools grow, shrink and replace members that died (``actor_pools``).

Every decision is kept with its reason: ``llmos status`` (recent ones),
``llmos ps`` (the last one per actor) and the ``sys.sched.decision`` topic.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import psutil
import zmq

from .._rpc.core import ClientCore
from .._rpc.driver import LoopDriver
from ..client import AsyncKernel
from ..config import Config
from ..errors import ConfigError
from .actor_pools import ActorPools
from .lifecycle import Lifecycle
from .proctable import RUNNING, ActorRecord, ProcessTable
from .resources import Inventory, nice_for
from .service import Service

log = logging.getLogger(__name__)

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


class Decisions:
    """Every scheduling decision with its reason: kept for ``llmos status``/``ps`` and published."""

    def __init__(self, publish: Callable[[str, dict], None]) -> None:
        self.publish = publish
        self.recent: deque[dict] = deque(maxlen=200)
        self.last_by_actor: dict[str, str] = {}
        self.counts: dict[str, int] = {}  # by action, for the metrics

    def __call__(self, action: str, target: str, reason: str, **detail: Any) -> None:
        entry = {"time": time.time(), "action": action, "target": target, "reason": reason, **detail}
        self.recent.append(entry)
        self.counts[action] = self.counts.get(action, 0) + 1
        self.last_by_actor[target] = f"{action}: {reason}"
        log.info("scheduler: %s %s: %s", action, target, reason)
        self.publish("sys.sched.decision", entry)


class Scheduler(Service):
    """Adaptive placement, nice values under load, and pool sizing (see the module docstring)."""

    name = "scheduler"

    def __init__(
        self,
        config: Config,
        loop: asyncio.AbstractEventLoop,
        ctx: zmq.Context,
        table: ProcessTable,
        inventory: Inventory,
        lifecycle: Lifecycle,
        publish: Callable[[str, dict], None],
        spawn: Callable[[dict], Awaitable[ActorRecord]] | None = None,
    ) -> None:
        self.config = config
        self.loop = loop
        self.ctx = ctx
        self.table = table
        self.inventory = inventory
        self.settings = scheduler_settings(dict(config.extra))
        self.decide = Decisions(publish)
        self.pools = ActorPools(loop, table, lifecycle, self.decide, self.settings, spawn)
        self.reniced: dict[str, int] = {}  # actor id -> nice it had before we raised it
        self.loaded = False
        self._procs: dict[int, psutil.Process] = {}
        self._task: asyncio.Task | None = None
        self._core: ClientCore | None = None
        self.samples = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        # The daemon's own client (to talk to pool dispatchers), on its loop and context.
        self._core = ClientCore(self.config, LoopDriver(self.loop), lambda a: kernel.ref(a), ctx=self.ctx)
        kernel = AsyncKernel(self.config, core=self._core)
        self.pools.kernel = kernel
        psutil.cpu_percent(percpu=True)  # prime: the next call measures since now
        self._task = self.loop.create_task(self._run())

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
        return {"pool_create": self.pools.h_create, "pool_stop": self.pools.h_stop}

    # ------------------------------------------------------------------ the loop
    async def _run(self) -> None:
        interval = self.settings["interval"]
        while True:
            await asyncio.sleep(interval)  # the sampling period itself
            try:
                self.tick()
                await self.pools.size()
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
        for record in self.table.live():
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
        cores = self.inventory.cores
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
        table = self.table
        threshold = self.settings["busy_actor"]
        on_core: dict[int, list[tuple[float, ActorRecord]]] = {}
        for actor_id, u in usage.items():
            record = table.by_id.get(actor_id)
            if record is not None and u["cpu"] >= threshold:
                on_core.setdefault(u["core"], []).append((u["cpu"], record))
        cores = self.inventory.cores
        reserved = self.inventory.reserved_cores()
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
            placement = self.inventory.placements.get(record.id)
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
        table = self.table
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

    def on_actor_exit(self, record: ActorRecord) -> None:
        self.reniced.pop(record.id, None)
        self.pools.on_actor_exit(record)

    # ------------------------------------------------------------------ reporting
    def status(self) -> dict:
        return {
            "loaded": self.loaded,
            "samples": self.samples,
            "pools": self.pools.describe(),
            "decisions": list(self.decide.recent)[-20:],
            "settings": {k: self.settings[k] for k in ("interval", "rebalance", "renice", "grow_after", "idle_after")},
        }

    def annotate(self, rows: list[dict]) -> None:
        """Add the last decision about each actor to ``ps`` rows."""
        by_name = self.pools.membership()
        for row in rows:
            note = self.decide.last_by_actor.get(row["name"] or row["id"])
            if note:
                row["sched"] = note
            if row["id"] in by_name:
                row["pool"] = by_name[row["id"]]
