"""Actors for the tracing tests: a chain of hops, sync and async, each reporting its spans."""

from __future__ import annotations

import llmos_actors as llmos
from llmos_actors._rpc.tracing import finished_spans


class Hop(llmos.Actor):
    """Calls the next hop (if any) and adds one; a failing hop raises."""

    def __init__(self, next_name: str = "", fail: bool = False) -> None:
        self.next_name = next_name
        self.fail = fail

    def run(self, x: int) -> int:
        if self.fail:
            raise ValueError("this hop fails")
        if self.next_name:
            return self.actor_kernel.lookup(self.next_name).call("run", x) + 1
        return x + 1

    def spans(self) -> list[dict]:
        return finished_spans()


class AsyncHop(Hop):
    async def run(self, x: int) -> int:  # type: ignore[override]
        if self.next_name:
            ref = await self.actor_kernel_async.lookup(self.next_name)
            return await ref.call("run", x) + 1
        return x + 1
