"""The journal: SQLite in WAL mode, one transaction per batch of operations.

Each operation the daemon acknowledges (a spawn of an actor that should live, a
supervisor, a pool, a detached object, ...) is committed here first. Commits run
on one writer thread; operations that arrive while a commit is in progress wait
for the next one, so many spawns at once share one fsync (group commit).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ...errors import JournalError
from . import jsonable, schema

log = logging.getLogger(__name__)

JOURNAL_FILE = "journal.sqlite"

#: One statement: (sql, parameters).
Op = tuple[str, tuple]


def _fresh_hint(path: Path) -> str:
    return f"start with `llmos daemon --fresh` to set {path.name} aside and begin empty"


class Journal:
    """The desired state, on disk.

    Args:
        path: the database file.
        sync: SQLite's ``synchronous`` (``full``: every commit is fsync'd; ``normal``: on checkpoints).
    """

    def __init__(self, path: Path, *, sync: str = "full") -> None:
        self.path = path
        self.migrated_from: int | None = None
        try:
            self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
            check = self.db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check[0] if check else 'no answer'}")
            found, _now = schema.migrate(self.db)
            if found and found != schema.VERSION:
                self.migrated_from = found
                log.info("journal %s migrated from schema %d to %d", path, found, schema.VERSION)
        except (sqlite3.DatabaseError, schema.SchemaError, ValueError) as exc:
            raise JournalError(f"cannot read the journal {path}: {exc}; {_fresh_hint(path)}") from exc
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="llmos-journal")
        self._pending: list[tuple[list[Op], asyncio.Future]] = []
        self._writing = False
        self.commits = 0
        self.ops = 0
        self.seq = self._max_seq()

    def _max_seq(self) -> int:
        rows = [self.db.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {t}").fetchone()[0] for t in _SEQ_TABLES]
        return max(rows)

    def next_seq(self) -> int:
        """Order of creation across actors, supervisors and pools (replay order)."""
        self.seq += 1
        return self.seq

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        with self._lock:
            self.db.close()

    # ------------------------------------------------------------------ writing
    def _commit(self, ops: list[Op]) -> None:
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in ops:
                    self.db.execute(sql, params)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        self.commits += 1
        self.ops += len(ops)

    def write_now(self, *ops: Op) -> None:
        """Commit ``ops`` before returning (for callers that cannot wait on the loop)."""
        self._commit(list(ops))

    def submit(self, *ops: Op) -> asyncio.Future:
        """Commit ``ops`` with whatever else arrives meanwhile; the future is done once they are on disk."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append((list(ops), fut))
        if not self._writing:
            self._start(loop)
        return fut

    async def flush(self) -> None:
        """Wait until everything submitted so far is on disk."""
        await self.submit()

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._pending = self._pending, []
        self._writing = True
        ops = [op for part, _ in batch for op in part]
        done = asyncio.wrap_future(self._writer.submit(self._commit, ops), loop=loop)
        done.add_done_callback(lambda f: self._written(loop, batch, f))

    def _written(self, loop: asyncio.AbstractEventLoop, batch: list, f: asyncio.Future) -> None:
        self._writing = False
        exc = f.exception()
        if exc is not None:
            log.error("journal commit failed: %s", exc)
        for _, fut in batch:
            if fut.done():
                continue
            if exc is not None:
                fut.set_exception(JournalError(f"journal {self.path}: {exc}"))
            else:
                fut.set_result(None)
        if self._pending:
            self._start(loop)

    # ------------------------------------------------------------------ reading
    def rows(self, table: str, order: str = "") -> list[dict]:
        with self._lock:
            cur = self.db.execute(f"SELECT * FROM {table}{' ORDER BY ' + order if order else ''}")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def specs(self, table: str) -> list[dict]:
        """Rows of ``table`` in creation order, each with its ``spec`` decoded."""
        out = []
        for row in self.rows(table, "seq"):
            row["spec"] = jsonable.loads(row["spec"])
            out.append(row)
        return out

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {t: self.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}


_SEQ_TABLES = ("actors", "supervisors", "pools")
TABLES = ("actors", "supervisors", "pools", "sync_objects", "objects", "snapshots")


# -- statements --------------------------------------------------------------------------
def put_actor(actor_id: str, seq: int, name: str, spec: dict) -> Op:
    return (
        "INSERT OR REPLACE INTO actors (id, seq, name, spec, problem) VALUES (?, ?, ?, ?, '')",
        (actor_id, seq, name, jsonable.dumps(spec)),
    )


def actor_spec(actor_id: str, spec: dict) -> Op:
    return ("UPDATE actors SET spec=? WHERE id=?", (jsonable.dumps(spec), actor_id))


def actor_problem(actor_id: str, problem: str) -> Op:
    return ("UPDATE actors SET problem=? WHERE id=?", (problem, actor_id))


def drop_actor(actor_id: str) -> list[Op]:
    return [("DELETE FROM actors WHERE id=?", (actor_id,)), ("DELETE FROM snapshots WHERE actor_id=?", (actor_id,))]


def put_supervisor(node_id: str, seq: int, name: str, spec: dict) -> Op:
    return (
        "INSERT OR REPLACE INTO supervisors (id, seq, name, spec) VALUES (?, ?, ?, ?)",
        (node_id, seq, name, jsonable.dumps(spec)),
    )


def drop_supervisor(node_id: str) -> Op:
    return ("DELETE FROM supervisors WHERE id=?", (node_id,))


def put_pool(name: str, seq: int, spec: dict) -> Op:
    return ("INSERT OR REPLACE INTO pools (name, seq, spec) VALUES (?, ?, ?)", (name, seq, jsonable.dumps(spec)))


def drop_pool(name: str) -> Op:
    return ("DELETE FROM pools WHERE name=?", (name,))


def put_sync(name: str, kind: str, params: dict) -> Op:
    return ("INSERT OR REPLACE INTO sync_objects VALUES (?, ?, ?)", (name, kind, jsonable.dumps(params)))


def drop_sync(name: str) -> Op:
    return ("DELETE FROM sync_objects WHERE name=?", (name,))


def put_object(oid: str, meta: Any, file: str) -> Op:
    return ("INSERT OR REPLACE INTO objects VALUES (?, ?, ?)", (oid, jsonable.dumps(meta), file))


def drop_object(oid: str) -> Op:
    return ("DELETE FROM objects WHERE oid=?", (oid,))


def put_snapshot(actor_id: str, file: str, taken: float, size: int) -> Op:
    return ("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?)", (actor_id, file, taken, size))
