"""Daemons of the durable-state tests: each with its own runtime and state directory, recovered."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from llmos_actors.testing import DaemonHandle, start_daemon, wait_for

SETTINGS = {"grace": 2.0, "heartbeat_interval": 0.2}


@contextlib.contextmanager
def daemon_at(rdir: Path, **settings: object) -> Iterator[DaemonHandle]:
    """A daemon at ``rdir`` that has finished recovering its journal."""
    with start_daemon(rdir, **{**SETTINGS, **settings}) as handle:
        k = handle.connect()
        wait_for(lambda: k.status()["state"].get("recovering") is False, 60, what="recovery")
        yield handle
