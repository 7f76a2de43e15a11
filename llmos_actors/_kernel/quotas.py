"""Per-identity quotas: bounds on what one requester can make the daemon hold.

Defaults are far above what a normal workload uses; they stop a runaway or hostile
client from exhausting the daemon. Each refusal is a ``LimitExceeded`` naming the limit
(``[limits]`` key) and its value. Admins are bound too: a bug in an admin's program is
as able to exhaust the daemon as anyone's.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..errors import ConfigError, LimitExceeded


@dataclass(frozen=True)
class Limits:
    """The ``[limits]`` config section (see ``daemon/llmosd.toml``)."""

    #: Live actors one identity may have spawned.
    actors: int = 4096
    #: Prefixes one subscriber socket may hold, and subscriber sockets in all.
    subscriptions: int = 1024
    subscribers: int = 4096
    #: Waits one connection may have queued on sync objects (their number is ``[sync] max_objects``).
    waiters: int = 10_000
    #: Objects and bytes one process may keep in the store.
    stored_objects: int = 100_000
    stored_bytes: int = 1 << 40
    #: Replies queued to one client that does not read them, before it is cut off (messages).
    send_queue: int = 10_000
    #: Largest message any daemon socket accepts (bytes; larger ones are dropped by libzmq unread).
    max_frame_bytes: int = 0  # 0: max_message_bytes + 1 MiB

    @classmethod
    def from_config(cls, section: Any) -> Limits:
        """Raises: ConfigError: an unknown key or a value that is not a positive int."""
        section = dict(section or {})
        names = {f.name for f in fields(cls)}
        unknown = set(section) - names
        if unknown:
            raise ConfigError(f"[limits]: unknown keys {', '.join(sorted(unknown))}; known: {', '.join(sorted(names))}")
        for key, value in section.items():
            if type(value) is not int or value < (0 if key == "max_frame_bytes" else 1):
                raise ConfigError(f"[limits] {key} must be a positive int, not {value!r}")
        return cls(**section)


class Quotas:
    """Checks the per-identity limits that need counting across the daemon."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.refused: dict[str, int] = {}

    def refuse(self, limit: str, what: str) -> LimitExceeded:
        self.refused[limit] = self.refused.get(limit, 0) + 1
        value = getattr(self.limits, limit)
        return LimitExceeded(f"{what}: limit [limits] {limit} = {value} reached")

    def check_actors(self, who: Any, table: Any) -> None:
        """Raises: LimitExceeded: ``who`` already has ``actors`` live actors."""
        name = who.name
        live = sum(1 for r in table.live() if r.owner == name)
        if live >= self.limits.actors:
            raise self.refuse("actors", f"spawn refused for {name}: {live} live actors")

    def status(self) -> dict:
        return {"refused": dict(self.refused)}
