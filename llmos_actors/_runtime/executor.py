"""Running requests against the actor instance: which methods are callable, and how.

Plain methods run on the actor's main thread, one at a time, in arrival order;
``async def`` methods run as tasks on the actor's loop; a plain method that
returns an awaitable replies when it resolves (reply later).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._rpc.invoke import Invoker
from .._rpc.server import Request, RpcServer
from ..actor import RESERVED_NAMES


def public_method_resolver(instance: Any) -> Callable[[str], Callable[..., Any] | None]:
    """Map a method name to the bound method, if it may be called remotely (cached)."""
    cache: dict[str, Callable[..., Any] | None] = {}

    def resolve(name: str) -> Callable[..., Any] | None:
        try:
            return cache[name]
        except KeyError:
            pass
        fn = None
        if name and not name.startswith("_") and not name.startswith("actor_") and name not in RESERVED_NAMES:
            attr = getattr(instance, name, None)
            if callable(attr) and not isinstance(getattr(type(instance), name, None), property):
                fn = attr
        if len(cache) < 4096:  # bounded: unknown names are cached too
            cache[name] = fn
        return fn

    return resolve


class ActorExecutor(Invoker):
    """The actor's dispatcher: resolves public methods and runs them.

    Attributes:
        calls: requests started; ``stats`` holds done/failed/expired counts.
    """

    def __init__(self, server: RpcServer, instance: Any, label: str) -> None:
        super().__init__(server, public_method_resolver(instance), label=label)
        self.instance = instance
        self.calls = 0

    def __call__(self, req: Request) -> None:
        self.calls += 1
        self.run(req)

    def snapshot(self) -> dict:
        """Counters for heartbeats (``llmos ps``)."""
        stats = self.stats
        return {
            "calls": self.calls,
            "done": stats.get("done", 0),
            "failed": stats.get("failed", 0),
            "expired": stats.get("expired", 0),
            "malformed": stats.get("malformed", 0),
            "active": len(self.tasks),
            "queued": 0,
        }
