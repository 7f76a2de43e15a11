"""An actor's topic subscriptions: one SUB socket, read on the actor's loop, into its mailbox."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import zmq

from .._rpc.pubsub import SubscriberSocket
from .executor import ActorExecutor
from .methods import classify

log = logging.getLogger(__name__)

#: Topic messages (batches) read per wake-up before other callbacks get a turn.
READ_LIMIT = 64


def declared_subscriptions(instance: Any) -> list[tuple[str, str]]:
    """``(prefix, method name)`` for every method marked with ``@llmos.subscribe``."""
    found = []
    for name in dir(type(instance)):
        attr = getattr(type(instance), name, None)
        for prefix in getattr(attr, "__llmos_subscribe__", ()):
            found.append((prefix, name))
    return found


class ActorSubscriptions:
    """Routes topic messages to subscribed methods through the executor's mailbox."""

    def __init__(self, runtime: Any, executor: ActorExecutor) -> None:
        self.runtime = runtime
        self.executor = executor
        self.loop = executor.loop
        self.routes: list[tuple[str, Callable[..., Any], str]] = []
        self.sub: SubscriberSocket | None = None

    def _route(self, prefix: str, method: str) -> None:
        fn = getattr(self.executor.instance, method, None)
        if not callable(fn):
            raise AttributeError(f"cannot subscribe {method!r}: the actor has no such method")
        self.routes.append((prefix, fn, classify(fn)))

    def _socket(self) -> SubscriberSocket:
        if self.sub is None:
            rt = self.runtime
            self.sub = SubscriberSocket(rt.ctx, rt.config, rt.server.codec, f"actor:{rt.actor_id}")
        return self.sub

    async def start(self, declared: list[tuple[str, str]], timeout: float = 10.0) -> None:
        """Register the declared subscriptions and wait until the daemon confirms them."""
        if not declared:
            return
        for prefix, method in declared:
            self._route(prefix, method)
        sub = self._socket()
        msg_id = sub.request("subscribe", sorted({p for p, _ in declared}))
        ready = asyncio.Event()
        self.loop.add_reader(sub.fd, ready.set)
        deadline = self.loop.time() + timeout
        try:
            while True:
                sub.read_available()
                if sub.acked(msg_id):
                    break
                left = deadline - self.loop.time()
                if left <= 0:
                    raise TimeoutError(f"the daemon did not confirm topic subscriptions within {timeout} s")
                ready.clear()
                if not int(sub.sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:  # type: ignore[arg-type]
                    try:
                        await asyncio.wait_for(ready.wait(), left)
                    except asyncio.TimeoutError:
                        pass
        finally:
            self.loop.remove_reader(sub.fd)
        self._arm()

    def add(self, prefix: str, method: str) -> None:
        """Subscribe at run time (``Actor.actor_subscribe``); blocks until the daemon confirms."""
        self._route(prefix, method)
        fresh = self.sub is None
        sub = self._socket()
        sub.subscribe([prefix])
        if fresh:
            self._arm()
        else:
            self._flush_buffer()
            self._on_readable()

    def _arm(self) -> None:
        assert self.sub is not None
        self.loop.add_reader(self.sub.fd, self._on_readable)
        self._flush_buffer()
        self.loop.call_soon(self._on_readable)

    def _flush_buffer(self) -> None:
        """Deliveries read while waiting for a confirmation."""
        sub = self.sub
        if sub is not None and sub.buffer:
            for topic, payload in list(sub.buffer):
                self._deliver(topic, [payload])
            sub.buffer.clear()

    def _on_readable(self) -> None:
        sub = self.sub
        if sub is None:
            return
        executor = self.executor
        if executor.topic_queued >= executor.topic_backlog:
            # Full: leave the rest in the socket (the daemon drops, and counts, what does not fit)
            # rather than decode messages only to drop them here. The executor calls back when
            # it has worked the backlog down.
            executor.on_topic_room = self._on_readable
            return
        recv = sub.sock.recv_multipart
        for _ in range(READ_LIMIT):
            if executor.topic_queued >= executor.topic_backlog:
                executor.on_topic_room = self._on_readable
                break
            try:
                frames = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            except zmq.ZMQError:
                return  # closed
            message = sub.accept(frames)
            if message is not None:
                self._deliver(*message)
        else:
            self.loop.call_soon(self._on_readable)
        stats = self.executor.stats
        if sub.malformed:
            stats["malformed"] = stats.get("malformed", 0) + sub.malformed
            sub.malformed = 0

    def _deliver(self, topic: str, payloads: list) -> None:
        for prefix, fn, kind in self.routes:
            if topic.startswith(prefix):
                self.executor.deliver_topic(fn, kind, topic, payloads)

    def close(self) -> None:
        if self.sub is not None:
            try:
                self.loop.remove_reader(self.sub.fd)
            except (ValueError, zmq.ZMQError):
                pass
            self.sub.close()
            self.sub = None
