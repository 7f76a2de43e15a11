"""What a running actor reports about itself: READY, why it could not start, heartbeats, decisions.

A mixin of ``Lifecycle`` (its table, ``notify`` and ``publish``): these arrive as control
requests from the actor's runtime (``actor_ready``, ``actor_failed``, ``heartbeat``), checked
there for the actor's token, and change the record; READY of a later incarnation tells its
watchers it was restarted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgpack

from .proctable import RUNNING, STARTING, ActorRecord, ProcessTable

#: Where actors' own scheduling decisions go (the LLM device's), beside the daemon's ``sys.sched.decision``.
DECISION_TOPIC = "sys.device.decision"
#: Bounds on them, per heartbeat and per entry (packed).
MAX_DECISIONS = 32
MAX_DECISION_BYTES = 2048


class ActorReports:
    """READY, start failures and heartbeats of the actors in ``table``."""

    table: ProcessTable
    notify: Callable[[ActorRecord, dict], None]
    publish: Callable[[str, dict], None]
    restart_times: list[float]

    def ready(self, actor_id: str, info: dict) -> None:
        """The actor reported READY (socket bound, constructed, ``on_start`` done)."""
        record = self.table.by_id.get(actor_id)
        if record is None or record.state != STARTING:
            return
        record.state = RUNNING
        record.ready_mono = time.monotonic()
        if isinstance(info, dict):
            record.cpus = info.get("cpus", record.cpus)
            record.nice = info.get("nice", record.nice)
            record.placement_note = info.get("nice_error", "")
            record.overflow = info.get("overflow", record.overflow)
            record.trap_exits = bool(info.get("trap_exits"))
            tcp = info.get("tcp_endpoint")
            record.tcp_endpoint = tcp if isinstance(tcp, str) and tcp.startswith("tcp://") else ""
        if record.ready is not None and not record.ready.done():
            record.ready.set_result(record)
        self.publish(
            "sys.actor.started",
            {"actor": record.id, "name": record.name, "pid": record.pid, "cls": record.cls, "cpus": record.cpus},
        )
        if record.incarnation > 1:
            if record.down_mono is not None:
                self.restart_times.append(record.ready_mono - record.down_mono)
                del self.restart_times[:-1000]
            notice = record.restarted_notice()
            self.notify(record, notice)
            self.publish("sys.actor.restarted", notice)

    def failed(self, actor_id: str, payload: dict) -> None:
        """The actor explains why it cannot start; its exit follows."""
        record = self.table.by_id.get(actor_id)
        if record is not None and isinstance(payload, dict):
            record.failure = payload

    def heartbeat(self, actor_id: str, stats: dict) -> None:
        record = self.table.by_id.get(actor_id)
        if record is not None and isinstance(stats, dict):
            decisions = stats.pop("decisions", None)
            record.stats = stats
            if isinstance(decisions, list):
                self._publish_decisions(record, decisions)

    def _publish_decisions(self, record: ActorRecord, decisions: list) -> None:
        """An actor's scheduling decisions (``on_decisions``) on ``sys.device.decision``: plain maps of
        at most ``MAX_DECISION_BYTES`` packed, ``MAX_DECISIONS`` a heartbeat, who made them from the record."""
        for entry in decisions[:MAX_DECISIONS]:
            if not isinstance(entry, dict) or not all(isinstance(k, str) for k in entry):
                continue
            try:
                if len(msgpack.packb(entry)) > MAX_DECISION_BYTES:
                    continue
            except (TypeError, ValueError, OverflowError):
                continue
            self.publish(DECISION_TOPIC, {**entry, "actor": record.name or record.id, "actor_id": record.id})
