"""Decision policies: what turns an agent's context into its next decision.

``LLMPolicy`` sends one constrained chat request per step to an LLM device, with
the run's priority, objective and deadline; ``ScriptedPolicy`` replays a list of
decisions (tests, and agents whose steps are fixed). Either way the agent checks
the decision against its schema before acting on it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from ..errors import CallTimeout
from .tools import ToolSpec

#: Tokens a step's reply may use (the decision schema's string limits keep replies well under it).
STEP_MAX_TOKENS = 384


@dataclass
class DecisionRequest:
    """Everything a policy may use to decide one step."""

    agent: str
    goal: str
    step: int
    messages: list[dict]
    schema: dict
    tools: dict[str, ToolSpec]
    #: The run's call options to forward: priority (its level) and timeout (seconds left); None where unset.
    options: dict = field(default_factory=dict)
    #: The run's step limit (``step`` counts from 1 up to it).
    max_steps: int = 1

    def restrict(self, *, final: bool) -> None:
        """Leave in the schema only the final answer (``final=True``) or only the tool calls: a policy's
        procedure for this step (a small model keeps to it). Nothing changes when no such form exists."""
        forms = self.schema.get("anyOf", [self.schema])
        kept = [f for f in forms if ("final" in f.get("properties", {})) == final]
        if kept:
            self.schema = kept[0] if len(kept) == 1 else {"anyOf": kept}


@dataclass
class Proposal:
    """A policy's answer: the decision (JSON text or a dict) and the tokens it cost (as the device counted them)."""

    reply: str | dict
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Policy:
    """Base class: ``decide`` one step. ``kernel`` is the agent's asyncio kernel handle."""

    async def decide(self, request: DecisionRequest, kernel: Any) -> Proposal:
        raise NotImplementedError


class LLMPolicy(Policy):
    """One chat request per step to the LLM device ``device``, constrained by the decision schema.

    The request is the device's ``complete`` stream, whose last item reports the prompt and
    completion tokens the device counted: a step's token counts are the model's, not an estimate.

    Args:
        device: the device actor's name.
        max_tokens: the reply's token budget.
        temperature: 0.0 is greedy (the default: a step should be reproducible).
    """

    def __init__(self, device: str = "llm", *, max_tokens: int = STEP_MAX_TOKENS, temperature: float = 0.0) -> None:
        self.device = device
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._ref: Any = None

    async def decide(self, request: DecisionRequest, kernel: Any) -> Proposal:
        if self._ref is None:
            self._ref = await kernel.lookup(self.device)
        options = {k: v for k, v in request.options.items() if v is not None}
        ref = self._ref.options(**options) if options else self._ref
        stream = ref.stream(
            "complete",
            messages=request.messages,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            json_schema=request.schema,
        )
        try:
            pieces, usage = await asyncio.wait_for(_read(stream), options.get("timeout"))
        except asyncio.TimeoutError:
            raise CallTimeout(f"{self.device} gave no complete decision within {options['timeout']:.1f} s") from None
        finally:
            stream.close()  # a cancelled or failed step frees its sequence on the device at once
        return Proposal("".join(pieces), int(usage.get("prompt_tokens", 0)), int(usage.get("tokens", 0)))


async def _read(stream: Any) -> tuple[list[str], dict]:
    """The text pieces of a ``complete`` stream and its closing usage map."""
    pieces: list[str] = []
    usage: dict = {}
    async for item in stream:
        if isinstance(item, dict):
            usage = item
        else:
            pieces.append(item)
    return pieces, usage


class ScriptedPolicy(Policy):
    """Replays ``script`` in every run: decision ``n`` (``{"thought", "tool", "args"}`` or
    ``{"thought", "final"}``) at step ``n``; past its end, the agent finishes with an empty answer."""

    def __init__(self, script: list[dict]) -> None:
        self.script = list(script)

    async def decide(self, request: DecisionRequest, kernel: Any) -> Proposal:
        if request.step > len(self.script):
            return Proposal({"thought": "the script has ended", "final": ""})
        return Proposal(self.script[request.step - 1])
