"""Stopping actors: SIGTERM, a grace period, then SIGKILL to the process group.

A mixin of ``Lifecycle``. ``terminate`` stops the current incarnation (its supervisor may
start another); ``kill`` stops an actor for good; ``stop_all`` is the daemon's shutdown.
How an actor stops (drain or cancel, and its grace) is recorded on its record, where the
actor asks for it when SIGTERM arrives.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

from ..config import Config
from .proctable import EXITED, RESTARTING, STARTING, STOPPING, ActorRecord, ProcessTable

log = logging.getLogger(__name__)


class Stopping:
    """Signals and grace periods for the actors in ``table``."""

    config: Config
    table: ProcessTable
    abandon: Callable[[ActorRecord, str], None]

    def send_signal(self, record: ActorRecord, sig: int, *, group: bool = False) -> None:
        if record.pid is None or record.state == EXITED:
            return
        try:
            if group:
                os.killpg(record.pid, sig)
            else:
                os.kill(record.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            os.kill(record.pid, sig)

    async def kill(
        self, record: ActorRecord, *, force: bool = False, grace: float | None = None, drain: bool = True
    ) -> dict:
        """Stop one actor for good (no restart): SIGTERM, then SIGKILL to its process group after ``grace``.

        Args:
            drain: the actor lets calls in flight finish within the grace period
                (False: it cancels them at once); either way queued calls fail with ActorDiedError.
        """
        record.wanted_down = True
        if record.state == RESTARTING:
            self.abandon(record, "stopped by request while restarting")
            return record.exit or {}
        return await self.terminate(record, force=force, grace=grace, drain=drain, reason="by request")

    async def terminate(
        self,
        record: ActorRecord,
        *,
        force: bool = False,
        grace: float | None = None,
        drain: bool = True,
        reason: str = "by request",
    ) -> dict:
        """Stop the current incarnation (its supervisor may restart it: see ``kill`` for a final stop)."""
        if record.state in (EXITED, RESTARTING):
            return record.exit or {}
        grace = self.config.grace if grace is None else grace
        record.stop_mode = {"drain": bool(drain), "grace": grace}
        if record.state == STARTING and record.pid is None:
            record.state = STOPPING  # being forked: start() kills it once its pid is known
            record.stop_reason = f"stopped {reason} while starting"
            await asyncio.wait_for(asyncio.shield(record.exited_event.wait()), grace + 5)
            return record.exit or {}
        record.state = STOPPING
        if force:
            record.stop_reason = f"killed {reason} (SIGKILL)"
            self.send_signal(record, signal.SIGKILL, group=True)
        else:
            record.stop_reason = f"stopped {reason}"
            self.send_signal(record, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(record.exited_event.wait()), grace)
            except asyncio.TimeoutError:
                log.warning("actor %s ignored SIGTERM for %.1f s: sending SIGKILL", record.label, grace)
                record.stop_reason = f"killed (SIGKILL) after {grace:g} s grace"
                self.send_signal(record, signal.SIGKILL, group=True)
        await asyncio.wait_for(asyncio.shield(record.exited_event.wait()), 10)
        return record.exit or {}

    async def stop_all(self, grace: float) -> None:
        """Daemon shutdown: every live actor gets SIGTERM, stragglers SIGKILL after ``grace``."""
        live = self.table.live()
        for record in live:
            record.wanted_down = True  # nothing restarts from here on
        if not live:
            return
        await asyncio.gather(*(self.kill(r, grace=grace) for r in live), return_exceptions=True)
