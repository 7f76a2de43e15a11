"""Actors for the tracing tests: a chain of hops, sync and async, each reporting its spans."""

from __future__ import annotations

from typing import Any

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


class FastHop(llmos.Actor):
    """Calls the next hop with ``ask(...).result()`` and tells a sink, on warm refs with no options:
    the synchronous client's fast paths (``warm`` opens the connections first)."""

    def __init__(self, next_name: str = "", sink_name: str = "") -> None:
        self.names = (next_name, sink_name)
        self.next: Any = None
        self.sink: Any = None

    def warm(self) -> None:
        next_name, sink_name = self.names
        if next_name:
            self.next = self.actor_kernel.lookup(next_name)
            self.next.call("warm")
        if sink_name:
            self.sink = self.actor_kernel.lookup(sink_name)
            self.sink.call("warm")

    def run(self, x: int) -> int:
        for ref in (self.next, self.sink):
            if ref is not None and ref._conn is None:  # the fast paths need an open connection
                raise RuntimeError("call warm() first")
        if self.sink is not None:
            self.sink.tell("note", x)
        if self.next is not None:
            return self.next.ask("run", x).result() + 1
        return x + 1

    def note(self, x: int) -> None:
        self.noted = x

    def spans(self) -> list[dict]:
        return finished_spans()
