"""``kernel.audit(event)``: actors and agents add their own events to the daemon's audit trail.

The daemon publishes each on the ``sys.audit`` topic and writes it to its log, with the
identity it established for the sender (never one the event claims), e.g.::

    kernel.audit({"action": "tool_call", "tool": "shell", "argv": ["ls"]})

Subscribers see ``{"action": "reported", "by": "uid:1000/pid:4242", "time": ..., "event": {...}}``.
Events are plain data (what msgpack carries), at most 16 KiB packed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

#: The topic audit events go out on.
AUDIT_TOPIC = "sys.audit"


class AuditMixin:
    """``kernel.audit`` for the synchronous ``Kernel``."""

    if TYPE_CHECKING:

        def _control(self, method: str, *args: Any, **kwargs: Any) -> Any: ...

    def audit(self, event: dict) -> None:
        """Publish ``event`` on ``sys.audit`` with this client's identity attached by the daemon.

        Raises:
            ProtocolError: not a map of plain data, or over 16 KiB packed.
        """
        self._control("audit", event)


class AsyncAuditMixin:
    """``await kernel.audit(event)`` for ``AsyncKernel``."""

    if TYPE_CHECKING:

        def _control(self, method: str, *args: Any, **kwargs: Any) -> Any: ...

    async def audit(self, event: dict) -> None:
        """The same as ``Kernel.audit``."""
        await self._control("audit", event)
