"""The multi-level feedback mailbox, with an injected clock (no waiting)."""

from __future__ import annotations

from llmos_actors._runtime.mailbox import FifoMailbox, Mailbox
from llmos_actors.scheduling import default_goal


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def drain(box: Mailbox) -> list:
    out = []
    while len(box):
        assert box.peek() == box.peek()
        out.append(box.pop())
    return out


def test_higher_levels_first_fifo_within_a_level():
    box = Mailbox(100, aging=0)
    for name, prio in [("a", 1), ("b", 5), ("c", 1), ("d", 7), ("e", 5), ("f", None)]:
        box.put(name, prio)
    assert drain(box) == ["d", "b", "e", "f", "a", "c"]  # None -> the default level 4


def test_aging_lifts_a_waiting_message():
    clock = Clock()
    box = Mailbox(100, aging=0.05, flood_share=0, clock=clock)
    box.put("old-low", 2)
    clock.now += 0.12  # 2.4 levels of credit: effective 4.4
    box.put("new-4", 4)
    assert box.pop() == "old-low"
    box.put("fresh-low", 2)
    assert box.pop() == "new-4"
    assert box.promotions == 1


def test_an_older_message_always_beats_a_younger_one_of_its_level_or_below():
    clock = Clock()
    box = Mailbox(100, aging=0.05, flood_share=0, clock=clock)
    box.put("first", 4)
    clock.now += 1.0
    box.put("second", 3)
    clock.now += 10.0  # both aged a lot; the older higher one still goes first
    assert drain(box) == ["first", "second"]


def test_flooding_sender_is_demoted_and_keeps_its_order():
    box = Mailbox(40, aging=0, flood_share=0.25)  # 10 queued messages is a flood
    for i in range(20):
        box.put(("flood", i), 4, b"F")
    box.put(("polite", 0), 4, b"P")
    order = drain(box)
    flood = [i for who, i in order if who == "flood"]
    assert flood == list(range(20))  # never reordered among themselves
    assert order.index(("polite", 0)) < order.index(("flood", 10))  # the flood's tail waits behind others
    assert box.demotions == 10


def test_demotion_ends_once_the_backlog_drains():
    box = Mailbox(8, aging=0, flood_share=0.25)  # limit 2
    for i in range(4):
        box.put(i, 4, b"S")
    assert box.snapshot()["levels"][3] == 2
    drain(box)
    assert box.put("again", 4, b"S") == 4


def test_remove_and_bounds():
    box = Mailbox(4, aging=0)
    for i in range(4):
        box.put(i, i % 2 * 7, b"x")
    assert box.full and not box.low
    assert sorted(box.remove(lambda e: e % 2 == 0)) == [0, 2]
    assert len(box) == 2 and box.low
    assert drain(box) == [1, 3]


def test_out_of_range_priorities_are_clamped():
    box = Mailbox(10, aging=0)
    assert box.put("hi", 99) == 7
    assert box.put("lo", -5) == 0


def test_fifo_mailbox_ignores_priorities():
    box = FifoMailbox(10, aging=0)
    for name, prio in [("a", 0), ("b", 7), ("c", 3)]:
        box.put(name, prio, b"s")
    assert drain(box) == ["a", "b", "c"]


def test_default_goal():
    assert default_goal(None, None, 4) == 4
    assert default_goal(6.4, None, 1) == 6
    assert default_goal(99, None, 4) == 7 and default_goal(-3, None, 4) == 0
    assert default_goal(None, 0.01, 3) == 5  # urgent deadline
    assert default_goal(None, -1.0, 0) == 7  # expired: looked at (and dropped) first
    assert default_goal(None, 10.0, 2) == 2
