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
    """

    id: str
    name: str
    endpoint: str
    overflow: str = "block"

    def to_wire(self) -> list:
        return [self.id, self.name, self.endpoint, self.overflow]

    @classmethod
    def from_wire(cls, payload: Any) -> ActorAddress:
        if not isinstance(payload, (list, tuple)) or len(payload) != 4 or not all(isinstance(p, str) for p in payload):
            raise ProtocolError(f"malformed actor address: {payload!r:.200}")
        return cls(*payload)

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "endpoint": self.endpoint, "overflow": self.overflow}
