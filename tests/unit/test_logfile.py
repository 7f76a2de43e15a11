"""Per-actor log files rotate by size."""

from __future__ import annotations

from llmos_actors._kernel.logs import ActorLogFile


def test_rotation(tmp_path):
    log = ActorLogFile(tmp_path / "a.log", max_bytes=1000, backups=2)
    for i in range(100):
        log.write(f"line {i:04d} " + "x" * 40 + "\n")
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["a.log", "a.log.1", "a.log.2"]
    assert all((tmp_path / n).stat().st_size <= 1100 for n in names)
    assert "line 0099" in (tmp_path / "a.log").read_text()


def test_no_backups_truncates(tmp_path):
    log = ActorLogFile(tmp_path / "b.log", max_bytes=100, backups=0)
    for _ in range(10):
        log.write("y" * 60 + "\n")
    log.close()
    assert [p.name for p in tmp_path.iterdir()] == ["b.log"]
