"""An agent's granted tools: their descriptions, and calling one under permissions, with a deadline.

Three kinds: the agent's own ``@tool`` methods (called through its own mailbox,
like any call), tools of other actors (``"calc.add"``: an ordinary actor call) and
the built-ins ``remember``, ``recall`` and ``ask_agent``. Every call and every
refusal is audited with the agent and its goal; an error is the observation.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import RemoteError
from .decision import Decision
from .permissions import Approvals, Grants, audit, with_priority
from .tools import ToolSpec, tool_methods

log = logging.getLogger(__name__)

#: Characters of a tool's result kept as the observation.
OBSERVATION_CHARS = 600
#: Characters of the goal and of the arguments written into an audit event.
AUDIT_CHARS = 300

Builtin = Callable[[dict, dict], Awaitable[Any]]


def render(value: Any, limit: int = OBSERVATION_CHARS) -> str:
    """A tool's result as observation text (JSON where it can be), cut at ``limit`` characters."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, default=str, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, RemoteError):
        return f"{getattr(exc, 'remote_type', None) or type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}"


class Toolbox:
    """The tools one agent may use, resolved once per run (other actors may come and go).

    Args:
        agent: the agent's name (for audit events).
        kernel: the agent's asyncio kernel handle.
        own: the agent class (its ``@tool`` methods) and a ref to the agent itself.
        grants: the parsed grants.
        approvals: the approval handler for confirmed tools.
        builtins: name -> (spec, implementation ``fn(args, options)``).
    """

    def __init__(
        self,
        agent: str,
        kernel: Any,
        own: tuple[type, Any],
        grants: Grants,
        approvals: Approvals,
        builtins: dict[str, tuple[ToolSpec, Builtin]],
    ) -> None:
        self.agent = agent
        self.kernel = kernel
        self.own_cls, self.self_ref = own
        self.grants = grants
        self.approvals = approvals
        self.builtins = builtins
        self._refs: dict[str, Any] = {}
        self.calls = 0
        self.refusals = 0

    async def resolve(self, priority: int | None = None) -> tuple[dict[str, ToolSpec], list[str]]:
        """The granted tools reachable now, and a note for each granted one that is not (asked at the
        run's ``priority``: an urgent run does not queue behind the others' calls to the same actor)."""
        specs: dict[str, ToolSpec] = {}
        missing: list[str] = []
        for name, (spec, _) in self.builtins.items():
            specs[name] = spec
        for method, tm in tool_methods(self.own_cls).items():
            specs[method] = tm.spec(method)
        hosts: dict[str, list[dict] | None] = {}
        for name, (actor, method) in self.grants.remote.items():
            if actor not in hosts:
                try:
                    ref = (await self._ref(actor)).options(**with_priority({"timeout": 10.0}, priority))
                    hosts[actor] = await ref.call("llmos_tools")
                except Exception as exc:
                    hosts[actor] = None
                    missing.append(f"{actor}: {describe_error(exc)}")
            found = next((t for t in hosts[actor] or () if t.get("method") == method), None)
            if found is not None:
                specs[name] = ToolSpec.from_dict(found, name=name, actor=actor)
            elif hosts[actor] is not None:
                missing.append(f"{name}: {actor} has no tool {method!r}")
        return specs, missing

    async def _ref(self, actor: str) -> Any:
        ref = self._refs.get(actor)
        if ref is None:
            ref = self._refs[actor] = await self.kernel.lookup(actor)
        return ref

    async def refuse(self, goal: str, tool: str, args: Any, reason: str) -> str:
        """Audit a refusal; returns the observation."""
        self.refusals += 1
        await audit(self.kernel, self._event(goal, tool, args, "refused", reason=reason))
        return f"refused: {reason}"

    async def act(self, decision: Decision, spec: ToolSpec, goal: str, options: dict, timeout: float) -> str:
        """Run one decided tool call (after approval when it needs one); returns the observation."""
        tool, args = spec.name, decision.args
        if spec.confirm:
            ok, why = await self.approvals.ask(
                self.kernel,
                {"agent": self.agent, "goal": goal[:AUDIT_CHARS], "tool": tool, "args": args},
                options.get("priority"),
            )
            if not ok:
                return await self.refuse(goal, tool, args, why)
        self.calls += 1
        started = time.monotonic()
        try:
            result = await self._invoke(spec, args, options, timeout)
        except Exception as exc:
            error = describe_error(exc)
            await audit(self.kernel, self._event(goal, tool, args, "error", error=error[:AUDIT_CHARS]))
            return render(f"error: {error}")
        ms = round((time.monotonic() - started) * 1000, 1)
        await audit(self.kernel, self._event(goal, tool, args, "ok", ms=ms))
        return render(result)

    async def _invoke(self, spec: ToolSpec, args: dict, options: dict, timeout: float) -> Any:
        if spec.actor is None:
            _, fn = self.builtins[spec.name]
            return await fn(args, {**options, "timeout": timeout})
        call_opts = {k: v for k, v in options.items() if v is not None and k != "timeout"}
        call_opts["timeout"] = timeout
        ref = self.self_ref if spec.actor == "" else await self._ref(spec.actor)
        return await ref.options(**call_opts).call(spec.method, **args)

    def _event(self, goal: str, tool: str, args: Any, outcome: str, **more: Any) -> dict:
        return {
            "kind": "agent.tool",
            "agent": self.agent,
            "goal": goal[:AUDIT_CHARS],
            "tool": tool,
            "args": render(args, AUDIT_CHARS),
            "outcome": outcome,
            **more,
        }
