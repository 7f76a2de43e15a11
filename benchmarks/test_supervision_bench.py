"""Supervision benchmarks for pytest-benchmark: restart latency, kernel mutex vs multiprocessing.Lock.

Skipped in the default run (``--benchmark-skip``); ``make bench-pytest`` runs them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llmos_actors.bench_support import supervision as sb
from llmos_actors.testing import start_daemon


@pytest.fixture(scope="module")
def sup_kernel() -> Iterator:
    with start_daemon() as daemon:
        yield daemon.connect()


def test_restart_latency(benchmark, sup_kernel):
    bench = sb.RestartRound(sup_kernel)
    try:
        benchmark.pedantic(bench.round, setup=bench.setup, rounds=50, iterations=1)
    finally:
        bench.close()


def test_mutex_vs_multiprocessing_lock(benchmark, sup_kernel):
    result = benchmark.pedantic(sb.mutex_round_trips, args=(sup_kernel, 2.0), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["llmos_mutex_cycles_per_s_2proc"] > 0 and result["mp_lock_cycles_per_s_2proc"] > 0
