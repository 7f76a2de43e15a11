"""``llmos state export`` / ``import``: the journal, snapshots and detached objects as one JSON document.

Export reads the journal while the daemon runs (WAL readers do not block it); import
writes a journal for a daemon that is not running, which recovers it at its next start.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from ...config import Config
from ...errors import JournalError
from . import journal as J
from . import schema
from .jsonable import from_plain, to_plain
from .settings import OBJECT_DIR, SNAPSHOT_DIR, journal_path, state_settings
from .snapshots import SnapshotStore

FORMAT = "llmos-state"
_OID = re.compile(r"^[0-9a-f]{1,32}-[0-9]{1,20}$")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def export_state(config: Config) -> dict:
    """The state directory's durable state as a JSON-ready document."""
    path = journal_path(config)
    if not path.exists():
        raise JournalError(f"no journal at {path}")
    journal = J.Journal(path)
    try:
        doc: dict[str, Any] = {"format": FORMAT, "schema": schema.VERSION}
        doc["actors"] = [{**row, "spec": to_plain(row["spec"])} for row in journal.specs("actors")]
        doc["supervisors"] = [{**row, "spec": to_plain(row["spec"])} for row in journal.specs("supervisors")]
        doc["pools"] = [{**row, "spec": to_plain(row["spec"])} for row in journal.specs("pools")]
        doc["sync_objects"] = [
            {"name": r["name"], "kind": r["kind"], "params": J.jsonable.loads(r["params"])}
            for r in journal.rows("sync_objects")
        ]
        doc["snapshots"] = []
        for row in journal.rows("snapshots"):
            file = Path(row["file"])
            if file.is_file():
                doc["snapshots"].append(
                    {"actor_id": row["actor_id"], "taken": row["taken"], "data": _b64(file.read_bytes())}
                )
        doc["objects"] = []
        for row in journal.rows("objects"):
            file = config.state_dir / OBJECT_DIR / row["file"]
            if file.is_file():
                meta = J.jsonable.loads(row["meta"])
                doc["objects"].append({"oid": row["oid"], "meta": to_plain(meta), "data": _b64(file.read_bytes())})
        return doc
    finally:
        journal.close()


def import_state(config: Config, doc: Any) -> dict:
    """Write ``doc`` (from ``export_state``) as the state directory's journal; returns counts.

    Raises:
        JournalError: not an export, or the journal already holds state.
    """
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise JournalError(f"not an llmos state export (format {FORMAT!r})")
    if int(doc.get("schema", 0)) > schema.VERSION:
        raise JournalError(f"the export has schema {doc.get('schema')}; this version reads up to {schema.VERSION}")
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    journal = J.Journal(journal_path(config))
    try:
        if any(journal.counts().values()):
            raise JournalError(
                f"the journal {journal.path} is not empty: set it aside first (llmos state import --replace)"
            )
        ops: list = []
        for table, put in (("actors", J.put_actor), ("supervisors", J.put_supervisor)):
            for row in doc.get(table, []):
                ops.append(put(row["id"], int(row["seq"]), row.get("name") or "", from_plain(row["spec"])))
        for row in doc.get("pools", []):
            ops.append(J.put_pool(row["name"], int(row["seq"]), from_plain(row["spec"])))
        for row in doc.get("sync_objects", []):
            ops.append(J.put_sync(row["name"], row["kind"], dict(row.get("params") or {})))
        store = SnapshotStore(config.state_dir / SNAPSHOT_DIR, state_settings(config.extra).snapshot_keep)
        for row in doc.get("snapshots", []):
            data = base64.b64decode(row["data"])
            path = store.write(row["actor_id"], data)
            ops.append(J.put_snapshot(row["actor_id"], str(path), float(row.get("taken") or 0), len(data)))
        objects = config.state_dir / OBJECT_DIR
        objects.mkdir(parents=True, exist_ok=True, mode=0o700)
        for row in doc.get("objects", []):
            if not isinstance(row["oid"], str) or not _OID.match(row["oid"]):
                raise JournalError(f"bad object id {row['oid']!r}")
            name = f"{row['oid']}.bin"
            (objects / name).write_bytes(base64.b64decode(row["data"]))
            ops.append(J.put_object(row["oid"], from_plain(row["meta"]), name))
        journal.write_now(*ops)
        return {
            t: len(doc.get(t, [])) for t in ("actors", "supervisors", "pools", "sync_objects", "snapshots", "objects")
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise JournalError(f"malformed state export: {exc!r}") from None
    finally:
        journal.close()
