"""``llmos.Agent``: an actor that perceives, decides with an LLM device, acts through tools, and remembers.

Each agent is its own process (core, priority, mailbox, supervisor); its decisions
are batched with every other agent's on the device, at the priority of the call
that started the run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .._callctx import current_call_options
from ..actor import Actor
from .permissions import DEFAULT_APPROVAL_TIMEOUT
from .policy import Policy
from .runner import AgentCore


class Agent(Actor):
    """Base class for agents.

    Class attributes (each but ``policy`` can also be given at spawn, as a keyword):
        llm: name of the LLM device actor (``"llm"``).
        instructions: the system prompt.
        topics: topic prefixes the agent perceives (messages enter its next decision).
        tools: grants: ``"actor.method"`` tools of other actors, ``"ask_agent"`` / ``"ask_agent:NAME"``.
            Its own ``@llmos.tool`` methods and ``remember``/``recall`` are always available.
        max_steps: steps a run may take (a run's ``max_steps=`` overrides).
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
    ``observe(msg)`` (a tell), ``stats()``, ``set_approver(spec)``.
    """

    llm: str = "llm"
    instructions: str = "You are a careful agent. Use a tool when you need a fact or an action; answer briefly."
    topics: tuple[str, ...] | list[str] = ()
    tools: tuple[str, ...] | list[str] = ()
    max_steps: int = 8
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
        self._llmos_agent: AgentCore | None = None

    def on_start(self) -> None:
        """Opens long-term memory and subscribes to ``topics`` (subclasses: call ``super().on_start()``)."""
        core = self._agent_core()
        for prefix in self.topics:
            self.actor_subscribe(prefix, "_on_topic")
        if self.approver == "topic":
            self.actor_subscribe(core.approvals.reply_prefix, "_on_approval")

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
        "tokens", "stopped"}``. The call's priority, objective and deadline flow into every request it makes."""
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

    def _on_approval(self, topic: str, msg: Any) -> None:
        self._agent_core().approvals.on_answer(topic, msg)

    def set_approver(self, approver: str | None, timeout: float | None = None) -> None:
        """Register who approves confirmed tools: ``"actor.method"``, ``"topic"``, or None (deny all)."""
        if approver is not None and approver != "topic" and "." not in str(approver):
            raise ValueError(f"approver must be 'actor.method', 'topic' or None, not {approver!r}")
        approvals = self._agent_core().approvals
        if approver == "topic" and approvals.approver != "topic":
            self.actor_subscribe(approvals.reply_prefix, "_on_approval")
        approvals.approver = approver
        if timeout is not None:
            approvals.timeout = float(timeout)

    def stats(self) -> dict:
        """Runs, steps, tokens, tool calls, refusals, evicted turns, memory entries, queued observations."""
        return self._agent_core().stats()
