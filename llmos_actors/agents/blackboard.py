"""``llmos.Blackboard``: shared, versioned entries with compare-and-set, for agents working together.

Every write names the version it read (0 for "the key does not exist yet"); a write
against any other version is refused with the current entry, so two agents never
overwrite each other's work unseen. Entries live in SQLite under the daemon's state
directory: a supervised blackboard restarted after a crash has them all.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from .._wire import fastpack
from ..actor import Actor
from .memory import check_namespace
from .tools import tool

#: Longest key (characters) and largest value (bytes, packed) a blackboard holds.
MAX_KEY_CHARS = 200
MAX_VALUE_BYTES = 1024 * 1024
#: Entries listed at most by ``entries``.
MAX_LISTED = 1000


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
        raise ValueError(f"a blackboard key is a non-empty string of at most {MAX_KEY_CHARS} characters")
    return key


class Blackboard(Actor):
    """Versioned entries: ``read(key)``, ``write(key, value, expected_version)``, ``entries(prefix)``.

    Args:
        publish: also publish each change on ``blackboard.<name>.<key>`` (agents may perceive it).
    """

    def __init__(self, publish: bool = True) -> None:
        self.publish = publish
        self._db: sqlite3.Connection | None = None

    def on_start(self) -> None:
        name = check_namespace(self.actor_name)
        path = Path(self._llmos_runtime.config.state_dir) / "agents" / "blackboard" / f"{name}.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, version INTEGER NOT NULL, "
            "value BLOB, writer TEXT, updated REAL)"
        )
        self._db.commit()

    def on_stop(self) -> None:
        if self._db is not None:
            self._db.close()

    def _entry(self, key: str) -> dict:
        assert self._db is not None
        row = self._db.execute("SELECT version, value, writer, updated FROM entries WHERE key = ?", (key,)).fetchone()
        if row is None:
            return {"key": key, "version": 0, "value": None, "writer": None, "updated": None}
        return {"key": key, "version": row[0], "value": fastpack.unpackb(row[1]), "writer": row[2], "updated": row[3]}

    @tool
    def read(self, key: str) -> dict:
        """Read an entry of the shared blackboard: its value and version (0 if it does not exist).

        Args:
            key: the entry's name.
        """
        return self._entry(_check_key(key))

    @tool
    def write(self, key: str, value: Any, expected_version: int, writer: str = "") -> dict:
        """Write an entry if its version is still the one you read (0 for a new entry).

        Args:
            key: the entry's name.
            value: what to store.
            expected_version: 0 for a new entry, else the version you read (refused if someone wrote since).
            writer: who writes (a label kept with the entry).
        """
        key = _check_key(key)
        if type(expected_version) is not int or expected_version < 0:
            raise ValueError("expected_version must be an int >= 0 (0: the entry must not exist yet)")
        packed = fastpack.packb(value)
        if len(packed) > MAX_VALUE_BYTES:
            raise ValueError(f"a blackboard value is at most {MAX_VALUE_BYTES} bytes packed")
        current = self._entry(key)
        if current["version"] != expected_version:
            reason = f"version changed: write again with expected_version {current['version']}"
            return {"ok": False, "reason": reason, **current}
        assert self._db is not None
        version = expected_version + 1
        now = time.time()
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO entries(key, version, value, writer, updated) VALUES (?, ?, ?, ?, ?)",
                (key, version, packed, str(writer)[:100], now),
            )
        if self.publish:
            self.actor_kernel.publish(f"blackboard.{self.actor_name}.{key}", {"key": key, "version": version})
        return {"ok": True, "key": key, "version": version, "value": value, "writer": str(writer)[:100], "updated": now}

    def entries(self, prefix: str = "") -> list[dict]:
        """Entries whose key starts with ``prefix`` (at most 1,000), in key order."""
        assert self._db is not None
        rows = self._db.execute(
            "SELECT key FROM entries WHERE substr(key, 1, ?) = ? ORDER BY key LIMIT ?",
            (len(prefix), prefix, MAX_LISTED),
        ).fetchall()
        return [self._entry(r[0]) for r in rows]
