"""The LLM device's policy pieces alone: token scheduler (fake clock), block manager and prefix
cache, swap store spilling to disk."""

from __future__ import annotations

import math

import pytest

from llmos_actors.llm.blocks import BlockManager, OutOfBlocks
from llmos_actors.llm.scheduler import TokenScheduler
from llmos_actors.llm.sequence import RUNNING, SamplingParams, Sequence


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Budget:
    """A block budget by counting only (block size 4)."""

    def __init__(self, free):
        self.free = free

    def free_blocks(self):
        return self.free

    def blocks_for(self, seq, n):
        return max(0, math.ceil((seq.computed + n) / 4) - len(seq.blocks))

    def blocks_freed(self, seq):
        return len(seq.blocks)


def seq(i, level, prompt=4, clock=None):
    s = Sequence(
        id=i, tokens=list(range(prompt)), prompt_len=prompt, params=SamplingParams(), level=level, base_level=level
    )
    if clock is not None:
        s.arrived = clock.now + i * 1e-6
    return s


def run(sched, plan):
    """What the engine would do with a plan: blocks for fed tokens, tokens appended."""
    for s in plan.preempt:
        s.blocks.clear()
        s.computed = 0
    for s, n in plan.batch:
        s.computed += n
        while len(s.blocks) < math.ceil(s.computed / 4):
            s.blocks.append(0)
        if s.computed == len(s.tokens):
            s.tokens.append(1)
            sched.generated(s)


def test_admission_by_level_then_arrival():
    clock = Clock()
    sched = TokenScheduler(max_batch=2, max_step_tokens=64, clock=clock, aging=0)
    a, b, c = seq(1, 2, clock=clock), seq(2, 5, clock=clock), seq(3, 2, clock=clock)
    for s in (a, b, c):
        sched.add(s)
    plan = sched.plan(Budget(100))
    assert plan.admit == [b, a]
    assert {s.id for s, _ in plan.batch} == {1, 2}


def test_priority_7_preempts_lowest_running_at_full_batch_but_equals_do_not():
    clock = Clock()
    sched = TokenScheduler(max_batch=2, max_step_tokens=64, clock=clock, aging=0)
    low, mid = seq(1, 0, clock=clock), seq(2, 3, clock=clock)
    sched.add(low)
    sched.add(mid)
    run(sched, sched.plan(Budget(100)))
    same = seq(3, 3, clock=clock)
    sched.add(same)
    plan = sched.plan(Budget(100))
    assert plan.preempt == [low]  # level 3 outranks level 0 by more than one level
    run(sched, plan)
    urgent = seq(4, 7, clock=clock)
    sched.add(urgent)
    plan = sched.plan(Budget(100))
    assert urgent in plan.admit
    assert plan.preempt == [same]  # lowest level, then the latest arrival
    assert any(d["action"] == "preempt" and "outranked" in d["reason"] for d in sched.decisions)


def test_equal_levels_never_displace_each_other():
    clock = Clock()
    sched = TokenScheduler(max_batch=1, max_step_tokens=64, clock=clock, aging=0)
    first, second = seq(1, 4, clock=clock), seq(2, 4, clock=clock)
    sched.add(first)
    run(sched, sched.plan(Budget(100)))
    sched.add(second)
    for _ in range(5):
        plan = sched.plan(Budget(100))
        assert not plan.preempt and first.state == RUNNING
        run(sched, plan)


def test_aging_lifts_a_waiting_sequence_until_it_preempts():
    clock = Clock()
    sched = TokenScheduler(max_batch=1, max_step_tokens=64, clock=clock, aging=1.0, quantum=0)
    runner, waiter = seq(1, 2, clock=clock), seq(2, 0, clock=clock)
    sched.add(runner)
    run(sched, sched.plan(Budget(100)))
    sched.add(waiter)
    clock.now += 2.5  # effective 2.5: not more than one level above 2
    assert not sched.plan(Budget(100)).preempt
    clock.now += 1.0  # effective 3.5 > 2 + 1
    plan = sched.plan(Budget(100))
    assert plan.preempt == [runner] and plan.admit == [waiter]
    assert waiter.level == 3


def test_aging_alone_waits_for_the_runner_s_quantum():
    clock = Clock()
    sched = TokenScheduler(max_batch=1, max_step_tokens=64, clock=clock, aging=1.0, quantum=3)
    runner, waiter = seq(1, 4, clock=clock), seq(2, 4, clock=clock)
    sched.add(runner)
    run(sched, sched.plan(Budget(100)))
    sched.add(waiter)
    clock.now += 10  # far above by aging, but the runner has made 1 token of its 3-token slice
    plan = sched.plan(Budget(100))
    assert not plan.preempt
    run(sched, plan)
    run(sched, sched.plan(Budget(100)))  # 3 tokens now
    plan = sched.plan(Budget(100))
    assert plan.preempt == [runner] and plan.admit == [waiter]


