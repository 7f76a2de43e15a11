"""The actor that serves a pool: its shared queue, and dispatch by tags and load.

The daemon's scheduler spawns one per ``kernel.pool(...)`` and adds or removes
its members (see ``pools`` for the handles users hold).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from .actor import Actor
from .errors import ActorDiedError, LlmosError
from .pools import DEFAULT_WINDOW


@dataclass
class _Member:
    ref: Any
    tags: frozenset[str]
    in_flight: int = 0
    done: int = 0
    idle_since: float = dataclasses.field(default_factory=time.monotonic)


@dataclass
class _Work:
    method: str
    args: list
    kwargs: dict
    tags: frozenset[str]
    future: asyncio.Future
    queued_at: float


class PoolDispatcher(Actor):
    """The pool's shared queue and dispatcher (an actor the daemon starts for each pool)."""

    max_async = 100_000  # every queued call is a waiting coroutine

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        self.window = window
        self.members: dict[str, _Member] = {}
        self.queue: deque[_Work] = deque()
        self.dispatched = 0
        self.failed = 0
        self._running: set[asyncio.Future] = set()

    # -- membership (from the daemon) ---------------------------------------------------
    def add_member(self, ref: Any, tags: list[str]) -> int:
        kernel = self.actor_kernel_async
        self.members[ref.id] = _Member(kernel.ref(ref.address), frozenset(tags))
        self._dispatch()
        return len(self.members)

    def remove_member(self, actor_id: str) -> int:
        self.members.pop(actor_id, None)
        return len(self.members)

    def load(self) -> dict:
        """What the scheduler looks at: backlog, in-flight, idle members."""
        now = time.monotonic()
        return {
            "queued": len(self.queue),
            "oldest_wait": (now - self.queue[0].queued_at) if self.queue else 0.0,
            "members": {
                mid: {
                    "in_flight": m.in_flight,
                    "done": m.done,
                    "tags": sorted(m.tags),
                    "idle": (now - m.idle_since) if not m.in_flight else 0.0,
                }
                for mid, m in self.members.items()
            },
            "dispatched": self.dispatched,
            "failed": self.failed,
        }

    # -- work ---------------------------------------------------------------------------
    async def submit(self, method: str, args: list, kwargs: dict, tags: list[str] | None = None) -> Any:
        """Run ``method(*args, **kwargs)`` on a member with ``tags``; the caller gets its result."""
        wanted = frozenset(tags or ())
        if self.members and not any(wanted <= m.tags for m in self.members.values()):
            raise LlmosError(f"no pool member has the tags {sorted(wanted)}")
        fut = asyncio.get_running_loop().create_future()
        self.queue.append(_Work(method, list(args), dict(kwargs), wanted, fut, time.monotonic()))
        self._dispatch()
        return await fut

    def _dispatch(self) -> None:
        """Hand queued work to the least loaded matching member with room (queue order kept per tag set)."""
        if not self.queue or not self.members:
            return
        kept: deque[_Work] = deque()
        while self.queue:
            work = self.queue.popleft()
            member = self._pick(work.tags)
            if member is None:
                kept.append(work)
                continue
            member.in_flight += 1
            self.dispatched += 1
            task = asyncio.ensure_future(self._run(member, work))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        self.queue = kept

    def _pick(self, tags: frozenset[str]) -> _Member | None:
        best = None
        for member in self.members.values():
            conn = member.ref._conn
            if conn is not None and conn.dead is not None:
                continue  # down (dead, or restarting): the daemon removes or revives it
            fits = member.in_flight < self.window and tags <= member.tags
            if fits and (best is None or member.in_flight < best.in_flight):
                best = member
        return best

    async def _run(self, member: _Member, work: _Work) -> None:
        try:
            result = await member.ref.call(work.method, *work.args, **work.kwargs)
        except Exception as exc:
            self.failed += 1
            if isinstance(exc, ActorDiedError):
                self.members.pop(member.ref.id, None)
            if not work.future.done():
                work.future.set_exception(exc)
        else:
            member.done += 1
            if not work.future.done():
                work.future.set_result(result)
        finally:
            member.in_flight -= 1
            if not member.in_flight:
                member.idle_since = time.monotonic()
            self._dispatch()
