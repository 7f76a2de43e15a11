"""Detached stored objects that outlive the daemon: their bytes in ``<state>/objects``, their ids in the journal.

A detached ``put`` is written (and fsync'd) before the daemon answers it; after a restart
each object comes back under its old id as a spilled object, read into pages on its first ``get``.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from ..._pages.store import ObjectStore, StoredObject
from . import journal as J

log = logging.getLogger(__name__)


class DurableObjects:
    """Keeps the object store's detached objects on disk."""

    def __init__(self, root: Path, journal: J.Journal, store: ObjectStore) -> None:
        self.root = root
        self.journal = journal
        self.store = store
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        store.on_detached = self.on_detached

    def _path(self, oid: str) -> Path:
        return self.root / f"{oid}.bin"

    def on_detached(self, what: str, obj: StoredObject) -> None:
        path = self._path(obj.oid)
        if what == "put":
            tmp = path.with_suffix(".tmp")
            self.store.write_to(obj, tmp, sync=True)
            os.rename(tmp, path)
            self.journal.write_now(J.put_object(obj.oid, obj.meta, path.name))
        else:
            self.journal.write_now(J.drop_object(obj.oid))
            path.unlink(missing_ok=True)

    def restore(self) -> int:
        """Enter the journal's objects in the store (as spilled); returns how many came back."""
        n = 0
        for row in self.journal.rows("objects"):
            src = self.root / row["file"]
            if not src.is_file():
                log.warning("detached object %s: its file %s is missing", row["oid"], src)
                continue
            spilled = self.store.spill_dir / f"{row['oid']}.bin"
            shutil.copyfile(src, spilled)
            meta: Any = J.jsonable.loads(row["meta"])
            self.store.objects[row["oid"]] = StoredObject(row["oid"], None, meta, None, self.store.clock(), spilled)
            n += 1
        return n