def test_quantum_demotes_a_long_generation():
    clock = Clock()
    sched = TokenScheduler(max_batch=4, max_step_tokens=64, clock=clock, quantum=3)
    s = seq(1, 5, clock=clock)
    sched.add(s)
    for _ in range(7):
        run(sched, sched.plan(Budget(100)))
    assert s.level == 3
    assert [d["action"] for d in sched.decisions].count("demote") == 2


def test_decoders_go_first_and_prefill_is_chunked():
    clock = Clock()
    sched = TokenScheduler(max_batch=4, max_step_tokens=8, clock=clock)
    short = seq(1, 4, prompt=2, clock=clock)
    sched.add(short)
    run(sched, sched.plan(Budget(100)))
    long = seq(2, 5, prompt=40, clock=clock)  # above the decoder, but not by more than the margin
    sched.add(long)
    plan = sched.plan(Budget(100))
    fed = {s.id: n for s, n in plan.batch}
    assert fed == {1: 1, 2: 7}


def test_an_urgent_sequence_steps_with_the_decoders_only_until_the_held_prefills_age():
    clock = Clock()
    sched = TokenScheduler(max_batch=8, max_step_tokens=16, clock=clock)
    low = [seq(i, 0, prompt=2, clock=clock) for i in range(1, 4)]
    for s in low:
        sched.add(s)
    run(sched, sched.plan(Budget(100)))  # all three decode from now on
    late = seq(4, 0, prompt=12, clock=clock)  # a low prompt still prefilling when the urgent one comes
    sched.add(late)
    run(sched, sched.plan(Budget(100)))
    late.computed = 4  # (part of its prompt in the cache)
    urgent = seq(9, 7, prompt=20, clock=clock)
    sched.add(urgent)
    plan = sched.plan(Budget(100))
    fed = {s.id: n for s, n in plan.batch}
    assert fed == {1: 1, 2: 1, 3: 1, 9: 13}  # the decoders ride along; the low prefill sits out
    assert plan.preempt == [] and late in sched.running  # held, not preempted: it keeps its blocks
    run(sched, plan)
    plan = sched.plan(Budget(100))
    assert {s.id: n for s, n in plan.batch} == {1: 1, 2: 1, 3: 1, 9: 7}  # its last chunk: still held
    run(sched, plan)
    plan = sched.plan(Budget(100))
    # The urgent one decodes, still beside the decoders only: its every token stays cheap.
    assert {s.id: n for s, n in plan.batch} == {1: 1, 2: 1, 3: 1, 9: 1}
    run(sched, plan)
    clock.now += 6.5  # held longer than its aging allows (6 levels below, margin 1, 1 s a level)
    fed = {s.id: n for s, n in sched.plan(Budget(100)).batch}
    assert fed[4] == len(late.tokens) - 4 and fed[9] == 1  # aged: the held prefill joins, first among prefills
    actions = [d["action"] for d in sched.decisions]
    assert actions.count("hold") == 1 and actions.count("resume") == 1


def test_a_stream_of_urgent_prompts_cannot_freeze_a_low_prefill_and_fifo_holds_none():
    clock = Clock()
    sched = TokenScheduler(max_batch=4, max_step_tokens=8, clock=clock, aging=1.0)
    decoder = seq(1, 0, prompt=2, clock=clock)
    sched.add(decoder)
    run(sched, sched.plan(Budget(1000)))
    low = seq(2, 0, prompt=40, clock=clock)
    sched.add(low)
    first_fed = None
    for step in range(200):  # an urgent prompt prefilling at every step, a step each 0.1 s
        if not any(s.level == 7 and s.prefilling for s in sched.running):
            sched.add(seq(100 + step, 7, prompt=20, clock=clock))
        plan = sched.plan(Budget(1000))
        fed = {s.id: n for s, n in plan.batch}
        assert fed.get(1) == 1  # the decoder is never paused
        if 2 in fed and first_fed is None:
            first_fed = clock.now
        run(sched, plan)
        for s in list(sched.running):
            if s.level == 7 and not s.prefilling:
                sched.remove(s)  # one-token urgent answers
        clock.now += 0.1
    assert first_fed is not None and first_fed - 100.0 <= 7.0  # held at most ~6 s (7 levels, margin 1, 1 s a level)
    assert not low.prefilling  # and, owed, it went first until its prompt was in
    assert [d["action"] for d in sched.decisions].count("resume") == 1
    fifo = TokenScheduler(max_batch=4, max_step_tokens=8, clock=clock, fifo=True)
    a, b = seq(3, 0, prompt=2, clock=clock), seq(4, 7, prompt=12, clock=clock)
    fifo.add(a)
    run(fifo, fifo.plan(Budget(100)))
    fifo.add(b)
    assert {s.id for s, _ in fifo.plan(Budget(100)).batch} == {3, 4}


