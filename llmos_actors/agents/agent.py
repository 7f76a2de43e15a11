"""``llmos.Agent``: an actor that perceives, decides with an LLM device, acts through tools, and remembers.

Each agent is its own process (core, priority, mailbox, supervisor); its decisions
are batched with every other agent's on the device, at the priority of the call
that started the run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .._auditing import AUDIT_TOPIC
from .._callctx import current_call_options
from ..actor import Actor
from .decision import ARG_CHARS, FINAL_CHARS, THOUGHT_CHARS
from .permissions import DEFAULT_APPROVAL_TIMEOUT, audit
from .policy import STEP_MAX_TOKENS, Policy
from .runner import AgentCore

#: Largest value of a reply cap (characters) or of the step's token budget.
MAX_REPLY_LIMIT = 4096


class Agent(Actor):
    """Base class for agents.

    Class attributes (each but ``policy`` can also be given at spawn, as a keyword):
        llm: name of the LLM device actor (``"llm"``).
        instructions: the system prompt.
        topics: topic prefixes the agent perceives (messages enter its next decision).
        tools: grants: ``"actor.method"`` tools of other actors, ``"ask_agent"`` / ``"ask_agent:NAME"``.
            Its own ``@llmos.tool`` methods and ``remember``/``recall`` are always available.
        max_steps: steps a run may take (a run's ``max_steps=`` overrides).
        thought_chars, answer_chars, arg_chars: longest thought, final answer and string argument
            a decision may hold (the decision schema caps them: shorter caps, shorter steps).
        step_tokens: a step's reply budget in tokens (the ``LLMPolicy``'s ``max_tokens``).
        context_tokens: the context window; the oldest turns page out to long-term memory beyond it.
        memory: keep long-term memory (SQLite + FTS5 under the daemon's state directory).
        memory_namespace: its namespace there (default: the agent's name, so a restart finds it).
        memory_grants: other agents' namespaces ``recall`` may read.
        recall_limit: entries a recall (and the run's opening) brings back.
        approver: who approves ``confirm=True`` tools: ``"actor.method"``, ``"topic"`` or None (deny).
        approval_timeout: seconds before an unanswered approval counts as a refusal.
        tool_timeout: seconds one tool call may take.
        policy: a ``Policy`` instance deciding each step, or an ``LLMPolicy`` subclass (made with ``llm``);
            default ``LLMPolicy(llm)``.
        script: a list of decisions for a ``ScriptedPolicy`` (tests; spawn keyword).
        publish_steps: publish each step on ``agents.<name>.step``.

    Calls: ``run(goal, max_steps=None)`` (``stream("run", ...)`` yields the steps),
    ``observe(msg)`` (a tell), ``stats()``. The approver is fixed at spawn: only the identity that
    spawns an agent chooses who approves for it (a call cannot say who sent it).
    """

    llm: str = "llm"
    instructions: str = "You are a careful agent. Use a tool when you need a fact or an action; answer briefly."
    topics: tuple[str, ...] | list[str] = ()
    tools: tuple[str, ...] | list[str] = ()
    max_steps: int = 8
    thought_chars: int = THOUGHT_CHARS
    answer_chars: int = FINAL_CHARS
    arg_chars: int = ARG_CHARS
    step_tokens: int = STEP_MAX_TOKENS
    context_tokens: int = 2048
    memory: bool = True
    memory_namespace: str | None = None
    memory_grants: tuple[str, ...] | list[str] = ()
    recall_limit: int = 3
    approver: str | None = None
    approval_timeout: float = DEFAULT_APPROVAL_TIMEOUT
    tool_timeout: float = 30.0
    policy: Policy | type | None = None
    script: list[dict] | None = None
    publish_steps: bool = True

    _OVERRIDABLE = (
        "llm",
        "instructions",
        "topics",
        "tools",
        "max_steps",
        "thought_chars",
        "answer_chars",
        "arg_chars",
        "step_tokens",
        "context_tokens",
        "memory",
        "memory_namespace",
        "memory_grants",
        "recall_limit",
        "approver",
        "approval_timeout",
        "tool_timeout",
        "script",
        "publish_steps",
    )

    def __init__(self, **overrides: Any) -> None:
        unknown = set(overrides) - set(self._OVERRIDABLE)
        if unknown:
            raise TypeError(f"unknown agent settings: {', '.join(sorted(unknown))}")
        for key, value in overrides.items():
            if value is not None:
                setattr(self, key, value)
        for key in ("thought_chars", "answer_chars", "arg_chars", "step_tokens"):
            value = getattr(self, key)
            if type(value) is not int or not 1 <= value <= MAX_REPLY_LIMIT:
                raise ValueError(f"{key} must be an int from 1 to {MAX_REPLY_LIMIT}, not {value!r}")
        approver = self.approver
        if approver is not None and (not isinstance(approver, str) or (approver != "topic" and "." not in approver)):
            raise ValueError(f"approver must be 'actor.method', 'topic' or None, not {approver!r}")
        self._llmos_agent: AgentCore | None = None

    def on_start(self) -> None:
        """Opens long-term memory and subscribes to ``topics`` (subclasses: call ``super().on_start()``)."""
        self._agent_core()
        for prefix in self.topics:
            self.actor_subscribe(prefix, "_on_topic")
        if self.approver == "topic":
            self.actor_subscribe(AUDIT_TOPIC, "_on_audit")

    def on_stop(self) -> None:
        if self._llmos_agent is not None:
            self._llmos_agent.close()

    def _agent_core(self) -> AgentCore:
        if getattr(self, "_llmos_agent", None) is None:
            self._llmos_agent = AgentCore(self)
        return self._llmos_agent  # type: ignore[return-value]

    # ------------------------------------------------------------------ hooks
    def on_observation(self, observation: dict) -> str | None:
        """A topic message or a tell arrived (``{"source", "topic"?, "msg"}``): return a goal to start a run.

        The default starts nothing (the observation waits for the next run's next decision).
        May be ``async def``. A run started here publishes its result on ``agents.<name>.result``.
        """
        return None

    # ------------------------------------------------------------------ calls
    async def run(self, goal: str, max_steps: int | None = None) -> dict:
        """Pursue ``goal``: ``{"answer", "steps": [{"thought", "action", "args", "observation", "ms"}...],
        "tokens", "prompt_tokens", "completion_tokens", "stopped"}`` (tokens as the device counted them).
        The call's priority, objective and deadline flow into every request it makes."""
        core = self._agent_core()
        steps: list[dict] = []
        summary: dict = {}
        async for item in core.steps(goal, max_steps, core.call_options(current_call_options())):
            if "answer" in item:
                summary = item
            else:
                steps.append(item)
        return {
            "answer": summary.get("answer"),
            "steps": steps,
            "tokens": summary.get("tokens", 0),
            "prompt_tokens": summary.get("prompt_tokens", 0),
            "completion_tokens": summary.get("completion_tokens", 0),
            "stopped": summary.get("stopped"),
        }

    async def _stream_run(self, goal: str, max_steps: int | None = None) -> AsyncIterator[dict]:
        """``stream("run", goal)``: each step as it happens, then ``{"answer", "tokens", "stopped", "steps"}``."""
        core = self._agent_core()
        async for item in core.steps(goal, max_steps, core.call_options(current_call_options())):
            yield item

    async def observe(self, msg: Any, source: str = "tell") -> None:
        """Hand the agent an observation (usually with ``tell``)."""
        await self._agent_core().perceive({"source": str(source)[:64], "msg": msg})

    async def _on_topic(self, topic: str, msg: Any) -> None:
        await self._agent_core().perceive({"source": "topic", "topic": topic, "msg": msg})

    async def _on_audit(self, topic: str, msg: Any) -> None:
        """Approval answers come as audit events (the daemon names their sender)."""
        ignored = self._agent_core().approvals.on_audit(msg)
        if ignored is not None:
            await audit(self.actor_kernel_async, ignored)

    def stats(self) -> dict:
        """Runs, steps, tokens, tool calls, refusals, evicted turns, memory entries, queued observations."""
        return self._agent_core().stats()
