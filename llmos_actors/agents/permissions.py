"""What an agent may do: its grants, approvals for confirmed tools, and the audit trail.

Grants are fixed at spawn (the class's ``tools``, or the ``tools=`` spawn argument):
``"calc.add"`` (the ``add`` tool of the actor named ``calc``), ``"ask_agent"`` (any
agent) or ``"ask_agent:NAME"`` (that one). A tool marked ``confirm=True`` runs only
once the agent's approver says yes: an actor method (``"owner.approve"``, called with
the request) or a human answering a request published on a topic (``"topic"``); no
answer in time is a no.

A topic carries no sender, so the human's answer travels as an audit event
(``answer_approval``): the daemon stamps it with the identity it established from the
transport, and the agent takes it only from its owner (the identity that spawned it).
Anyone else's answer is ignored, and the agent audits that it ignored it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from dataclasses import dataclass
from typing import Any

from ..errors import CallTimeout

log = logging.getLogger(__name__)

#: Topic prefix of approval requests (``approvals.request.<agent>``).
APPROVAL_TOPIC = "approvals."
#: ``kind`` of the audit event that answers an approval request.
APPROVAL_ANSWER = "agent.approval"
#: Seconds an approval may take before it counts as a refusal.
DEFAULT_APPROVAL_TIMEOUT = 30.0
#: Grant of the delegation tool.
ASK_AGENT = "ask_agent"


@dataclass(frozen=True)
class Grants:
    """An agent's grants, parsed."""

    #: tool name -> (actor name, method)
    remote: dict[str, tuple[str, str]]
    #: None: may not delegate; empty: any agent; else these agents.
    ask_agent: frozenset[str] | None

    @classmethod
    def parse(cls, grants: Any) -> Grants:
        if isinstance(grants, str) or not all(isinstance(g, str) and g for g in grants or ()):
            raise TypeError(f"tools must be a list of tool names like 'calc.add', not {grants!r}")
        remote: dict[str, tuple[str, str]] = {}
        ask: set[str] | None = None
        for grant in grants or ():
            if grant == ASK_AGENT or grant.startswith(ASK_AGENT + ":"):
                ask = ask if ask is not None else set()
                if ":" in grant:
                    ask.add(grant.partition(":")[2])
                continue
            actor, dot, method = grant.rpartition(".")
            if not dot or not actor or not method:
                raise ValueError(f"a tool grant names an actor and a method ('calc.add'), not {grant!r}")
            remote[grant] = (actor, method)
        return cls(remote, None if ask is None else frozenset(ask))


class Approvals:
    """Asks the agent's approver before a confirmed tool runs.

    Args:
        agent: the agent's name (approval topics carry it).
        approver: None (always deny), ``"actor.method"`` or ``"topic"``.
        timeout: seconds to wait for an answer before denying.
        owner: the identity whose answers count (``uid:1000``, ``key:alice``), as the daemon
            recorded who spawned the agent; ``"daemon"`` means the daemon's own user.
    """

    def __init__(
        self, agent: str, approver: str | None, timeout: float = DEFAULT_APPROVAL_TIMEOUT, owner: str = "daemon"
    ) -> None:
        self.agent = agent
        self.approver = approver
        self.timeout = timeout
        self.owner = f"uid:{os.geteuid()}" if owner == "daemon" else owner
        self._pending: dict[str, asyncio.Future] = {}
        self._ids = itertools.count(1)

    async def ask(self, kernel: Any, request: dict, priority: int | None = None) -> tuple[bool, str]:
        """``(approved, why)`` for ``request`` (``tool``, ``args``, ``goal``, ``agent``); an approver actor
        is called at the run's ``priority``."""
        if not self.approver:
            return False, "no approver is registered for confirmed tools"
        try:
            if self.approver == "topic":
                return await self._ask_topic(kernel, request)
            actor, _, method = self.approver.rpartition(".")
            ref = await kernel.lookup(actor)
            answer = await ref.options(**with_priority({"timeout": self.timeout}, priority)).call(method, request)
        except (asyncio.TimeoutError, CallTimeout):
            return False, f"no approval within {self.timeout:g} s"
        except Exception as exc:
            return False, f"the approver failed: {type(exc).__name__}: {exc}"
        return _verdict(answer, self.approver)

    async def _ask_topic(self, kernel: Any, request: dict) -> tuple[bool, str]:
        ident = f"{next(self._ids)}"
        fut = asyncio.get_running_loop().create_future()
        self._pending[ident] = fut
        try:
            kernel.publish(f"{APPROVAL_TOPIC}request.{self.agent}", {**request, "id": ident, "owner": self.owner})
            answer = await asyncio.wait_for(fut, self.timeout)
        finally:
            self._pending.pop(ident, None)
        return _verdict(answer, self.owner)

    def on_audit(self, msg: Any) -> dict | None:
        """An event on ``sys.audit``: an answer from the owner settles its request; one from anyone
        else is ignored, and returned (an audit event saying so) for the agent to record."""
        if not isinstance(msg, dict) or msg.get("action") != "reported":
            return None
        event = msg.get("event")
        if not isinstance(event, dict) or event.get("kind") != APPROVAL_ANSWER or event.get("agent") != self.agent:
            return None
        ident, by = str(event.get("id")), str(msg.get("by", ""))
        fut = self._pending.get(ident)
        if by.partition("/")[0] != self.owner:
            return {
                "kind": "agent.approval_ignored",
                "agent": self.agent,
                "id": ident[:32],
                "from": by[:200],
                "reason": f"only the owner {self.owner} may answer",
            }
        if fut is not None and not fut.done():
            fut.set_result({"approve": event.get("approve") is True, "reason": event.get("reason")})
        return None


def answer_approval(kernel: Any, request: dict, approve: bool, reason: str = "") -> Any:
    """Answer an approval request seen on ``approvals.request.<agent>``: yes (``approve=True``) or no.

    The answer is an audit event, so the daemon attaches who sent it and the agent takes it only
    from its owner. Returns what ``kernel.audit`` returns (awaitable on an ``AsyncKernel``).
    """
    event = {
        "kind": APPROVAL_ANSWER,
        "agent": str(request["agent"]),
        "id": str(request["id"]),
        "approve": approve is True,
        "reason": str(reason)[:200],
    }
    return kernel.audit(event)


def _verdict(answer: Any, who: str) -> tuple[bool, str]:
    if isinstance(answer, dict):
        ok = answer.get("approve") is True
        why = str(answer.get("reason") or "")[:200]
        return ok, why or (f"approved by {who}" if ok else f"denied by {who}")
    ok = answer is True
    return ok, f"approved by {who}" if ok else f"denied by {who}"


def with_priority(options: dict, priority: int | None) -> dict:
    """Call options with the run's priority added (none: the callee's default)."""
    return options if priority is None else {**options, "priority": priority}


async def audit(kernel: Any, event: dict) -> None:
    """Record ``event`` on ``sys.audit`` through the kernel (the daemon attaches who sent it).

    A failure to record is logged; it never stops the agent's run.
    """
    try:
        await kernel.audit(event)
    except Exception as exc:
        log.warning("audit event not recorded (%s): %r", exc, event)
