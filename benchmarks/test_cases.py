"""Every case of ``llmos bench``, ours and each peer, through pytest-benchmark.

The workloads are the ones ``llmos bench`` runs (``llmos_actors.bench``): a round
of ``ops`` operations is what pytest-benchmark times; opening the workload
(spawning actors, starting peer processes) and each round's ``setup`` stay
outside the timed region. ``extra_info["ops_per_round"]`` turns a round's time
into a rate.
"""

from __future__ import annotations

import pytest

from llmos_actors.bench.cases import Case
from llmos_actors.bench.context import BenchContext
from llmos_actors.bench.registry import CASES, PEERS

#: Rounds per benchmark: enough for a stable median, few enough for the slow peers.
ROUNDS = {"rate": 20, "latency": 10}

_MEASURES = {c.measure_key: c for c in CASES.values()}  # spawn p50/p99 share one series
# Ray's peers last: its cluster's background processes would run beside every test after it.
_PAIRS = sorted(((c, p) for c in _MEASURES.values() for p in c.peers), key=lambda pair: PEERS[pair[1]].group == "ray")


def _run(benchmark, ctx: BenchContext, case: Case, opener, group: str) -> None:
    benchmark.group = group
    with opener(ctx, **case.params) as workload:
        benchmark.extra_info.update(ops_per_round=workload.ops, unit=case.unit, note=workload.note)
        rounds = ROUNDS[case.kind]
        if workload.max_samples is not None:
            rounds = min(rounds, workload.max_samples)
        benchmark.pedantic(workload.round, setup=workload.setup, rounds=rounds, warmup_rounds=1)


@pytest.mark.parametrize("case", list(_MEASURES.values()), ids=list(_MEASURES))
def test_llmos(benchmark, bench_ctx: BenchContext, case: Case) -> None:
    reason = case.requires(bench_ctx)
    if reason:
        pytest.skip(reason)
    _run(benchmark, bench_ctx, case, case.open, case.measure_key)


@pytest.mark.parametrize(("case", "peer_id"), _PAIRS, ids=[f"{c.measure_key}-{p}" for c, p in _PAIRS])
def test_peer(benchmark, bench_ctx: BenchContext, case: Case, peer_id: str) -> None:
    reason = case.requires(bench_ctx)
    if reason:
        pytest.skip(f"llmos side not measurable: {reason}")
    peer = PEERS[peer_id]
    reason = peer.requires(bench_ctx)
    if reason:
        pytest.skip(reason)
    _run(benchmark, bench_ctx, case, peer.open, case.measure_key)
