"""Carrying out the supervisor's decisions: stop a group in reverse start order, restart it in order.

A mixin of ``Supervision``: a decision (made synchronously, before the death is announced)
becomes a ``Work`` run as a task, after its backoff delay, under its tree's lock (one lock per
standalone actor), so work on one tree is serialised and trees proceed independently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .lifecycle import Lifecycle
from .proctable import EXITED, RESTARTING, ActorRecord, ProcessTable
from .restart_policy import SupervisorNode

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[Any]]


@dataclass
class Work:
    """One decision's work: stop ``stop`` (in this order), reset ``resets``, start ``start`` (in order)."""

    node: SupervisorNode | None  # whose tree's lock it takes (None: a standalone actor's, by ``key``)
    key: str
    stop: list[ActorRecord]
    start: list[ActorRecord]
    resets: list[SupervisorNode]
    delay: float


class SupervisionWork:
    """The tasks that stop and restart, and the tree walks they use."""

    lifecycle: Lifecycle
    table: ProcessTable
    nodes: dict[str, SupervisorNode]
    loop: asyncio.AbstractEventLoop | None
    sleep: Sleep
    restarts: int
    _locks: dict[str, asyncio.Lock]
    _tasks: set[asyncio.Task]

    def _actors_of(self, ids: list[str]) -> list[ActorRecord]:
        """Actor records under ``ids`` (supervisors expanded), in start order."""
        out: list[ActorRecord] = []
        for child in ids:
            sub = self.nodes.get(child)
            if sub is not None:
                out.extend(self._actors_of(sub.children))
                continue
            record = self.table.by_id.get(child)
            if record is not None:
                out.append(record)
        return out

    def _nodes_under(self, node: SupervisorNode) -> list[SupervisorNode]:
        out = [node]
        for child in node.children:
            sub = self.nodes.get(child)
            if sub is not None:
                out.extend(self._nodes_under(sub))
        return out

    def _lock(self, node: SupervisorNode | None, key: str) -> asyncio.Lock:
        if node is not None:
            return node.root.lock
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _schedule(self, work: Work) -> None:
        task = (self.loop or asyncio.get_running_loop()).create_task(self._run(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, work: Work) -> None:
        """Stop ``work.stop`` (in the order given), then start ``work.start`` in order, after its delay."""
        if work.delay > 0:
            await self.sleep(work.delay)
        async with self._lock(work.node, work.key):
            for record in work.stop:
                if record.state == RESTARTING and record.doomed:  # down already: it stays down
                    self.lifecycle.abandon(record, f"not restarted: {record.doomed}")
                elif record.state not in (EXITED, RESTARTING):
                    try:
                        why = f"because {record.doomed}" if record.doomed else "by its supervisor for a restart"
                        await self.lifecycle.terminate(record, reason=why)
                    except Exception:
                        log.exception("stopping %s for a restart failed", record.label)
            for sub in work.resets:
                for desc in self._nodes_under(sub):
                    if desc.state == "restarting":
                        desc.state = "running"
                        desc.history.clear()
            for record in work.start:
                if record.state != RESTARTING:
                    continue
                try:
                    if await self.lifecycle.restart(record):
                        self.restarts += 1
                except Exception as exc:  # its exit was decided on like any other
                    log.warning("restart of %s failed: %s", record.label, exc)

    async def stop_node(self, node: SupervisorNode, grace: float | None = None) -> dict:
        """Stop every actor under ``node`` in reverse start order, then forget the node and its subtree."""
        async with node.root.lock:
            for desc in self._nodes_under(node):
                desc.state = "stopping"
            stopped = []
            for record in reversed(self._actors_of([node.id])):
                if record.state != EXITED:
                    await self.lifecycle.kill(record, grace=grace)
                    stopped.append(record.id)
            for desc in self._nodes_under(node):
                self.nodes.pop(desc.id, None)
            if node.parent is not None and node.id in node.parent.children:
                node.parent.children.remove(node.id)
        return {"id": node.id, "name": node.name, "stopped": stopped}

    async def shutdown(self, grace: float) -> None:
        """Daemon shutdown: each top-level tree stops in reverse start order (trees in parallel)."""
        roots = [n for n in self.nodes.values() if n.parent is None]
        await asyncio.gather(*(self.stop_node(n, grace) for n in roots), return_exceptions=True)