def test_memory_preemption_takes_the_lowest():
    clock = Clock()
    sched = TokenScheduler(max_batch=4, max_step_tokens=64, clock=clock)
    # Within the margin of each other, so neither holds the other's prefill back.
    hi, lo = seq(1, 2, prompt=4, clock=clock), seq(2, 1, prompt=4, clock=clock)
    sched.add(hi)
    sched.add(lo)
    run(sched, sched.plan(Budget(100)))  # both hold one full block and decode next
    plan = sched.plan(Budget(1))  # each needs a second block: only one is left
    assert plan.preempt == [lo]
    assert [s for s, _ in plan.batch] == [hi]


def test_block_manager_prefix_cache_lru():
    m = BlockManager(3)
    a, b = m.allocate(), m.allocate()
    m.file(a, 111)
    m.file(b, 222)
    m.release(a)
    m.release(b)
    assert m.available() == 3 and m.cached() == 2
    assert m.lookup(111) == a and m.hits == 1
    c = m.allocate()  # the free one first
    d = m.allocate()  # then the least recently released filed block (b)
    assert d == b and m.lookup(222) is None and m.evictions == 1
    with pytest.raises(OutOfBlocks):
        m.allocate()
    m.release_all([a, c, d])
    assert m.available() == 3


def test_swap_store_spills_oldest_to_disk_and_reads_back(tmp_path):
    torch = pytest.importorskip("torch")
    from llmos_actors.llm.swap import SwapStore

    store = SwapStore(
        limit_bytes=1000, alloc=lambda shape, dtype: torch.empty(shape, dtype=dtype), spill_dir=str(tmp_path)
    )
    one, two = torch.arange(200, dtype=torch.float32), torch.arange(200, dtype=torch.float32) * 2
    store.put(1, one)
    store.put(2, two)  # 1,600 bytes > 1,000: the oldest (1) goes to disk
    assert store.spills == 1 and len(list(tmp_path.iterdir())) == 1
    assert torch.equal(store.take(1), one) and torch.equal(store.take(2), two)
    assert not list(tmp_path.iterdir()) and store.resident_bytes == 0


class SwapBudget(Budget):
    """``Budget`` that also knows one swapped sequence's block count (what ``KVCache`` reports)."""

    def __init__(self, free, swapped):
        super().__init__(free)
        self.swapped = swapped

    def blocks_for(self, seq, n):
        if seq.swapped is None:
            return super().blocks_for(seq, n)
        return max(math.ceil((seq.computed + n) / 4), self.swapped)


def test_a_swapped_sequence_that_fits_alone_resumes_without_preempting_itself():
    clock = Clock()
    sched = TokenScheduler(max_batch=4, max_step_tokens=64, clock=clock)
    s = seq(1, 0, prompt=129, clock=clock)
    s.computed, s.swapped = 128, 1  # decoding; its 32 blocks are in the swap store
    sched.add(s)
    plan = sched.plan(SwapBudget(34, swapped=32))
    assert plan.preempt == [] and plan.admit == [s]
    assert plan.batch == [(s, 1)]


def test_a_priority_arrival_short_of_blocks_preempts_the_lowest_runner():
    clock = Clock()
    sched = TokenScheduler(max_batch=4, max_step_tokens=64, clock=clock, aging=0)
    low = seq(1, 0, prompt=120, clock=clock)
    sched.add(low)
    budget = Budget(34)
    while low.prefilling or low.computed < len(low.tokens) - 1:
        plan = sched.plan(budget)
        run(sched, plan)
    budget.free = 34 - len(low.blocks)  # 2 blocks left; the urgent prompt needs 6
    urgent = seq(2, 7, prompt=24, clock=clock)
    sched.add(urgent)
    plan = sched.plan(budget)
    assert plan.preempt == [low] and plan.admit == [urgent]
    assert plan.batch == [(urgent, 24)]


def test_nobody_is_preempted_for_an_arrival_that_cannot_fit_anyway():
    clock = Clock()
    sched = TokenScheduler(max_batch=4, max_step_tokens=64, clock=clock, aging=0)
    low = seq(1, 0, prompt=8, clock=clock)
    sched.add(low)
    run(sched, sched.plan(Budget(10)))  # holds 2 blocks
    huge = seq(2, 7, prompt=60, clock=clock)  # a first chunk of 15 blocks: more than all 10
    sched.add(huge)
    plan = sched.plan(Budget(8))
    assert plan.preempt == [] and plan.admit == []
    assert [s for s, _ in plan.batch] == [low]


def test_a_prefill_alone_takes_a_smaller_chunk_instead_of_preempting_itself():
    clock = Clock()
    sched = TokenScheduler(max_batch=4, max_step_tokens=64, clock=clock)
    s = seq(1, 0, prompt=40, clock=clock)
    sched.add(s)
    sched.running.append(sched.waiting.pop())
    s.state = RUNNING
    plan = sched.plan(Budget(5))  # 40 tokens need 10 blocks; 5 are left
    assert plan.preempt == []
    assert plan.batch == [(s, 20)]
