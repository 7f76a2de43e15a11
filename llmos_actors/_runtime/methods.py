"""What an actor's methods are, as the executor sees them: which are public, and how each runs."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from .._wire import protocol as P
from ..actor import RESERVED_NAMES

log = logging.getLogger(__name__)

SYNC, ASYNC, GEN, AGEN = "sync", "async", "gen", "agen"

#: Topic messages per mailbox entry: a topic batch (up to 1,024) is queued in pieces, so
#: urgent calls get a look-in between them, as between calls.
TOPIC_CHUNK = P.BATCH_MAX_ITEMS


def classify(fn: Callable[..., Any]) -> str:
    target = getattr(fn, "__func__", fn)
    if inspect.iscoroutinefunction(target):
        return ASYNC
    if inspect.isasyncgenfunction(target):
        return AGEN
    if inspect.isgeneratorfunction(target):
        return GEN
    return SYNC


def public_method_resolver(instance: Any) -> Callable[[str], tuple[Callable[..., Any], str] | None]:
    """Map a method name to ``(bound method, kind)`` if it may be called remotely (cached)."""
    cache: dict[str, tuple[Callable[..., Any], str] | None] = {}

    def resolve(name: str) -> tuple[Callable[..., Any], str] | None:
        try:
            return cache[name]
        except KeyError:
            pass
        found = None
        if name and not name.startswith("_") and not name.startswith("actor_") and name not in RESERVED_NAMES:
            attr = getattr(instance, name, None)
            if callable(attr) and not isinstance(getattr(type(instance), name, None), property):
                found = (attr, classify(attr))
        if len(cache) < 4096:  # bounded: unknown names are cached too
            cache[name] = found
        return found

    return resolve


class TopicDelivery:
    """A mailbox entry: messages published on a topic, for one subscribed method."""

    __slots__ = ("fn", "items", "kind", "prio", "topic")

    def __init__(self, fn: Callable[..., Any], kind: str, topic: str, items: list, prio: int | None = None) -> None:
        self.fn = fn
        self.kind = kind
        self.topic = topic
        self.items = items
        self.prio = prio

    @classmethod
    def pieces(cls, fn: Callable[..., Any], kind: str, topic: str, items: list) -> list[TopicDelivery]:
        """One delivery per ``TOPIC_CHUNK`` messages."""
        if len(items) <= TOPIC_CHUNK:
            return [cls(fn, kind, topic, items)]
        return [cls(fn, kind, topic, items[i : i + TOPIC_CHUNK]) for i in range(0, len(items), TOPIC_CHUNK)]

    def run(self) -> None:
        fn, topic = self.fn, self.topic
        for item in self.items:
            try:
                fn(topic, item)
            except Exception:
                log.exception("topic handler %s failed on %r", getattr(fn, "__name__", fn), topic)

    async def run_async(self) -> None:
        fn, topic = self.fn, self.topic
        for item in self.items:
            try:
                await fn(topic, item)
            except Exception:
                log.exception("topic handler %s failed on %r", getattr(fn, "__name__", fn), topic)
