"""Actors for the durable-state tests (imported by the daemon by module path)."""

from __future__ import annotations

import os

from llmos_actors import Actor

from gates import Holds, hold


class Keeper(Holds, Actor):
    """Keeps a counter and a list; snapshots both."""

    def __init__(self, start: int = 0) -> None:
        self.n = start
        self.items: list = []
        self.restored_from: object = None
        self.snapshot_gate = ""

    def hold_snapshots(self, gate: str) -> None:
        """From now on each snapshot waits at ``gate`` before it is taken."""
        self.snapshot_gate = gate

    def incr(self, by: int = 1) -> int:
        self.n += by
        return self.n

    def add(self, item: object) -> int:
        self.items.append(item)
        return len(self.items)

    def get(self) -> dict:
        return {"n": self.n, "items": self.items, "restored": self.restored_from is not None, "pid": os.getpid()}

    def on_snapshot(self) -> dict:
        if self.snapshot_gate:
            hold(self.snapshot_gate, 60.0)
        return {"n": self.n, "items": self.items}

    def on_restore(self, value: dict) -> None:
        self.restored_from = value
        self.n = value["n"]
        self.items = list(value["items"])


class TensorKeeper(Actor):
    """Snapshots a tensor."""

    def __init__(self) -> None:
        import torch

        self.t = torch.zeros(4)

    def set(self, values: list) -> None:
        import torch

        self.t = torch.tensor(values, dtype=torch.float32)

    def get(self) -> list:
        return self.t.tolist()

    def on_snapshot(self) -> object:
        return self.t

    def on_restore(self, value: object) -> None:
        self.t = value


class BadSnapshot(Actor):
    """``on_snapshot`` raises; ``on_restore`` too."""

    def __init__(self) -> None:
        self.fail = False

    def ping(self) -> str:
        return "pong"

    def set_fail(self, fail: bool) -> None:
        self.fail = fail

    def on_snapshot(self) -> int:
        if self.fail:
            raise RuntimeError("cannot snapshot now")
        return 1

    def on_restore(self, value: int) -> None:
        raise RuntimeError("cannot restore")


class Plain(Actor):
    def ping(self) -> str:
        return "pong"

    def pid(self) -> int:
        return os.getpid()


class Follower(Actor):
    """Subscribes at run time (``actor_subscribe``), not by decorator."""

    def __init__(self) -> None:
        self.seen: list = []

    def follow(self, prefix: str) -> None:
        self.actor_subscribe(prefix, "on_news")

    def on_news(self, topic: str, msg: object) -> None:
        self.seen.append([topic, msg])

    def seen_list(self) -> list:
        return self.seen
