"""Actor snapshots from a client: ``kernel.snapshot(ref)`` asks the actor for its ``on_snapshot()`` value.

The daemon stores it (atomically, the previous one kept until the new one is on disk) and
hands it to ``on_restore(value)`` whenever the actor starts again: after a crash and
restart by its supervisor, or after the daemon itself restarted.
"""

from __future__ import annotations

from typing import Any

from ._ops import Surface, operation
from .supervision import target_id

#: Seconds a snapshot request waits on top of the actor's own time (the daemon enforces its limit).
_SLACK = 5.0


class SnapshotOps(Surface):
    """Kernel methods: actor snapshots."""

    @operation
    def snapshot(self, ref_or_name: Any, *, timeout: float = 30.0) -> Any:
        """Take ``ref_or_name``'s snapshot now; returns ``{actor, name, file, size, taken}``.

        Raises:
            SnapshotError: the actor is not running, defines no ``on_snapshot``, or it raised.
        """
        return (yield self._daemon("snapshot", target_id(ref_or_name), timeout, timeout=timeout + _SLACK))
