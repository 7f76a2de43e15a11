"""Shared fixtures: a real daemon per test module, a kernel handle per test, leak checks."""

from __future__ import annotations

import faulthandler
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

# Test actor classes live in tests/actors.py; the daemon imports them by path too.
sys.path.insert(0, str(Path(__file__).parent))

from llmos_actors import Kernel
from llmos_actors.testing import DaemonHandle, shm_files, short_tmpdir, start_daemon


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonHandle]:
    """One real daemon per test module (starting one costs ~1-2 s: the fork server imports torch)."""
    with start_daemon(grace=2.0, heartbeat_interval=0.2) as handle:
        yield handle


@pytest.fixture
def kernel(daemon: DaemonHandle) -> Iterator[Kernel]:
    """A connected kernel; every actor the test spawned is killed afterwards, and must be gone."""
    k = daemon.connect()
    before = {row["id"] for row in k.ps()}
    yield k
    leftover = [row for row in k.ps(exited=False) if row["id"] not in before]
    for row in leftover:
        k.kill(row["id"], force=True)
    k.close()
    daemon.kernels.remove(k)


@pytest.fixture
def cli(daemon: DaemonHandle, capsys: pytest.CaptureFixture[str]):
    """Run ``llmos ARGS`` in-process against the module daemon; returns (exit code, stdout, stderr)."""
    from llmos_actors.cli.__main__ import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["--runtime-dir", str(daemon.runtime_dir), *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def rdir() -> Iterator[Path]:
    """A short runtime-directory path of its own (ipc paths are limited), removed afterwards."""
    base = short_tmpdir()
    yield base / "rt"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_stack_dump_in_long_runs(request: pytest.FixtureRequest) -> None:
    """Chaos, soak, fuzz and cluster runs last minutes by design (each has its own timeout mark): the
    110 s stack dump (``faulthandler_timeout``) would fire in every one of them, and dumping every
    thread's stack while those threads run can crash the interpreter (it did, in a soak run)."""
    if any(request.node.get_closest_marker(m) for m in ("chaos", "soak", "fuzz", "cluster")):
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail a test that leaves a child process (other than a module daemon's) or a /dev/shm file."""
    me = psutil.Process()
    before_children = {p.pid for p in me.children(recursive=True)}
    before_shm = shm_files()
    yield
    extra = []
    for p in me.children(recursive=True):
        if p.pid in before_children:
            continue
        try:
            if p.status() != psutil.STATUS_ZOMBIE and _not_module_daemon(p, before_children):
                extra.append(p)
        except psutil.NoSuchProcess:
            pass
    new_shm = shm_files() - before_shm
    assert not new_shm, f"test left files in /dev/shm: {sorted(new_shm)}"
    assert not extra, f"test left processes: {[(p.pid, p.cmdline()[:4]) for p in extra]}"


def _not_module_daemon(proc: psutil.Process, before: set[int]) -> bool:
    """A process under a daemon that existed before the test started is that daemon's business."""
    try:
        for parent in proc.parents():
            if parent.pid in before:
                return False
    except psutil.NoSuchProcess:
        return False
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Chaos, soak and long fuzz runs only when asked for with -m."""
    selected = config.getoption("-m") or ""
    for item in items:
        for mark in ("chaos", "soak", "fuzz", "cluster"):
            if item.get_closest_marker(mark) and mark not in selected:
                item.add_marker(pytest.mark.skip(reason=f"{mark} run: select with `-m {mark}` (see README)"))
        if item.get_closest_marker("gpu") and not _has_cuda():
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


def _has_cuda() -> bool:
    if not os.path.exists("/dev/nvidia0"):
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False
