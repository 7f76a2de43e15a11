"""The journal (SQLite, WAL): group commit, schema migration, corrupt files, snapshot files, export/import."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from llmos_actors._kernel.state import journal as J
from llmos_actors._kernel.state import schema
from llmos_actors._kernel.state.jsonable import dumps, loads
from llmos_actors._kernel.state.settings import set_aside
from llmos_actors._kernel.state.snapshots import SnapshotStore
from llmos_actors._kernel.state.transfer import export_state, import_state
from llmos_actors.config import load_config
from llmos_actors.errors import JournalError


def test_wal_mode_and_schema_version(tmp_path: Path) -> None:
    j = J.Journal(tmp_path / "j.sqlite")
    try:
        assert j.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert schema.version_of(j.db) == schema.VERSION
    finally:
        j.close()


def test_spawns_arriving_together_share_commits(tmp_path: Path) -> None:
    j = J.Journal(tmp_path / "j.sqlite")

    async def many() -> None:
        futs = [
            j.submit(J.put_actor(f"a{i}", j.next_seq(), f"n{i}", {"cls": "m:C", "args": b"\x01"})) for i in range(50)
        ]
        await asyncio.gather(*futs)

    try:
        asyncio.run(many())
        assert j.ops == 50
        assert j.commits <= 2  # the first alone, the 49 that arrived meanwhile together
        rows = j.specs("actors")
        assert [r["id"] for r in rows] == [f"a{i}" for i in range(50)]
        assert rows[0]["spec"]["args"] == b"\x01"
    finally:
        j.close()


def test_reopen_sees_committed_rows_and_continues_seq(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = J.Journal(path)
    j.write_now(J.put_supervisor("s1", j.next_seq(), "top", {"strategy": "one_for_all"}))
    j.write_now(J.put_actor("a1", j.next_seq(), "x", {"cls": "m:C"}))
    j.close()
    j = J.Journal(path)
    try:
        assert j.seq == 2 and j.next_seq() == 3
        assert j.specs("supervisors")[0]["spec"] == {"strategy": "one_for_all"}
        j.write_now(*J.drop_actor("a1"))
        assert j.counts()["actors"] == 0
    finally:
        j.close()


def test_older_schema_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    schema.create(db, version=1)
    db.execute("INSERT INTO actors VALUES ('a1', 1, 'old', ?)", (dumps({"cls": "m:C"}),))
    db.close()
    j = J.Journal(path)
    try:
        assert j.migrated_from == 1
        assert schema.version_of(j.db) == schema.VERSION
        rows = j.specs("actors")
        assert rows[0]["id"] == "a1" and rows[0]["problem"] == ""
        j.write_now(J.put_snapshot("a1", "/x/1.snap", 1.0, 3))  # a version-2 table
        assert j.counts()["snapshots"] == 1
    finally:
        j.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    schema.create(db)
    db.execute("UPDATE meta SET value='99' WHERE key='schema'")
    db.close()
    with pytest.raises(JournalError, match=r"new\.sqlite.*schema version 99.*--fresh"):
        J.Journal(path)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_journal_names_the_file(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "journal.sqlite"
    j = J.Journal(path)
    j.write_now(*(J.put_actor(f"a{i}", i, "", {"cls": "m:C", "pad": "x" * 2000}) for i in range(200)))
    j.close()
    data = path.read_bytes()
    assert len(data) > 16384
    if damage == "garbage":
        path.write_bytes(data[:100] + b"\xde\xad" * 4000 + data[8100:])
    else:
        path.write_bytes(data[: len(data) // 3])
    with pytest.raises(JournalError) as info:
        J.Journal(path)
    assert str(path) in str(info.value) and "--fresh" in str(info.value)


def test_set_aside_moves_the_state(tmp_path: Path) -> None:
    config = load_config({"runtime_dir": tmp_path / "rt", "state_dir": tmp_path / "st"}, env={})
    config.state_dir.mkdir()
    J.Journal(config.state_dir / J.JOURNAL_FILE).close()
    aside = set_aside(config)
    assert aside is not None and (aside / J.JOURNAL_FILE).exists()
    assert not (config.state_dir / J.JOURNAL_FILE).exists()
    assert set_aside(config) is None


def test_snapshot_store_keeps_latest_and_older(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snaps", keep=2)
    for i in range(5):
        store.write("a1", bytes([i]))
    files = store.files("a1")
    assert [f.read_bytes() for f in files] == [b"\x02", b"\x03", b"\x04"]
    assert store.latest("a1") == files[-1]
    assert not list((tmp_path / "snaps" / "a1").glob(".*.tmp"))
    store.drop("a1")
    assert store.latest("a1") is None


def test_json_round_trip_keeps_bytes() -> None:
    value = {"args": b"\x00\xff", "list": [1, b"x"], "s": "t"}
    assert loads(dumps(value)) == value


def test_export_import_round_trip(tmp_path: Path) -> None:
    a = load_config({"runtime_dir": tmp_path / "rt", "state_dir": tmp_path / "a"}, env={})
    b = load_config({"runtime_dir": tmp_path / "rt2", "state_dir": tmp_path / "b"}, env={})
    a.state_dir.mkdir()
    j = J.Journal(a.state_dir / J.JOURNAL_FILE)
    store = SnapshotStore(a.state_dir / "snapshots")
    path = store.write("a1", b"state")
    j.write_now(
        J.put_supervisor("s1", 1, "top", {"strategy": "rest_for_one", "parent": None}),
        J.put_actor("a1", 2, "x", {"cls": "m:C", "args": b"\x92\x90\x80", "supervisor": "s1"}),
        J.put_pool("p", 3, {"name": "p", "member": {"cls": "m:C"}}),
        J.put_sync("sem", "semaphore", {"n": 3}),
        J.put_snapshot("a1", str(path), 5.0, 5),
    )
    j.close()
    doc = export_state(a)
    counts = import_state(b, doc)
    assert counts["actors"] == 1 and counts["snapshots"] == 1
    j2 = J.Journal(b.state_dir / J.JOURNAL_FILE)
    try:
        assert j2.specs("actors")[0]["spec"]["args"] == b"\x92\x90\x80"
        snap = j2.rows("snapshots")[0]
        assert Path(snap["file"]).read_bytes() == b"state" and str(b.state_dir) in snap["file"]
    finally:
        j2.close()
    with pytest.raises(JournalError, match="not empty"):
        import_state(b, doc)
    with pytest.raises(JournalError, match="not an llmos state export"):
        import_state(b, {"format": "other"})


def test_import_refuses_paths_for_ids(tmp_path: Path) -> None:
    b = load_config({"runtime_dir": tmp_path / "rt", "state_dir": tmp_path / "b"}, env={})
    bad_snap = {"format": "llmos-state", "snapshots": [{"actor_id": "../../evil", "data": "AA=="}]}
    with pytest.raises(JournalError, match="malformed"):
        import_state(b, bad_snap)
    bad_obj = {"format": "llmos-state", "objects": [{"oid": "../x", "meta": [], "data": "AA=="}]}
    with pytest.raises(JournalError, match="bad object id"):
        import_state(b, bad_obj)
    assert not (tmp_path / "evil").exists() and not list(tmp_path.glob("**/x.bin"))
