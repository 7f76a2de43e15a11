"""The agent's loop: perceive, decide, act, until a final answer, ``max_steps`` or the deadline.

One ``AgentCore`` per agent process holds what outlives a run (long-term memory,
the observation queue, the toolbox, the policy); each run builds its context
from the instructions, the goal, what memory recalls about it, and its turns.
Runs of one agent take turns (one thread of thought); agents run side by side.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from .builtin_tools import ask_agent, builtin_spec, recall, remember
from .context import ShortTermMemory, Turn, estimate_tokens
from .decision import Decision, DecisionError, NotGranted, decision_schema, parse_decision
from .memory import LongTermMemory, memory_dir
from .permissions import Approvals, Grants
from .policy import DecisionRequest, LLMPolicy, Policy, ScriptedPolicy
from .toolbox import Toolbox, render
from .tools import ToolSpec

log = logging.getLogger(__name__)

#: Observations (topic messages, tells) waiting for the next decision; the oldest go first.
OBSERVATION_QUEUE = 256
#: Longest goal accepted (characters) and most steps a run may ask for.
MAX_GOAL_CHARS = 4000
MAX_STEPS_LIMIT = 100
#: Seconds a run without a deadline may take in all.
DEFAULT_RUN_TIMEOUT = 600.0


class AgentCore:
    """What one agent process keeps between runs. ``agent`` is the ``Agent`` instance."""

    def __init__(self, agent: Any) -> None:
        runtime = agent._llmos_runtime
        self.agent = agent
        self.name: str = agent.actor_name
        self.kernel = agent.actor_kernel_async
        self.default_priority = runtime.spec.get("priority")
        self.namespace = agent.memory_namespace or self.name
        self.memory_root = memory_dir(runtime.config.state_dir)
        self.longterm = LongTermMemory(self.memory_root, self.namespace) if agent.memory else None
        self._readers: dict[str, LongTermMemory] = {}
        self.grants = Grants.parse(agent.tools)
        owner = runtime.spec.get("owner") or "daemon"
        self.approvals = Approvals(self.name, agent.approver, agent.approval_timeout, owner)
        policy = agent.policy
        if isinstance(policy, type):  # an LLMPolicy subclass: made for this agent's device
            policy = policy(agent.llm, max_tokens=agent.step_tokens)
        self.policy: Policy = policy or (
            ScriptedPolicy(agent.script)
            if agent.script is not None
            else LLMPolicy(agent.llm, max_tokens=agent.step_tokens)
        )
        self.observations: deque[dict] = deque(maxlen=OBSERVATION_QUEUE)
        self.lock = asyncio.Lock()
        self.background: set[asyncio.Task] = set()
        self.counters = {"runs": 0, "steps": 0, "tokens": 0, "evicted": 0, "observations": 0}
        self.stm: ShortTermMemory | None = None
        self.toolbox = Toolbox(
            self.name,
            self.kernel,
            (type(agent), self.kernel.ref(runtime.address)),
            self.grants,
            self.approvals,
            self._builtins(),
        )

    # ------------------------------------------------------------------ built-in tools
    def _builtins(self) -> dict[str, tuple[ToolSpec, Any]]:
        found: dict[str, tuple[ToolSpec, Any]] = {}
        if self.longterm is not None:
            namespaces = [self.namespace, *self.agent.memory_grants]
            found["remember"] = (builtin_spec(remember), self._remember)
            choices = {"namespace": ["", *namespaces]} if len(namespaces) > 1 else {"namespace": [""]}
            found["recall"] = (builtin_spec(recall, choices), self._recall)
        if self.grants.ask_agent is not None:
            choices = {"name": sorted(self.grants.ask_agent)} if self.grants.ask_agent else None
            found["ask_agent"] = (builtin_spec(ask_agent, choices), self._ask_agent)
        return found

    async def _remember(self, args: dict, options: dict) -> str:
        assert self.longterm is not None
        return f"remembered (note {self.longterm.add(args['text'], 'note')})"

    async def _recall(self, args: dict, options: dict) -> Any:
        namespace = args.get("namespace") or self.namespace
        if namespace == self.namespace:
            memory = self.longterm
        elif namespace in self.agent.memory_grants:
            memory = self._readers.get(namespace)
            if memory is None:
                memory = self._readers[namespace] = LongTermMemory(self.memory_root, namespace, readonly=True)
        else:
            raise PermissionError(f"reading the memory of {namespace!r} is not granted")
        if self.stm is not None:
            self.stm.touch(args["query"])
        hits = memory.search(args["query"], self.agent.recall_limit) if memory is not None else []
        return [h["text"] for h in hits] or "nothing found"

    async def _ask_agent(self, args: dict, options: dict) -> Any:
        if args["name"] == self.name:
            raise ValueError("an agent cannot ask itself")
        ref = await self.kernel.lookup(args["name"])
        opts = {k: v for k, v in options.items() if v is not None}
        result = await ref.options(**opts).call("run", args["goal"])
        return result.get("answer") if isinstance(result, dict) else result

    def _evict(self, turn: Turn) -> None:
        self.counters["evicted"] += 1
        if self.longterm is not None:
            self.longterm.add(f"[{turn.role}] {turn.content}", "turn")

    # ------------------------------------------------------------------ perceive
    async def perceive(self, observation: dict) -> None:
        """Queue an observation for the next decision; the reactive hook may start a run."""
        self.counters["observations"] += 1
        self.observations.append(observation)
        goal = self.agent.on_observation(observation)
        if asyncio.iscoroutine(goal):
            goal = await goal
        if isinstance(goal, str) and goal:
            task = asyncio.get_running_loop().create_task(self._reactive_run(goal))
            self.background.add(task)
            task.add_done_callback(self.background.discard)

    async def _reactive_run(self, goal: str) -> None:
        result: dict = {}
        try:
            async for item in self.steps(goal, None, self.call_options({})):
                result = item
        except Exception as exc:
            log.exception("reactive run for %r failed", goal)
            result = {"answer": None, "error": f"{type(exc).__name__}: {exc}"}
        self.kernel.publish(f"agents.{self.name}.result", {"agent": self.name, "goal": goal, **result})

    def call_options(self, options: dict) -> dict:
        """The options a run forwards: its caller's, with the agent's spawn priority as the default."""
        out = dict(options)
        if out.get("priority") is None:
            out["priority"] = self.default_priority
        return out

    # ------------------------------------------------------------------ the loop
    def _system_prompt(self, tools: dict[str, ToolSpec]) -> str:
        lines = [
            self.agent.instructions.strip(),
            "",
            "Work step by step. Each step, reply with one JSON object: "
            '{"thought": "...", "tool": "<name>", "args": {...}} to use a tool, or '
            '{"thought": "...", "final": "<answer>"} once the goal is reached.',
            "Tools:",
        ]
        for spec in tools.values():
            props = spec.parameters.get("properties", {})
            params = ", ".join(f"{k}: {_type_text(v)}" for k, v in props.items())
            note = " (needs approval)" if spec.confirm else ""
            lines.append(f"- {spec.name}({params}): {spec.description}{note}")
            lines += [f"    {k}: {v['description']}" for k, v in props.items() if v.get("description")]
        return "\n".join(lines)

    def _opening(self, goal: str) -> str:
        text = f"Goal: {goal}"
        if self.longterm is not None and self.agent.recall_limit > 0:
            hits = self.longterm.search(goal, self.agent.recall_limit)
            if hits:
                text += "\nFrom memory:\n" + "\n".join(f"- {render(h['text'], 300)}" for h in hits)
        return text

    def _drain_observations(self, stm: ShortTermMemory) -> None:
        while self.observations:
            obs = self.observations.popleft()
            source = obs.get("topic") or obs.get("source", "tell")
            stm.add("user", f"Observation from {source}: {render(obs.get('msg'), 300)}")

    async def steps(self, goal: Any, max_steps: Any, options: dict) -> AsyncIterator[dict]:
        """Run the loop for ``goal``: yields each step, then ``{"answer", "tokens", "stopped", "steps"}``."""
        if not isinstance(goal, str) or not goal.strip():
            raise ValueError("goal must be a non-empty string")
        if len(goal) > MAX_GOAL_CHARS:
            raise ValueError(f"goal is longer than {MAX_GOAL_CHARS} characters")
        limit = self.agent.max_steps if max_steps is None else max_steps
        if type(limit) is not int or not 1 <= limit <= MAX_STEPS_LIMIT:
            raise ValueError(f"max_steps must be an int from 1 to {MAX_STEPS_LIMIT}, not {limit!r}")
        timeout = options.get("timeout")
        deadline = time.monotonic() + (timeout if timeout else DEFAULT_RUN_TIMEOUT)
        async with self.lock:
            self.counters["runs"] += 1
            tools, missing = await self.toolbox.resolve(options.get("priority"))
            agent = self.agent
            schema = decision_schema(
                list(tools.values()),
                thought_chars=agent.thought_chars,
                answer_chars=agent.answer_chars,
                arg_chars=agent.arg_chars,
            )
            system = {"role": "system", "content": self._system_prompt(tools)}
            opening = {"role": "user", "content": self._opening(goal)}
            fixed = estimate_tokens(system["content"]) + estimate_tokens(opening["content"])
            room = self.agent.context_tokens - getattr(self.policy, "max_tokens", 0)  # the prompt's share
            stm = self.stm = ShortTermMemory(max(64, room - fixed), self._evict)
            if missing:
                stm.add("user", "Unavailable tools: " + "; ".join(missing))
            usage = {"prompt_tokens": 0, "completion_tokens": 0}
            answer, stopped, done = None, "max_steps", 0
            for step in range(1, limit + 1):
                left = deadline - time.monotonic()
                if left <= 0:
                    stopped = "deadline"
                    break
                self._drain_observations(stm)
                stm.fit()
                started = time.monotonic()
                request_opts = {**options, "timeout": left}
                messages = [system, opening, *stm.messages()]
                request = DecisionRequest(self.name, goal, step, messages, schema, tools, request_opts, limit)
                proposal = await self.policy.decide(request, self.kernel)
                if proposal.prompt_tokens:  # the device's count corrects the estimate the window is fitted by
                    estimated = sum(estimate_tokens(m["content"]) for m in messages)
                    scale = max(1.0, proposal.prompt_tokens / max(1, estimated))
                    stm.budget = max(64, int(room / scale) - fixed)
                usage["prompt_tokens"] += proposal.prompt_tokens
                usage["completion_tokens"] += proposal.completion_tokens
                record: dict[str, Any] = {"step": step, "thought": "", "action": None, "args": {}}
                observation, decision = await self._check_and_act(proposal.reply, tools, goal, options, deadline)
                if decision is not None:
                    record.update(thought=decision.thought, action=decision.tool or "final", args=decision.args)
                    stm.add("assistant", json.dumps(_as_dict(decision), ensure_ascii=False))
                else:
                    stm.add("assistant", render(proposal.reply, 300))
                record["observation"] = observation
                record["ms"] = round((time.monotonic() - started) * 1000, 1)
                record["tokens"] = proposal.tokens
                record["completion_tokens"] = proposal.completion_tokens
                done = step
                self._publish_step(goal, record)
                yield record
                if decision is not None and decision.final is not None:
                    answer, stopped = decision.final, "final"
                    break
                stm.add("user", f"Observation: {observation}")
            self.counters["steps"] += done
            tokens = usage["prompt_tokens"] + usage["completion_tokens"]
            self.counters["tokens"] += tokens
            if self.longterm is not None:
                self.longterm.add(f"Goal: {goal} -> answer: {answer}", "run")
            self.stm = None
        yield {"answer": answer, "tokens": tokens, **usage, "stopped": stopped, "steps": done}

    async def _check_and_act(
        self, reply: Any, tools: dict[str, ToolSpec], goal: str, options: dict, deadline: float
    ) -> tuple[str | None, Decision | None]:
        """Check the decision, then act on it: ``(observation, decision or None when invalid)``."""
        try:
            decision = parse_decision(reply, tools)
        except NotGranted as exc:
            args = reply.get("args") if isinstance(reply, dict) else None
            return await self.toolbox.refuse(goal, exc.tool, args, "not granted"), None
        except DecisionError as exc:
            return f"invalid decision: {exc}", None
        if decision.final is not None:
            return None, decision
        left = max(0.001, deadline - time.monotonic())
        timeout = left if decision.tool == "ask_agent" else min(self.agent.tool_timeout, left)
        spec = tools[decision.tool]  # type: ignore[index]
        return await self.toolbox.act(decision, spec, goal, options, timeout), decision

    def _publish_step(self, goal: str, record: dict) -> None:
        if self.agent.publish_steps:
            try:  # watching is best effort: it never stops a run
                self.kernel.publish(f"agents.{self.name}.step", {"agent": self.name, "goal": goal[:200], **record})
            except (TypeError, ValueError) as exc:
                log.warning("step of %s not published: %s", self.name, exc)

    def stats(self) -> dict:
        return {
            **self.counters,
            "tool_calls": self.toolbox.calls,
            "refusals": self.toolbox.refusals,
            "memory_entries": self.longterm.count() if self.longterm is not None else 0,
            "queued_observations": len(self.observations),
            "running": self.lock.locked(),
        }

    def close(self) -> None:
        for task in list(self.background):
            task.cancel()
        for memory in (self.longterm, *self._readers.values()):
            if memory is not None:
                memory.close()


def _type_text(schema: dict) -> str:
    """An argument's type as the model reads it: ``integer``, or its choices ``"a"|"b"``."""
    if "enum" in schema:
        return "|".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"])
    return str(schema.get("type", "any"))


def _as_dict(decision: Decision) -> dict:
    if decision.final is not None:
        return {"thought": decision.thought, "final": decision.final}
    return {"thought": decision.thought, "tool": decision.tool, "args": decision.args}
