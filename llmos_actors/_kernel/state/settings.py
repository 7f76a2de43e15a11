"""The ``[state]`` config section, and where the state's files go in the state directory."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...config import Config
from ...errors import ConfigError
from .journal import JOURNAL_FILE, Journal

SNAPSHOT_DIR = "snapshots"
OBJECT_DIR = "objects"


@dataclass(frozen=True)
class StateSettings:
    journal: bool = True  # False: nothing is recorded or recovered (the daemon forgets, as before)
    sync: str = "full"  # full: every commit fsync'd; normal: the WAL is fsync'd at checkpoints
    snapshot_keep: int = 1  # older snapshots kept beside the latest
    snapshot_timeout: float = 30.0  # seconds an actor gets to answer a snapshot request


def state_settings(extra: Any) -> StateSettings:
    """Validate the ``[state]`` section.

    Raises:
        ConfigError: an unknown key or a bad value.
    """
    section = dict((extra or {}).get("state") or {})
    known = {"journal", "sync", "snapshot_keep", "snapshot_timeout"}
    unknown = set(section) - known
    if unknown:
        raise ConfigError(f"[state] has unknown keys {sorted(unknown)}; known: {sorted(known)}")
    s = StateSettings(**section)
    if not isinstance(s.journal, bool):
        raise ConfigError("[state] journal must be true or false")
    if s.sync not in ("full", "normal"):
        raise ConfigError("[state] sync must be 'full' or 'normal'")
    if not isinstance(s.snapshot_keep, int) or not 0 <= s.snapshot_keep <= 1000:
        raise ConfigError("[state] snapshot_keep must be an int in 0..1000")
    if not isinstance(s.snapshot_timeout, (int, float)) or s.snapshot_timeout <= 0:
        raise ConfigError("[state] snapshot_timeout must be a number of seconds > 0")
    return s


def journal_path(config: Config) -> Path:
    return config.state_dir / JOURNAL_FILE


def open_journal(config: Config) -> Journal | None:
    """The daemon's journal (None when ``[state] journal = false``).

    Raises:
        JournalError: the file is corrupt, truncated or from a newer daemon (the message names it).
    """
    settings = state_settings(config.extra)
    if not settings.journal:
        return None
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Journal(journal_path(config), sync=settings.sync)


def set_aside(config: Config) -> Path | None:
    """``llmos daemon --fresh``: move the journal, snapshots and objects to ``<state>/previous-<time>``."""
    state = config.state_dir
    names = [n for n in (JOURNAL_FILE, JOURNAL_FILE + "-wal", JOURNAL_FILE + "-shm", SNAPSHOT_DIR, OBJECT_DIR)]
    present = [n for n in names if (state / n).exists()]
    if not present:
        return None
    aside = state / time.strftime("previous-%Y%m%d-%H%M%S")
    n = 1
    while aside.exists():
        n += 1
        aside = state / time.strftime(f"previous-%Y%m%d-%H%M%S-{n}")
    aside.mkdir(mode=0o700, parents=True)
    for name in present:
        os.rename(state / name, aside / name)
    return aside
