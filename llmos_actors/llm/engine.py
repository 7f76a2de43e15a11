"""The engine loop: one thread that steps every running sequence by one batched forward.

Each step: take in new and cancelled requests, ask the scheduler for a plan, carry out its
preemptions (swap or recompute, whichever the measured costs say is cheaper) and admissions
(swap-in, prefix-cache match), run one forward over every sequence in the batch (decode tokens
and prefill chunks together), sample, detokenize, and hand the step's text pieces to
``on_events`` in one call. Callers on other threads only ``submit`` and ``cancel``.

An arrival that outranks the whole batch in flight by more than the scheduler's margin does not
wait for that forward to end: the forward stops at its next layer and the step starts again with
the arrival admitted. The work thrown away is the part of one forward done before the arrival;
nobody loses a step for it, since the step begun again carries every decoder along with the
arrival's prefill (see the scheduler), and a step that holds the arrival cannot be stopped by
another arrival of its level, so stops never come two in a row for one level.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from .blocks import OutOfBlocks
from .forward import PagedForward, build_inputs
from .kvcache import KVCache
from .metrics import Meter
from .sampling import sample
from .scheduler import TOP, TokenScheduler
from .sequence import FINISHED, RUNNING, Sequence

log = logging.getLogger(__name__)

#: Event kinds handed to ``on_events`` as ``(sink, kind, data)``.
TEXT, DONE, ERROR = "text", "done", "error"

PREEMPT_MODES = ("auto", "swap", "recompute")


class Engine:
    """See the module docstring.

    Args:
        forward: the batched paged forward of the model.
        tokenizer: a Hugging Face tokenizer (for detokenization).
        kv: the paged cache.
        scheduler: the token scheduler.
        eos_ids: tokens that end a generation (unless a request ignores EOS).
        max_context: the model's context length in tokens.
        on_events: called from the engine thread once per step with the step's events.
        preempt: "auto" (cheaper by measured cost), "swap" or "recompute".
    """

    def __init__(
        self,
        forward: PagedForward,
        tokenizer: Any,
        kv: KVCache,
        scheduler: TokenScheduler,
        *,
        eos_ids: set[int],
        max_context: int,
        on_events: Callable[[list[tuple[Any, str, Any]]], None],
        preempt: str = "auto",
    ) -> None:
        if preempt not in PREEMPT_MODES:
            raise ValueError(f"preempt must be one of {PREEMPT_MODES}, not {preempt!r}")
        self.forward = forward
        self.tokenizer = tokenizer
        self.kv = kv
        self.scheduler = scheduler
        self.eos_ids = eos_ids
        self.max_context = max_context
        # A sequence ends ("length") where the context or the whole budget ends: one that
        # outgrew the budget could only preempt itself forever.
        self.max_held = min(max_context, kv.manager.num_blocks * kv.block_size)
        self.on_events = on_events
        self.preempt_mode = preempt
        self.device = kv.storage.device
        self.seqs: dict[int, Sequence] = {}
        self.meter = Meter()
        self.commands: queue.SimpleQueue = queue.SimpleQueue()
        self.wakeup = threading.Event()
        self.stopped = False
        self.thread: threading.Thread | None = None
        self.steps = 0
        self.last_batch = 0
        #: Seconds per prefill token, measured on prefill-heavy steps (a guess before the first).
        self.prefill_rate = 1e-3
        self._next_id = 0
        self._id_lock = threading.Lock()
        self.arrival_level = -1  # the highest level submitted since the step began taking commands
        self.batch_top = TOP  # the highest level in the forward running now
        self.interrupted = 0  # forwards abandoned for an urgent arrival

    # ------------------------------------------------------------------ other threads
    def new_id(self) -> int:
        with self._id_lock:
            self._next_id += 1
            return self._next_id

    def submit(self, seq: Sequence) -> None:
        self.commands.put(("add", seq))
        if seq.level > self.arrival_level:
            self.arrival_level = seq.level  # one store: read by the engine thread between layers
        self.wakeup.set()

    def cancel(self, seq_id: int) -> None:
        """Stop a sequence and free its blocks at the next step boundary."""
        self.commands.put(("cancel", seq_id))
        self.wakeup.set()

    def start(self, name: str = "llmos-llm-engine") -> None:
        self.thread = threading.Thread(target=self.run, name=name, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopped = True
        self.wakeup.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=10)

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        while not self.stopped:
            try:
                busy = self.step()
            except Exception as exc:  # never let the loop die: fail what was running
                log.exception("engine step failed")
                self._fail_running(exc)
                busy = True
            if not busy:
                self.wakeup.wait(0.5)
                self.wakeup.clear()

    def run_until_idle(self, max_steps: int = 100_000) -> None:
        """Step in the calling thread until no sequence is left (tests, benchmarks)."""
        for _ in range(max_steps):
            if not self.step():
                return
        raise RuntimeError("engine did not go idle")

    def _take_commands(self) -> None:
        while True:
            try:
                kind, arg = self.commands.get_nowait()
            except queue.Empty:
                return
            if kind == "add":
                self.seqs[arg.id] = arg
                self.scheduler.add(arg)
            elif kind == "cancel":
                seq = self.seqs.pop(arg, None)
                if seq is not None:
                    self.scheduler.remove(seq)
                    self.kv.forget(seq)
                    seq.state = FINISHED
                    seq.finish_reason = "cancelled"
                    self.scheduler.record("cancel", seq, "the caller went away or closed its stream")

    def step(self) -> bool:
        """One scheduling decision and one forward; False when there was nothing to do."""
        self.arrival_level = -1  # before taking: a later arrival is seen by this step's forward
        self._take_commands()
        sched = self.scheduler
        if not sched.running and not sched.waiting:
            self.last_batch = 0
            return False
        plan = sched.plan(self.kv)
        for seq in plan.preempt:
            self._preempt(seq)
        for seq in plan.admit:
            if seq.swapped is not None:
                self.kv.swap_in(seq)
            elif seq.computed == 0:
                self.kv.match_prefix(seq)
        entries, batch = [], []
        for seq, n in plan.batch:
            n = min(n, len(seq.tokens) - seq.computed)
            if n <= 0 or seq.state != RUNNING:
                continue
            try:
                self.kv.ensure(seq, n)
            except OutOfBlocks:  # the plan's estimate missed (shared blocks): retry it next step
                sched.running.remove(seq)
                self._preempt(seq)
                sched.add(seq)
                continue
            start = seq.computed
            entries.append((seq.tokens[start : start + n], start, seq.blocks, start + n == len(seq.tokens)))
            batch.append((seq, n))
        if not entries:
            self.last_batch = 0
            return bool(sched.running or sched.waiting)
        inputs = build_inputs(entries, self.kv.block_size, self.device)
        self.batch_top = max(seq.level for seq, _ in batch)
        began = time.perf_counter()
        abort = None if sched.fifo else self._outranked
        logits = self.forward(inputs, self.kv.storage, abort)
        took = time.perf_counter() - began
        if logits is None:  # an urgent arrival: begin again with it (nothing was counted as cached)
            self.interrupted += 1
            return True
        fed = int(inputs.tokens.shape[0])
        if fed >= 32:
            self.prefill_rate = 0.7 * self.prefill_rate + 0.3 * took / fed
        sampled = []
        for seq, n in batch:
            seq.computed += n
            self.kv.file_full_blocks(seq)
            if seq.computed == len(seq.tokens):
                sampled.append(seq)
        events: list[tuple[Any, str, Any]] = []
        now = time.monotonic()
        if sampled:
            for seq, token in zip(sampled, sample(logits, sampled), strict=False):
                self._append(seq, token, now, events)
        self.steps += 1
        self.last_batch = len(batch)
        self.meter.step(now, len(sampled))
        if events:
            self.on_events(events)
        return True

    def _outranked(self) -> bool:
        """Whether a request submitted since this step began outranks its whole batch (margin included)."""
        return self.arrival_level > self.batch_top + self.scheduler.margin

    # ------------------------------------------------------------------ per sequence
    def _preempt(self, seq: Sequence) -> None:
        if not seq.blocks:
            return
        mode = self.preempt_mode
        swap_cost = self.kv.swap.cost(len(seq.blocks) * self.kv.block_bytes)
        recompute_cost = seq.computed * self.prefill_rate
        if mode == "auto":
            mode = "swap" if swap_cost < recompute_cost else "recompute"
        if mode == "swap":
            self.kv.swap_out(seq)
        else:
            self.kv.drop(seq)
        self.scheduler.record(
            mode, seq, f"swap ~{swap_cost * 1e3:.2f} ms vs recompute ~{recompute_cost * 1e3:.2f} ms (measured rates)"
        )

    def _append(self, seq: Sequence, token: int, now: float, events: list) -> None:
        if seq.first_token_at is None:
            seq.first_token_at = now
            self.meter.ttft.observe(now - seq.arrived)
        else:
            self.meter.inter_token.observe(now - (seq.last_token_at or now))
        seq.last_token_at = now
        params = seq.params
        if token in self.eos_ids and not params.ignore_eos:
            self._finish(seq, "stop", events)
            return
        seq.tokens.append(token)
        self.scheduler.generated(seq)
        if seq.constraint is not None:
            try:
                seq.constraint.advance(token)
            except Exception as exc:  # this request's constraint broke: fail it alone
                self._finish(seq, "error", events, error=exc)
                return
        old = len(seq.text)
        text = self.tokenizer.decode(seq.out_ids, skip_special_tokens=True)
        seq.text = text
        for stop in params.stop:
            at = text.find(stop, max(0, old - len(stop)))
            if at >= 0:
                seq.text = text[:at]
                self._finish(seq, "stop", events)
                return
        if seq.constraint is not None and seq.constraint.is_finished():
            self._finish(seq, "stop", events)
        elif seq.generated >= params.max_tokens or len(seq.tokens) >= self.max_held:
            self._finish(seq, "length", events)
        else:
            hold = max((len(s) for s in params.stop), default=1) - 1
            end = len(text) - hold
            if text.endswith("\ufffd"):  # half a UTF-8 character: wait for the rest
                end = min(end, len(text) - 1)
            if end > seq.sent:
                events.append((seq.sink, TEXT, text[seq.sent : end]))
                seq.sent = end

    def _finish(self, seq: Sequence, reason: str, events: list, error: Exception | None = None) -> None:
        if len(seq.text) > seq.sent:
            events.append((seq.sink, TEXT, seq.text[seq.sent :]))
            seq.sent = len(seq.text)
        seq.finish_reason = reason
        seq.state = FINISHED
        self.scheduler.remove(seq)
        self.kv.forget(seq)
        self.seqs.pop(seq.id, None)
        if error is not None:
            events.append((seq.sink, ERROR, error))
            return
        events.append(
            (seq.sink, DONE, {"finish_reason": reason, "prompt_tokens": seq.prompt_len, "tokens": seq.generated})
        )

    def _fail_running(self, exc: Exception) -> None:
        events = []
        for seq in list(self.scheduler.running):
            self.scheduler.remove(seq)
            self.kv.forget(seq)
            self.seqs.pop(seq.id, None)
            seq.state = FINISHED
            events.append((seq.sink, ERROR, exc))
        if events:
            self.on_events(events)

    # ------------------------------------------------------------------ numbers
    def numbers(self) -> dict[str, Any]:
        sched = self.scheduler
        now = time.monotonic()
        return {
            "running": len(sched.running),
            "waiting": sum(1 for s in sched.waiting if not s.preemptions),
            "preempted": sum(1 for s in sched.waiting if s.preemptions),
            "batch_size": self.last_batch,
            "tokens_total": self.meter.tokens_total,
            "tokens_per_s": round(self.meter.tokens_per_s(now), 2),
            "preemptions": sched.preemptions,
            "steps": self.steps,
            "interrupted_steps": self.interrupted,
            "decisions": sched.recorded,
            **self.kv.numbers(),
        }


def torch_threads(cores: int) -> None:
    """Run the engine's torch work on as many threads as the actor has cores."""
    torch.set_num_threads(max(1, cores))
