"""The page table's rules, without processes: allocation, holds, transfers, expiry, quarantine."""

from __future__ import annotations

import numpy as np
import pytest

from llmos_actors._pages.allocator import RunAllocator
from llmos_actors._pages.table import PageTable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_table(pages: int = 64, ttl: float = 10.0, quarantine: float = 5.0):
    clock = Clock()
    shared = np.zeros((pages, 2), dtype=np.uint64)
    return PageTable(shared, ttl=ttl, quarantine=quarantine, clock=clock), shared, clock


def test_allocator_first_fit_and_coalescing():
    a = RunAllocator(10)
    assert a.alloc(3) == 0 and a.alloc(3) == 3 and a.alloc(3) == 6
    assert a.alloc(2) is None and a.largest() == 1
    a.free(3, 3)
    assert a.alloc(2) == 3  # first fit reuses the lowest pages
    a.free(0, 3)
    a.free(3, 2)
    a.free(6, 3)
    assert a.runs() == [(0, 10)] and a.free_pages == 10
    with pytest.raises(ValueError):
        a.free(0, 1)  # double free
    with pytest.raises(ValueError):
        a.free(8, 5)  # outside


def test_alloc_writes_generation_and_length_and_free_clears_them():
    t, shared, _ = make_table()
    b = t.alloc(1, 4)
    assert tuple(shared[b.start]) == (b.gen, 4)
    assert t.release(1, b.start, b.gen) and b.start not in t.blocks
    assert tuple(shared[b.start]) == (0, 0)
    b2 = t.alloc(1, 4)
    assert b2.start == b.start and b2.gen != b.gen  # generations are never reused


def test_transfer_keeps_pages_after_sender_releases():
    t, _, _ = make_table()
    b = t.alloc(1, 2)
    assert t.send(1, 7, b.start, b.gen)
    t.release(1, b.start, b.gen)
    assert b.start in t.blocks  # the message in flight keeps it
    t.take(2, 1, 7, b.start, b.gen, adopt=True)
    assert b.holds == {2: 1} and b.tokens == 0
    t.release(2, b.start, b.gen)
    assert b.start not in t.blocks


def test_take_before_send_arrives():
    t, _, _ = make_table()
    b = t.alloc(1, 2)
    t.take(2, 1, 9, b.start, b.gen, adopt=True)  # the receiver's channel was faster
    t.send(1, 9, b.start, b.gen)  # late: discarded, it was taken
    assert b.tokens == 0 and not t.transfers
    t.release(1, b.start, b.gen)
    t.release(2, b.start, b.gen)
    assert not t.blocks


def test_drop_when_receiver_already_holds():
    t, _, _ = make_table()
    b = t.alloc(1, 2)
    t.send(1, 1, b.start, b.gen)
    t.take(1, 1, 1, b.start, b.gen, adopt=False)
    assert b.holds == {1: 1} and b.tokens == 0


def test_fanout_transfer_serves_many_until_it_expires():
    t, shared, clock = make_table(ttl=10, quarantine=5)
    b = t.alloc(1, 1)
    t.send(1, 3, b.start, b.gen, True)
    t.release(1, b.start, b.gen)
    for pid in (2, 3, 4):
        t.take(pid, 1, 3, b.start, b.gen, adopt=True)
        t.release(pid, b.start, b.gen)
    assert b.start in t.blocks  # the transfer is still alive for late subscribers
    clock.now += 11
    t.expire()
    assert b.quarantined is not None and shared[b.start, 0] == 0
    clock.now += 6
    t.expire()
    assert not t.blocks


def test_expired_transfer_quarantine_and_revival():
    t, shared, clock = make_table(ttl=10, quarantine=5)
    b = t.alloc(1, 1)
    t.send(1, 1, b.start, b.gen)
    t.release(1, b.start, b.gen)
    clock.now += 11
    t.expire()
    assert b.quarantined is not None and shared[b.start, 0] == 0  # new decoders refuse it
    assert t.alloc(9, 64) is None  # its pages are not reused yet
    t.take(2, 1, 1, b.start, b.gen, adopt=True)  # a receiver that validated in time
    assert b.quarantined is None and shared[b.start, 0] == b.gen and b.holds == {2: 1}
    assert t.counters["revived"] == 1


def test_process_exit_releases_its_holds_only():
    t, _, _ = make_table()
    mine = t.alloc(1, 1)
    shared_block = t.alloc(1, 1)
    t.hold(shared_block, 2)
    assert t.exited(1) == 1
    assert mine.start not in t.blocks and shared_block.start in t.blocks
    assert t.exited(2) == 1 and not t.blocks


def test_stale_and_forged_notes_are_ignored():
    t, _, _ = make_table()
    b = t.alloc(1, 1)
    assert not t.release(2, b.start, b.gen)  # not its hold
    assert not t.release(1, b.start, b.gen + 1)
    assert not t.send(1, 1, b.start + 5, b.gen)
    assert not t.take(2, 1, 1, "x", b.gen, adopt=True)
    assert b.holds == {1: 1}
