"""The journal's tables, by schema version, and the migrations between versions.

A journal written by an older daemon is migrated in place, one version at a time,
inside one transaction; a journal from a newer daemon is refused (we cannot know
what its tables mean).
"""

from __future__ import annotations

import sqlite3

#: The version this daemon writes.
VERSION = 2

#: Version 1: what to bring back (actors, supervisors, pools, sync objects, detached objects).
V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE actors (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL);
CREATE TABLE supervisors (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL);
CREATE TABLE pools (name TEXT PRIMARY KEY, seq INTEGER NOT NULL, spec TEXT NOT NULL);
CREATE TABLE sync_objects (name TEXT PRIMARY KEY, kind TEXT NOT NULL, params TEXT NOT NULL);
CREATE TABLE objects (oid TEXT PRIMARY KEY, meta TEXT NOT NULL, file TEXT NOT NULL);
"""

#: Version 2: actor snapshots, and why an actor could not be brought back.
V1_TO_V2 = """
ALTER TABLE actors ADD COLUMN problem TEXT NOT NULL DEFAULT '';
CREATE TABLE snapshots (actor_id TEXT PRIMARY KEY, file TEXT NOT NULL, taken REAL NOT NULL, size INTEGER NOT NULL);
"""

MIGRATIONS = {1: V1_TO_V2}


class SchemaError(Exception):
    """The journal's schema is not one this daemon can read or migrate."""


def version_of(db: sqlite3.Connection) -> int:
    """The journal's schema version (0: an empty database)."""
    has_meta = db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
    if not has_meta:
        return 0
    row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    if row is None:
        raise SchemaError("the journal has no schema version")
    return int(row[0])


def create(db: sqlite3.Connection, version: int = VERSION) -> None:
    """Create the tables of ``version`` in an empty database (tests create older ones)."""
    with db:
        db.executescript("BEGIN;" + V1 + "".join(MIGRATIONS[v] for v in range(1, version)) + "COMMIT;")
        db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(version),))


def migrate(db: sqlite3.Connection) -> tuple[int, int]:
    """Bring the journal to ``VERSION``; returns (version found, version now).

    Raises:
        SchemaError: the journal is newer than this daemon.
    """
    found = version_of(db)
    if found == 0:
        create(db)
        return 0, VERSION
    if found > VERSION:
        raise SchemaError(f"the journal has schema version {found}; this daemon reads up to {VERSION}")
    if found < VERSION:
        script = "".join(MIGRATIONS[v] for v in range(found, VERSION))
        db.executescript(f"BEGIN;{script}UPDATE meta SET value='{VERSION}' WHERE key='schema';COMMIT;")
    return found, VERSION
