"""Monitors and links as an actor sees them: deaths of other actors become calls of its hooks.

A mixin of ``ActorRuntime``. ``actor_monitor`` asks the daemon for ``down`` notices;
a linked actor's exit arrives as ``linked_exit``. Either goes into the mailbox as a call of
``on_monitor_down`` / ``on_exit`` with a ``DownNotice``, so the hook runs like any other work.
"""

from __future__ import annotations

from typing import Any

from .._rpc.core import ClientCore
from .executor import ActorExecutor
from .methods import ASYNC, SYNC, classify


class ActorLinks:
    """``monitor``/``demonitor`` and the delivery of death notices to the actor's hooks."""

    core: ClientCore
    executor: ActorExecutor | None
    instance: Any
    _monitors: dict[int, str]

    def monitor(self, target: Any) -> int:
        """``Actor.actor_monitor``: deaths of ``target`` become ``on_monitor_down`` calls."""
        from ..supervision import target_id

        name = target_id(target)
        ref = self.core.next_id()
        self._monitors[ref] = name
        self.core.monitor_handlers[ref] = lambda body: self._deliver_hook("on_monitor_down", body)
        self.core.tell_daemon("monitor", name, ref)
        return ref

    def demonitor(self, ref: int) -> None:
        name = self._monitors.pop(ref, None)
        if self.core.monitor_handlers.pop(ref, None) is not None and name is not None:
            self.core.tell_daemon("demonitor", name, ref)

    def _deliver_hook(self, hook: str, body: dict) -> None:
        """A notice for the actor itself: into the mailbox, as a call to ``hook(DownNotice)``."""
        from ..supervision import DownNotice

        fn = getattr(self.instance, hook, None)
        if not callable(fn) or self.executor is None:
            return
        notice = DownNotice.from_wire(body)
        if classify(fn) == ASYNC:

            async def call_async(topic: str, item: Any) -> None:
                await fn(item)

            self.executor.deliver_topic(call_async, ASYNC, f"sys.{hook}", [notice])
        else:
            self.executor.deliver_topic(lambda topic, item: fn(item), SYNC, f"sys.{hook}", [notice])
