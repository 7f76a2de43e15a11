"""``kernel.audit(event)``: actors and agents add their own events to the daemon's audit trail.

The daemon publishes each on the ``sys.audit`` topic and writes it to its log, with the
identity it established for the sender (never one the event claims), e.g.::

    kernel.audit({"action": "tool_call", "tool": "shell", "argv": ["ls"]})

Subscribers see ``{"action": "reported", "by": "uid:1000/pid:4242", "time": ..., "event": {...}}``.
Events are plain data (what msgpack carries), at most 16 KiB packed.
"""

from __future__ import annotations

from typing import Any

from ._ops import Surface, operation

#: The topic audit events go out on.
AUDIT_TOPIC = "sys.audit"


class AuditOps(Surface):
    """``kernel.audit`` (blocking on ``Kernel``, awaited on ``AsyncKernel``)."""

    @operation
    def audit(self, event: dict) -> Any:
        """Publish ``event`` on ``sys.audit`` with this client's identity attached by the daemon.

        Raises:
            ProtocolError: not a map of plain data, or over 16 KiB packed.
        """
        return (yield self._daemon("audit", event))
