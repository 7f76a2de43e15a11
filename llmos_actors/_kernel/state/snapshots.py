"""Actors' snapshots as files: written atomically, the latest good one kept (plus ``keep`` older).

``<root>/<actor id>/<n>.snap``: a new snapshot is written to a temporary file, fsync'd
and renamed over nothing, so a crash leaves either the previous set or the new one,
never half a file under a snapshot's name.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

#: Actor ids as the daemon makes them (names of directories here: nothing else gets in).
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class SnapshotStore:
    """Snapshot files under ``root``."""

    def __init__(self, root: Path, keep: int = 1) -> None:
        self.root = root
        self.keep = max(0, int(keep))
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _dir(self, actor_id: str) -> Path:
        if not isinstance(actor_id, str) or not _ID.match(actor_id):
            raise ValueError(f"not an actor id: {actor_id!r}")
        return self.root / actor_id

    @staticmethod
    def _number(path: Path) -> int:
        try:
            return int(path.stem)
        except ValueError:
            return -1

    def files(self, actor_id: str) -> list[Path]:
        """This actor's snapshots, oldest first."""
        d = self._dir(actor_id)
        if not d.is_dir():
            return []
        found = [p for p in d.glob("*.snap") if self._number(p) >= 0]
        return sorted(found, key=self._number)

    def latest(self, actor_id: str) -> Path | None:
        files = self.files(actor_id)
        return files[-1] if files else None

    def write(self, actor_id: str, data: bytes) -> Path:
        """Store ``data`` as the actor's newest snapshot (durably) and prune beyond ``keep`` older ones."""
        d = self._dir(actor_id)
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        latest = self.latest(actor_id)
        n = self._number(latest) + 1 if latest is not None else 1
        final = d / f"{n}.snap"
        tmp = d / f".{n}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, final)
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        for old in self.files(actor_id)[: -(self.keep + 1)]:
            old.unlink(missing_ok=True)
        return final

    def drop(self, actor_id: str) -> None:
        shutil.rmtree(self._dir(actor_id), ignore_errors=True)

    def actor_ids(self) -> list[str]:
        return [p.name for p in self.root.iterdir() if p.is_dir()] if self.root.is_dir() else []
