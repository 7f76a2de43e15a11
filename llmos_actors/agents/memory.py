"""Long-term memory: one SQLite file per agent namespace, searched with its FTS5 full-text index.

It lives under the daemon's state directory, so what an agent remembered (or had
evicted from its context window) survives the agent's restart and the daemon's.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

#: Namespaces are file names: letters, digits, '.', '_', '-' (like actor names).
NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
#: Longest entry kept (characters): a longer text is cut, not refused.
MAX_ENTRY_CHARS = 8000
#: Entries kept per namespace; past this the oldest go.
MAX_ENTRIES = 100_000
#: Words of a query used for the full-text match.
MAX_QUERY_WORDS = 16

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, text TEXT NOT NULL, created REAL NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS entries_fts USING fts5(text, content='entries', content_rowid='id');
CREATE TRIGGER IF NOT EXISTS entries_ai AFTER INSERT ON entries BEGIN
    INSERT INTO entries_fts(rowid, text) VALUES (new.id, new.text); END;
CREATE TRIGGER IF NOT EXISTS entries_ad AFTER DELETE ON entries BEGIN
    INSERT INTO entries_fts(entries_fts, rowid, text) VALUES ('delete', old.id, old.text); END;
"""


def memory_dir(state_dir: Path) -> Path:
    """Where agents' namespaces live under a daemon's state directory."""
    return Path(state_dir) / "agents" / "memory"


def check_namespace(name: str) -> str:
    if not isinstance(name, str) or not NAMESPACE_RE.match(name):
        raise ValueError(f"memory namespace must match {NAMESPACE_RE.pattern}, not {name!r}")
    return name


def match_query(query: str) -> str | None:
    """An FTS5 query matching any of the words of ``query`` (each quoted: no operators from the caller)."""
    words = re.findall(r"\w+", query or "")[:MAX_QUERY_WORDS]
    return " OR ".join(f'"{w}"' for w in words) or None


class LongTermMemory:
    """One namespace: ``add`` entries, ``search`` them by words (best matches first).

    Args:
        directory: the namespaces' directory (``memory_dir(state_dir)``).
        namespace: this memory's name (the agent's, by default).
        readonly: open another agent's namespace for reading only (it must exist).
    """

    def __init__(self, directory: Path, namespace: str, *, readonly: bool = False) -> None:
        self.namespace = check_namespace(namespace)
        self.path = Path(directory) / f"{namespace}.sqlite3"
        self.readonly = readonly
        if readonly:
            if not self.path.exists():
                raise FileNotFoundError(f"memory namespace {namespace!r} does not exist")
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5.0)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(self.path, timeout=5.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            self._db.commit()

    def add(self, text: str, kind: str = "note") -> int:
        """Store ``text``; returns its id."""
        if self.readonly:
            raise PermissionError(f"memory namespace {self.namespace!r} is open read-only")
        with self._db:
            cur = self._db.execute(
                "INSERT INTO entries(kind, text, created) VALUES (?, ?, ?)",
                (str(kind)[:32], str(text)[:MAX_ENTRY_CHARS], time.time()),
            )
            self._db.execute("DELETE FROM entries WHERE id <= (SELECT MAX(id) FROM entries) - ?", (MAX_ENTRIES,))
        return int(cur.lastrowid or 0)

    def search(self, query: str, limit: int = 3) -> list[dict]:
        """Entries matching any word of ``query``, best first; the latest ones for an empty query."""
        limit = max(1, min(int(limit), 50))
        match = match_query(query)
        if match is None:
            rows = self._db.execute(
                "SELECT id, kind, text, created FROM entries ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT e.id, e.kind, e.text, e.created FROM entries_fts f JOIN entries e ON e.id = f.rowid "
                "WHERE entries_fts MATCH ? ORDER BY bm25(entries_fts) LIMIT ?",
                (match, limit),
            ).fetchall()
        return [{"id": r[0], "kind": r[1], "text": r[2], "created": r[3]} for r in rows]

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def close(self) -> None:
        self._db.close()
