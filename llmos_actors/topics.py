"""Pub/sub topics: ``kernel.publish(topic, msg)``, ``kernel.subscribe(prefix)``, ``@llmos.subscribe``.

Delivery is at-most-once to slow subscribers: a subscriber that falls behind
misses messages rather than slowing publishers or the daemon, and the daemon
counts what it missed (``Subscription.dropped``; ``topic_drops`` in ``llmos ps``
for actors; per subscriber in ``llmos status``).
Messages from one publisher to one topic arrive in order. Topics are strings of
up to 1024 bytes; subscriptions match by prefix; ``sys.`` topics carry the
daemon's own events (``sys.actor.started``, ``sys.actor.exited``, ...).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import zmq

from ._ops import Awaiting, Blocking, Step, Surface, operation
from ._rpc.pubsub import SubscriberSocket
from ._wire.topics import check_topic
from .errors import CallTimeout, ClosedError

if TYPE_CHECKING:
    from ._rpc.core import ClientCore

F = TypeVar("F", bound=Callable[..., Any])

#: Seconds a blocked ``Subscription.get`` holds the socket before checking for close.
_POLL_SLICE = 0.1


def subscribe(*prefixes: str) -> Callable[[F], F]:
    """Mark an actor method to receive messages published on topics starting with ``prefixes``.

    The method is called as ``method(topic, msg)`` through the actor's mailbox (it
    may be ``async def``). The actor's subscriptions are live before ``spawn`` returns.

        class Watcher(llmos.Actor):
            @llmos.subscribe("sensors.")
            def on_reading(self, topic, msg): ...
    """
    for prefix in prefixes:
        check_topic(prefix, publishing=False)

    def mark(fn: F) -> F:
        existing = getattr(fn, "__llmos_subscribe__", ())
        fn.__llmos_subscribe__ = (*existing, *prefixes)  # type: ignore[attr-defined]
        return fn

    return mark


class _SubscriptionBase(Surface):
    """What both flavours of subscription share: the subscriber socket and its drop count."""

    def __init__(self, core: ClientCore, prefix: str) -> None:
        self.prefix = prefix
        self._core = core
        self._sub = SubscriberSocket(core.ctx, core.config, core.codec, f"client:{os.getpid()}")

    @property
    def dropped(self) -> int:
        """Messages this subscriber missed because it fell behind (counted by the daemon)."""
        return self._sub.dropped


class Subscription(_SubscriptionBase, Blocking):
    """Messages on topics matching a prefix, as an iterator of ``(topic, msg)``.

    Use from one thread at a time; ``close()`` from anywhere. Live when created:
    nothing published afterwards is missed unless this subscriber falls more than
    the daemon's ``topic_queue`` behind, and then ``dropped`` says how many.
    """

    @classmethod
    def open(cls, core: ClientCore, prefix: str) -> Subscription:
        """Subscribe (the daemon has confirmed when this returns)."""
        return cls(core, prefix)

    def __init__(self, core: ClientCore, prefix: str) -> None:
        super().__init__(core, prefix)
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._sub.subscribe([prefix])
        except BaseException:
            self._sub.close()
            raise
        core.closables.add(self)

    def get(self, timeout: float | None = None) -> tuple[str, Any]:
        """The next ``(topic, msg)``.

        Raises:
            CallTimeout: nothing arrived within ``timeout`` seconds.
            ClosedError: the subscription (or its kernel) was closed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        sub = self._sub
        while True:
            with self._lock:
                if self._closed:
                    raise ClosedError(f"subscription to {self.prefix!r} is closed")
                if sub.buffer:
                    return sub.buffer.popleft()
                left = _POLL_SLICE if deadline is None else min(_POLL_SLICE, deadline - time.monotonic())
                if left > 0 and sub.sock.poll(max(1, int(left * 1000)), zmq.POLLIN):
                    sub.read_available(64)
                    if sub.buffer:
                        return sub.buffer.popleft()
            if deadline is not None and time.monotonic() >= deadline:
                raise CallTimeout(f"no message on {self.prefix!r} within {timeout} s")

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> tuple[str, Any]:
        try:
            return self.get()
        except ClosedError:
            raise StopIteration from None

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._sub.close()
        self._core.closables.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncSubscription(_SubscriptionBase, Awaiting):
    """The asyncio twin of ``Subscription``: ``async for topic, msg in sub``."""

    @classmethod
    def open(cls, core: ClientCore, prefix: str) -> Any:
        """A coroutine: subscribe, and return the subscription once the daemon has confirmed."""
        return cls(core, prefix)._start()

    def __init__(self, core: ClientCore, prefix: str) -> None:
        super().__init__(core, prefix)
        self._loop = core.driver.loop
        self._ready = asyncio.Event()
        self._closed = False

    async def _start(self, timeout: float = 10.0) -> AsyncSubscription:
        self._loop.add_reader(self._sub.fd, self._ready.set)
        msg_id = self._sub.request("subscribe", [self.prefix])
        deadline = time.monotonic() + timeout
        try:
            while not self._sub.acked(msg_id):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CallTimeout(f"the daemon did not confirm the subscription to {self.prefix!r}")
                self._sub.read_available()
                if not self._sub.acked(msg_id):
                    await self._wait(left)
                else:
                    break
        except BaseException:
            self.close()
            raise
        self._core.closables.add(self)
        return self

    async def _wait(self, timeout: float | None) -> None:
        self._ready.clear()
        if int(self._sub.sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:  # type: ignore[arg-type]
            return
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def get(self, timeout: float | None = None) -> tuple[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        sub = self._sub
        while True:
            if self._closed:
                raise ClosedError(f"subscription to {self.prefix!r} is closed")
            if not sub.buffer:
                sub.read_available(64)
            if sub.buffer:
                return sub.buffer.popleft()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise CallTimeout(f"no message on {self.prefix!r} within {timeout} s")
            await self._wait(left)

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def __anext__(self) -> tuple[str, Any]:
        try:
            return await self.get()
        except ClosedError:
            raise StopAsyncIteration from None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready.set()
        try:
            self._loop.remove_reader(self._sub.fd)
        except (ValueError, zmq.ZMQError):
            pass
        self._sub.close()
        self._core.closables.discard(self)

    async def __aenter__(self) -> AsyncSubscription:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()


class TopicOps(Surface):
    """``publish`` and ``subscribe`` on a kernel handle."""

    if TYPE_CHECKING:

        @property
        def _core(self) -> ClientCore: ...

    def publish(self, topic: str, msg: Any) -> None:
        """Publish ``msg`` on ``topic``, batched with its neighbours.

        The blocking kernel waits while the daemon is full; the asyncio kernel never blocks its
        loop: up to 65,536 messages wait in this process, and past that they are dropped and counted.

        Raises:
            ValueError / TypeError: bad topic (empty, > 1024 bytes, ``sys.``) or a payload that cannot travel.
        """
        self._core.publisher().publish(topic, msg, block=bool(self._blocking))

    @operation
    def subscribe(self, prefix: str) -> Any:
        """Subscribe to every topic starting with ``prefix`` (live when this returns)."""
        return (yield Step(self._twin(_SubscriptionBase).open, self._core, prefix))
