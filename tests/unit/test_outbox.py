"""The outbox's order, batching and overflow policy, on a manual clock (no socket, no thread)."""

from __future__ import annotations

import msgpack
import pytest

from llmos_actors._clock import ManualClock
from llmos_actors._rpc.liveness import Liveness
from llmos_actors._rpc.outbox import Outbox
from llmos_actors._wire import protocol as P
from llmos_actors.errors import CallTimeout, MailboxFull


def _item(n: int, prio: int | None = None, method: str = "m") -> tuple:
    return (P.request_header(P.TELL, 0, method), msgpack.packb([[n], {}]), [], prio)


def _numbers(box: Outbox) -> list[int]:
    return [msgpack.unpackb(body)[0][0] for _, body, _, _ in box.items]


def test_held_back_higher_priority_goes_ahead_and_equal_priorities_keep_their_order() -> None:
    box = Outbox("peer")
    box.stalled = True  # the peer stopped reading: what waits here is reordered
    for n, prio in [(1, None), (2, 1), (3, 7), (4, 7), (5, 6), (6, None)]:
        box.push(_item(n, prio))
    assert _numbers(box) == [3, 4, 5, 1, 2, 6]


def test_messages_leave_in_send_order_while_the_peer_reads() -> None:
    box = Outbox("peer")
    for n, prio in [(1, 1), (2, 7), (3, None)]:
        box.push(_item(n, prio))
    assert _numbers(box) == [1, 2, 3]  # a FIFO mailbox must see them as sent


def test_one_policy_for_a_full_outbox() -> None:
    clock = ManualClock()
    drop = Outbox("peer", "drop", limit=2, clock=clock)
    assert drop.on_full(None) is False and drop.on_full(None) is False
    assert drop.dropped == 2
    with pytest.raises(MailboxFull, match="overflow policy 'raise'"):
        Outbox("peer", "raise", limit=2, clock=clock).on_full(None)
    block = Outbox("peer", "block", limit=2, clock=clock)
    deadline = clock() + 30.0
    assert block.on_full(deadline) is True  # wait for room
    assert block.left(deadline) == 30.0
    clock.advance(29.9)
    assert block.on_full(deadline) is True
    clock.advance(0.1)
    with pytest.raises(MailboxFull, match="until the deadline"):
        block.on_full(deadline)
    assert block.left(deadline) == 0.0
    assert block.on_full(None) is True  # no deadline: wait as long as it takes
    with pytest.raises(ValueError):
        Outbox("peer", "sometimes")


def test_full_at_the_limit() -> None:
    box = Outbox("peer", limit=3)
    for n in range(3):
        assert not box.full
        box.push(_item(n))
    assert box.full
    box.pop(1)
    assert not box.full and len(box) == 2


def test_small_messages_leave_as_one_batch_and_the_rest_in_order() -> None:
    box = Outbox("peer")
    for n in range(P.BATCH_MAX_ITEMS + 5):
        box.push(_item(n))
    frames, count = box.next_frames()
    assert count == P.BATCH_MAX_ITEMS
    head = P.parse_header(frames[0])
    assert head["kind"] == P.BATCH and head["each"] is not None  # same header: sent once
    assert [args[0] for args, _ in msgpack.unpackb(frames[1])] == list(range(P.BATCH_MAX_ITEMS))
    box.pop(count)
    frames, count = box.next_frames()
    assert count == 5


def test_mixed_headers_batch_as_pairs_and_big_ones_go_alone() -> None:
    box = Outbox("peer")
    box.push(_item(1, method="a"))
    box.push(_item(2, method="b"))
    big = (P.request_header(P.TELL, 0, "big"), b"\xc4" + b"x" * (P.BATCH_ITEM_MAX_BYTES + 1), [], None)
    box.push(big)
    frames, count = box.next_frames()
    assert count == 2 and P.parse_header(frames[0]).get("each") is None
    assert [h["method"] for h, _ in msgpack.unpackb(frames[1])] == ["a", "b"]  # each pair: [header, body]
    box.pop(count)
    frames, count = box.next_frames()
    assert count == 1 and frames[1] is big[1]


def test_waiting_for_a_restart_gives_up_at_the_deadline() -> None:
    clock = ManualClock()
    down = [True]
    alive = Liveness("peer", lambda: down[0], clock)
    with pytest.raises(CallTimeout, match="still restarting"):
        alive.wait(clock() - 0.001)
    down[0] = False
    alive.wait(clock() - 0.001)  # back: no wait, whatever the deadline
