"""The pytest-benchmark suite: the same workloads ``llmos bench`` measures, timed by pytest-benchmark.

Skipped in the default test run (``--benchmark-skip`` in pyproject); run with
``make bench-pytest``. One daemon for the session, as ``llmos bench`` starts one.
Ray peers run when Ray is importable by ``$LLMOS_BENCH_RAY_PYTHON`` (default: this
interpreter), else they are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmos_actors.bench.context import BenchContext
from llmos_actors.bench.ray_session import RaySession
from llmos_actors.bench.workload import FULL
from llmos_actors.cli.bench_run import MAX_MESSAGE_BYTES, PRELOAD
from llmos_actors.testing import start_daemon


@pytest.fixture(scope="session")
def bench_ctx() -> Iterator[BenchContext]:
    workdir = Path(tempfile.mkdtemp(prefix="llmos-bench-", dir="/tmp"))
    ray = RaySession(os.environ.get("LLMOS_BENCH_RAY_PYTHON"), workdir / "ray-driver.log")
    try:
        with start_daemon(max_message_bytes=MAX_MESSAGE_BYTES, preload=PRELOAD) as daemon:
            kernel = daemon.connect()
            yield BenchContext(kernel, kernel.config, FULL, workdir, status=kernel.status(), ray=ray)
    finally:
        ray.close()
        shutil.rmtree(workdir, ignore_errors=True)
