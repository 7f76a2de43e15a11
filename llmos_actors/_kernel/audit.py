"""The audit trail: who did what, and what was refused, on ``sys.audit`` and in the daemon's log.

Every spawn and kill names the identity that asked (established by the daemon from
the transport, never from the message); every refused request names the limit or
rule that refused it. Actors and agents add their own events with ``kernel.audit``;
the daemon attaches their identity, so an event cannot claim to come from someone else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import msgpack

from .._auditing import AUDIT_TOPIC
from ..errors import ProtocolError

log = logging.getLogger("llmos_actors.audit")

#: Largest client-supplied audit event, packed (bytes).
MAX_EVENT_BYTES = 16 * 1024
#: Refusals logged per second at most (the topic still gets every one; the log must not flood).
LOG_REFUSALS_PER_SECOND = 50


class Audit:
    """Publishes audit events and logs them (refusals rate-limited in the log, counted always)."""

    name = "audit"

    def __init__(self) -> None:
        #: The event bus's ``publish`` (set when the bus exists; until then events only go to the log).
        self.publish: Callable[[str, dict], None] | None = None
        self.events = 0
        self.refusals = 0
        self.client_events = 0
        self._log_window = 0.0
        self._logged_in_window = 0

    def record(self, action: str, identity: Any, **details: Any) -> None:
        """An action done on behalf of ``identity`` (spawn, kill, ...)."""
        self.events += 1
        event = {"action": action, "by": str(identity), "time": time.time(), **details}
        log.info("audit: %s by %s %s", action, identity, _short(details))
        self._emit(event)

    def refused(self, what: str, identity: Any, reason: str, **details: Any) -> None:
        """A request refused (malformed, over a limit, not permitted)."""
        self.refusals += 1
        event = {"action": "refused", "request": what, "by": str(identity), "reason": reason, "time": time.time()}
        event.update(details)
        now = time.monotonic()
        if now - self._log_window >= 1.0:
            self._log_window, self._logged_in_window = now, 0
        self._logged_in_window += 1
        if self._logged_in_window <= LOG_REFUSALS_PER_SECOND:
            log.warning("audit: refused %s from %s: %s", what, identity, reason)
        self._emit(event)

    def client_event(self, identity: Any, event: Any) -> None:
        """An event a client or actor reports about itself (``kernel.audit``); the identity is ours.

        Raises:
            ProtocolError: not a map with string keys, or larger than ``MAX_EVENT_BYTES`` packed.
        """
        if not isinstance(event, dict) or not all(isinstance(k, str) for k in event):
            raise ProtocolError("an audit event must be a map with string keys")
        try:
            size = len(msgpack.packb(event))
        except (TypeError, ValueError, OverflowError) as exc:
            raise ProtocolError(f"an audit event must be plain data: {exc}") from None
        if size > MAX_EVENT_BYTES:
            raise ProtocolError(f"audit event of {size} bytes exceeds the limit of {MAX_EVENT_BYTES} bytes")
        self.client_events += 1
        body = {"action": "reported", "by": str(identity), "time": time.time(), "event": event}
        log.info("audit: reported by %s %s", identity, _short(event))
        self._emit(body)

    def _emit(self, event: dict) -> None:
        if self.publish is not None:
            self.publish(AUDIT_TOPIC, event)

    def status(self) -> dict:
        return {"events": self.events, "refusals": self.refusals, "reported": self.client_events}


def _short(details: dict) -> str:
    text = repr(details)
    return text if len(text) <= 300 else text[:297] + "..."
