"""Where an actor lives: the plain data behind every ref."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ProtocolError


@dataclass(frozen=True, slots=True)
class ActorAddress:
    """Identity and endpoint of one actor. Plain data: it travels in messages.

    Attributes:
        id: unique for the life of the daemon; kept across restarts.
        name: the name it was spawned with (may be empty).
        endpoint: the ZeroMQ endpoint of its ROUTER socket.
        overflow: what senders do when its mailbox is full (block, raise, drop).
        tcp: its CurveZMQ endpoint when its daemon listens on TCP (empty otherwise): a ref that
            travels to another node of a cluster is reached there by this one.
    """

    id: str
    name: str
    endpoint: str
    overflow: str = "block"
    tcp: str = ""

    def to_wire(self) -> list:
        base = [self.id, self.name, self.endpoint, self.overflow]
        return [*base, self.tcp] if self.tcp else base

    @classmethod
    def from_wire(cls, payload: Any) -> ActorAddress:
        if (
            not isinstance(payload, (list, tuple))
            or len(payload) not in (4, 5)
            or not all(isinstance(p, str) for p in payload)
        ):
            raise ProtocolError(f"malformed actor address: {payload!r:.200}")
        return cls(*payload)

    @classmethod
    def from_dict(cls, d: dict) -> ActorAddress:
        """From a daemon's address reply (``id``, ``endpoint``; ``name``, ``overflow``, ``tcp`` optional)."""
        return cls(d["id"], d.get("name", ""), d["endpoint"], d.get("overflow", "block"), d.get("tcp") or "")

    def to_dict(self) -> dict[str, str]:
        d = {"id": self.id, "name": self.name, "endpoint": self.endpoint, "overflow": self.overflow}
        if self.tcp:
            d["tcp"] = self.tcp
        return d
