"""The token-level scheduler: which sequences run this step, how many tokens each, who is preempted.

It never touches tensors (vLLM keeps scheduling apart from execution and memory the same way):
it reads the sequences' levels and the block budget and returns a ``Plan`` the engine carries out.

Rules, the mailboxes' MLFQ at the granularity of a token:

- Levels 0 (lowest) .. 7. A waiting sequence's *effective* level is ``level + waited / aging``,
  so nothing starves; it is admitted at that level (rounded down, at most 7).
- A running sequence sinks one level per ``quantum`` tokens it generates (a long generation
  yields to newcomers); the aging while it waits after a preemption lifts it back.
- Admission: by effective level (then arrival), while the batch has room (``max_batch``) and the
  KV budget holds its next chunk.
- Priority preemption: when the batch is full or the budget is short of the blocks of its first
  chunk and the best waiting sequence's level exceeds the lowest running ones' by more than
  ``margin``, the lowest are preempted until it fits (so a priority-7 arrival displaces a
  priority-0 generation at the next step; equals never displace each other); nobody is
  preempted for a waiter that would not fit even then. A waiter that outranks a runner only by
  aging displaces it once it has made a quantum of tokens since its admission: time slices,
  never thrashing.
- Memory preemption: a running sequence that needs a block when none is left preempts the lowest
  running sequence; if it is the lowest, a prefill takes a smaller chunk that fits, else it
  preempts itself, but never when it runs alone (that frees nothing it could use: a sequence
  that fits the budget alone always makes progress). An admission's blocks are counted once.
- Token budget per step (``max_step_tokens``): every decoding sequence gets its one token first;
  prefills take the rest in chunks, so a long prompt never stalls the decoders of its own rank.
- Urgent sequence: one that outranks a running prefill by more than ``margin`` holds it back (the
  prefill sits the step out, keeping its blocks), while the urgent one prefills and while it
  decodes, so each urgent token costs its own work plus one decode token per running sequence,
  never the others' prefill chunks (an urgent agent's answer is many tokens, not one). Decoders
  are never held back: on a CPU or a GPU their tokens cost little beside a prefill (the weights
  are read once for the whole step), so nobody is paused for an urgent request. A held prefill
  ages like a waiting sequence (a level per ``aging`` seconds held) and joins once it comes
  within the margin: a stream of urgent prompts cannot freeze it.

Every preemption, admission and demotion is recorded with its reason (``decisions``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .sequence import RUNNING, WAITING, Sequence

TOP = 7


class BlockBudget(Protocol):
    """What the scheduler needs to know of the KV cache."""

    def free_blocks(self) -> int: ...

    def blocks_for(self, seq: Sequence, new_tokens: int) -> int:
        """Blocks ``seq`` must be given to hold ``new_tokens`` more tokens (counting a swapped
        sequence's own blocks and, for a fresh one, what the prefix cache already holds)."""
        ...

    def blocks_freed(self, seq: Sequence) -> int:
        """Blocks that preempting ``seq`` gives back to the budget."""
        ...


@dataclass
class Plan:
    """One step: preempt these, admit those, then run ``batch`` as ``(sequence, tokens to feed)``."""

    preempt: list[Sequence] = field(default_factory=list)
    admit: list[Sequence] = field(default_factory=list)
    batch: list[tuple[Sequence, int]] = field(default_factory=list)


class TokenScheduler:
    """See the module docstring.

    Args:
        max_batch: sequences in one forward at most.
        max_step_tokens: tokens in one forward at most (decode tokens + prefill chunks).
        aging: seconds a waiting sequence needs to climb one level (0: no aging).
        quantum: tokens a running sequence generates before it sinks a level (0: never).
        margin: levels by which a waiting sequence must outrank a running one to preempt it.
        fifo: one level, arrival order, no priority preemption (for comparison).
        clock: monotonic seconds (tests inject one).
    """

    def __init__(
        self,
        *,
        max_batch: int = 16,
        max_step_tokens: int = 256,
        aging: float = 1.0,
        quantum: int = 64,
        margin: float = 1.0,
        fifo: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch < 1 or max_step_tokens < max_batch:
            raise ValueError("max_batch must be >= 1 and max_step_tokens >= max_batch")
        self.max_batch = max_batch
        self.max_step_tokens = max_step_tokens
        self.aging = aging
        self.quantum = quantum
        self.margin = margin
        self.fifo = fifo
        self.clock = clock
        self.waiting: list[Sequence] = []
        self.running: list[Sequence] = []
        self.decisions: deque[dict] = deque(maxlen=200)
        self.recorded = 0  # decisions ever made (``decisions`` keeps the latest)
        self.preemptions = 0
        self.owed_ids: set[int] = set()  # held prefills aged enough to go first until theirs ends

    # ------------------------------------------------------------------ queues
    def add(self, seq: Sequence) -> None:
        seq.state = WAITING
        seq.since = self.clock()
        self.waiting.append(seq)

    def remove(self, seq: Sequence) -> None:
        """Forget a finished or cancelled sequence (wherever it is)."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)

    def effective(self, seq: Sequence, now: float) -> float:
        if self.fifo:
            return 0.0
        if seq.state == WAITING and self.aging > 0:
            return seq.level + (now - seq.since) / self.aging
        return float(seq.level)

    def record(self, action: str, seq: Sequence, reason: str) -> None:
        self.decisions.append(
            {"time": time.time(), "action": action, "seq": seq.id, "level": seq.level, "reason": reason}
        )
        self.recorded += 1

    def recent(self, last: int) -> list[dict]:
        """The latest ``last`` decisions, oldest first (safe beside the engine thread's appends)."""
        for _ in range(5):
            try:
                return list(self.decisions)[-last:] if last > 0 else []
            except RuntimeError:  # the engine thread appended meanwhile
                continue
        return []

    def generated(self, seq: Sequence) -> None:
        """``seq`` made one token: MLFQ feedback (one level down per quantum)."""
        seq.quantum_used += 1
        seq.run_tokens += 1
        if self.quantum and seq.quantum_used >= self.quantum and not self.fifo:
            seq.quantum_used = 0
            if seq.level > 0:
                seq.level -= 1
                self.record("demote", seq, f"used a quantum of {self.quantum} tokens")

    # ------------------------------------------------------------------ the plan
    def plan(self, kv: BlockBudget) -> Plan:
        now = self.clock()
        plan = Plan()
        free = kv.free_blocks()
        running = self.running
        waiting = sorted(self.waiting, key=lambda s: (-self.effective(s, now), s.arrived))

        # Priority preemption: the best waiter against the lowest runners, for the blocks of its first
        # chunk (what admission will ask); nobody is displaced for a waiter that would not fit anyway.
        budget = self.max_step_tokens - sum(1 for s in running if not s.prefilling)
        if waiting and not self.fifo:
            cand = waiting[0]
            need = kv.blocks_for(cand, self._first_chunk(cand, budget))
            if len(running) >= self.max_batch or need > free:  # no room for it without displacing anyone
                for victim in self._victims_for(cand, need, free, kv, now):
                    free += kv.blocks_freed(victim)
                    self._preempt(victim, plan, f"outranked by sequence {cand.id} (level {cand.level})", now)

        # Admission by effective level, then arrival.
        reserved: dict[int, int] = {}  # blocks held back for this step's admissions, until they are fed
        for cand in waiting:
            if cand in plan.preempt:
                continue
            if len(running) >= self.max_batch:
                break
            need = kv.blocks_for(cand, self._first_chunk(cand, budget))
            if need > free:
                break  # keep the order: a big request is not overtaken forever by small ones
            free -= need
            reserved[cand.id] = need
            if not self.fifo:
                cand.level = min(TOP, int(self.effective(cand, now)))
            self.waiting.remove(cand)
            cand.state = RUNNING
            cand.since = now
            cand.run_tokens = 0
            running.append(cand)
            plan.admit.append(cand)
            self.record("admit", cand, f"waited {now - cand.arrived:.3f} s")

        # Tokens this step: decoders first, then prefill chunks by level, less those an urgent prefill holds back.
        budget = self.max_step_tokens
        needs: dict[int, int] = {}
        held, owed = self._holds(now)
        order = sorted(running, key=lambda s: (s.prefilling, s not in owed, -s.level, s.arrived))
        for seq in order:
            if seq.state != RUNNING or seq in held:
                continue  # preempted below for memory, or sitting this step out
            n = len(seq.tokens) - seq.computed
            if seq.prefilling:
                n = min(n, budget)
                if n <= 0:
                    continue
            free += reserved.pop(seq.id, 0)  # an admission's blocks are counted once, here
            need = kv.blocks_for(seq, n)
            while need > free:
                victim = self._lowest([s for s in running if s is not seq], now)
                if victim is None or victim.level > seq.level:
                    n = self._fitting(kv, seq, n, free)
                    if n:  # a prefill takes a smaller chunk rather than give up its place
                        need = kv.blocks_for(seq, n)
                        break
                    if victim is None:
                        break  # alone: preempting itself frees nothing it could then use
                    victim = seq
                free += kv.blocks_freed(victim) + needs.pop(victim.id, 0) + reserved.pop(victim.id, 0)
                self._preempt(victim, plan, "KV budget full", now)
                plan.batch = [(s, k) for s, k in plan.batch if s is not victim]
                if victim is seq:
                    break
            if seq.state != RUNNING or need > free:
                continue
            free -= need
            needs[seq.id] = need
            budget -= n
            plan.batch.append((seq, n))
        return plan

    def _holds(self, now: float) -> tuple[list[Sequence], list[Sequence]]:
        """``(held, owed)``: the running prefills an urgent sequence (prefilling or decoding)
        outranks by more than ``margin`` sit this step out (each hold recorded once); those held
        long enough to age within the margin go first among this step's prefills until theirs
        ends, so the budget the urgent ones use cannot keep them out (each hold and each such
        release recorded once)."""
        live = [s for s in self.running if s.state == RUNNING]
        prefills = [s for s in live if s.prefilling]
        top = max((s.level for s in live), default=-1)
        held: list[Sequence] = []
        owed: list[Sequence] = []
        for seq in prefills:
            if self.fifo or self.aging <= 0 or top <= seq.level + self.margin:
                seq.held_since = None  # nothing outranks it now: a later hold starts afresh
                continue
            if seq.held_since is None:
                seq.held_since = now
                self.record("hold", seq, f"a level-{top} sequence runs first; the decoders keep stepping")
            waited = now - seq.held_since
            if top > seq.level + waited / self.aging + self.margin:
                held.append(seq)
                continue
            if seq.id not in self.owed_ids:
                self.owed_ids.add(seq.id)
                self.record("resume", seq, f"aged {waited:.3f} s while held: its prefill goes first until it ends")
            owed.append(seq)
        self.owed_ids.intersection_update(s.id for s in prefills if s.held_since is not None)
        return held, owed

    def _first_chunk(self, seq: Sequence, budget: int) -> int:
        """Tokens ``seq`` is fed at its admission (a swapped one first gets all its blocks back)."""
        return min(len(seq.tokens) - seq.computed, max(1, budget)) if seq.swapped is None else 1

    def _victims_for(self, cand: Sequence, need: int, free: int, kv: BlockBudget, now: float) -> list[Sequence]:
        """The lowest runners ``cand`` outranks whose preemption makes room for it (batch slot and
        ``need`` blocks); none when even all of them would not."""
        outranked = sorted(
            (s for s in self.running if s.state == RUNNING and self._outranks(cand, s, now)),
            key=lambda s: (s.level, -s.arrived),
        )
        victims: list[Sequence] = []
        for victim in outranked:
            victims.append(victim)
            free += kv.blocks_freed(victim)
            if len(self.running) - len(victims) < self.max_batch and need <= free:
                return victims
        return []

    @staticmethod
    def _fitting(kv: BlockBudget, seq: Sequence, n: int, free: int) -> int:
        """The largest prefill chunk of at most ``n`` tokens whose blocks fit in ``free`` (0: none)."""
        if not seq.prefilling:
            return 0
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if kv.blocks_for(seq, mid) <= free:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _outranks(self, cand: Sequence, victim: Sequence, now: float) -> bool:
        bar = victim.level + self.margin
        if cand.level > bar:
            return True  # by its own level: at once
        return self.effective(cand, now) > bar and victim.run_tokens >= max(1, self.quantum)

    def _lowest(self, running: list[Sequence], now: float) -> Sequence | None:
        """The running sequence to preempt first: lowest level, then latest arrival."""
        live = [s for s in running if s.state == RUNNING]
        if not live:
            return None
        return min(live, key=lambda s: (s.level, -s.arrived))

    def _preempt(self, seq: Sequence, plan: Plan, reason: str, now: float) -> None:
        self.running.remove(seq)
        seq.state = WAITING
        seq.since = now
        seq.preemptions += 1
        seq.held_since = None
        self.waiting.append(seq)
        plan.preempt.append(seq)
        if seq in plan.admit:
            plan.admit.remove(seq)
        self.preemptions += 1
        self.record("preempt", seq, reason)
