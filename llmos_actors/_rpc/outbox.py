"""What a connection has not yet handed to ZeroMQ: order, batching and the overflow policy.

Pure bookkeeping, no socket and no thread: the connection pushes messages, asks
for the next frames to send, pops what was sent, and asks ``on_full`` what to do
when the peer stops reading. Time comes from an injected ``clock``, so the policy
is tested on a fake clock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from .._wire import protocol as P
from ..errors import MailboxFull

#: Outgoing messages queued per connection before the overflow policy applies.
OUTBOX_LIMIT = 4 * P.BATCH_MAX_ITEMS

#: The priority of a message sent without one (the middle of 0..7).
DEFAULT_PRIO = 4

POLICIES = ("block", "raise", "drop")

_ARRAY2 = b"\x92"

#: ``(header, body, buffers, priority or None)``
Item = tuple


def _prio_of(item: Item) -> int:
    return DEFAULT_PRIO if item[3] is None else item[3]


class Outbox:
    """Messages waiting to leave, highest priority first, FIFO within a priority.

    Args:
        peer: a label for errors.
        policy: what happens to a new one-way message when ``limit`` messages wait:
            ``block`` (wait for room until the deadline), ``raise`` (``MailboxFull``)
            or ``drop`` (discard it, counted in ``dropped``).
        clock: seconds, monotonic (``time.monotonic``; tests pass a fake one).
    """

    __slots__ = ("clock", "dropped", "items", "limit", "peer", "policy", "stalled")

    def __init__(
        self,
        peer: str,
        policy: str = "block",
        *,
        limit: int = OUTBOX_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"overflow policy must be one of {POLICIES}, not {policy!r}")
        self.peer = peer
        self.policy = policy
        self.limit = limit
        self.clock = clock
        self.items: deque[Item] = deque()
        self.dropped = 0
        #: The peer stopped taking messages (the last flush left some here).
        self.stalled = False

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    @property
    def full(self) -> bool:
        return len(self.items) >= self.limit

    def push(self, item: Item) -> None:
        """Add a message. While the peer is ``stalled``, one of higher priority goes ahead of
        lower ones held back here; otherwise messages leave in the order they were sent (the
        actor's mailbox orders by priority, or keeps them FIFO if its policy says so)."""
        items = self.items
        prio = item[3]
        if prio is None or prio <= DEFAULT_PRIO or not items or not self.stalled:
            items.append(item)
            return
        index = len(items)
        while index and _prio_of(items[index - 1]) < prio:
            index -= 1
        items.insert(index, item)

    def on_full(self, deadline: float | None) -> bool:
        """The outbox is full and a one-way message wants in: the one overflow policy.

        Returns:
            True: wait for room and ask again (``block``, deadline not passed);
            False: the message is dropped (``drop``; counted).

        Raises:
            MailboxFull: policy ``raise``, or ``block`` and the deadline passed.
        """
        if self.policy == "drop":
            self.dropped += 1
            return False
        if self.policy == "raise":
            raise MailboxFull(f"{self.peer}'s mailbox is full (overflow policy 'raise')")
        if deadline is not None and self.clock() >= deadline:
            raise MailboxFull(f"{self.peer}'s mailbox stayed full until the deadline")
        return True

    def left(self, deadline: float | None) -> float | None:
        """Seconds until ``deadline`` (None: no deadline); never below 0."""
        return None if deadline is None else max(0.0, deadline - self.clock())

    def next_frames(self) -> tuple[list, int]:
        """The frames that send the oldest messages, and how many messages they carry.

        Small messages without buffers leave together as one batch: a msgpack array of
        ``[header, body]`` pairs, joined once (nothing is packed again); if every header
        is the same (tells to one method) it goes once, in the batch header.
        """
        items = self.items
        head, body, bufs, _ = items[0]
        max_item = P.BATCH_ITEM_MAX_BYTES
        if bufs or len(body) > max_item or len(items) == 1:
            return [head, body, *bufs], 1
        first = head
        same = True
        heads = []
        bodies = []
        count = size = 0
        max_items, max_bytes = P.BATCH_MAX_ITEMS, P.BATCH_MAX_BYTES
        for head, body, bufs, _ in items:
            if bufs or len(body) > max_item:
                break
            if same and head != first:
                same = False
            heads.append(head)
            bodies.append(body)
            count += 1
            size += len(head) + len(body)
            if count >= max_items or size >= max_bytes:
                break
        if count == 1:
            return [heads[0], bodies[0]], 1
        if same:
            return [P.batch_header(count, first), P.array_header(count) + b"".join(bodies)], count
        parts = []
        for head, body in zip(heads, bodies, strict=True):
            parts.append(_ARRAY2)
            parts.append(head)
            parts.append(body)
        return [P.batch_header(count), P.array_header(count) + b"".join(parts)], count

    def pop(self, count: int) -> None:
        """Forget the ``count`` oldest messages (they were sent)."""
        items = self.items
        for _ in range(count):
            items.popleft()

    def clear(self) -> None:
        self.items.clear()
