"""The agent loop on a real daemon with scripted decisions: tools, errors, limits, permissions, audit, perceive."""

from __future__ import annotations

import asyncio
import json

import pytest

import llmos_actors as llmos
from llmos_actors._callctx import current_call_options
from llmos_actors.agents.context import estimate_tokens
from llmos_actors.testing import wait_for


class Calc(llmos.Actor):
    """A tool host: arithmetic, a failing tool, an irreversible one, and a probe of its call's options."""

    def __init__(self) -> None:
        self.calls: list[list] = []

    @llmos.tool
    def add(self, a: float, b: float) -> float:
        """Add two numbers.

        Args:
            a: the first number.
            b: the second number.
        """
        self.calls.append(["add", a, b])
        return a + b

    @llmos.tool
    def div(self, a: float, b: float) -> float:
        """Divide a by b."""
        self.calls.append(["div", a, b])
        return a / b

    @llmos.tool(confirm=True)
    def wipe(self, what: str) -> str:
        """Delete everything named ``what`` (irreversible)."""
        self.calls.append(["wipe", what])
        return f"wiped {what}"

    @llmos.tool
    async def options_seen(self) -> dict:
        """Report the priority and deadline this call arrived with."""
        return current_call_options()

    def history(self) -> list:
        return self.calls


class Approver(llmos.Actor):
    def __init__(self, answer: bool = True, silent: bool = False) -> None:
        self.answer = answer
        self.silent = silent
        self.requests: list[dict] = []
        self.priorities: list[int | None] = []

    async def approve(self, request: dict) -> bool:
        self.requests.append(request)
        self.priorities.append(current_call_options().get("priority"))
        if self.silent:
            await asyncio.Event().wait()  # an owner who never answers: the agent's timeout decides
        return self.answer

    def seen(self) -> list:
        return self.requests

    def priorities_seen(self) -> list:
        return self.priorities


class Worker(llmos.Agent):
    tools = ["calc.add", "calc.div", "calc.wipe", "calc.options_seen"]
    approval_timeout = 2.0

    @llmos.tool
    def shout(self, text: str) -> str:
        """Say ``text`` loudly."""
        return text.upper()


class EchoPolicy(llmos.Policy):
    """Finishes at once with the context it was given (shows what entered the decision)."""

    async def decide(self, request, kernel):
        return llmos.agents.Proposal({"thought": "echo", "final": json.dumps(request.messages)})


class Listener(llmos.Agent):
    topics = ["news."]
    policy = EchoPolicy()

    def on_observation(self, observation: dict) -> str | None:
        msg = observation.get("msg")
        return f"react to {msg['react']}" if isinstance(msg, dict) and "react" in msg else None


def step(tool: str | None = None, args: dict | None = None, final: str | None = None) -> dict:
    if final is not None:
        return {"thought": "done", "final": final}
    return {"thought": f"use {tool}", "tool": tool, "args": args or {}}


@pytest.fixture
def calc(kernel):
    return kernel.spawn(Calc, name="calc")


def test_tools_called_with_validated_args(kernel, calc):
    script = [
        step("calc.add", {"a": 2, "b": 3}),
        step("calc.add", {"a": "two", "b": 3}),  # wrong type: never reaches the tool
        step("calc.add", {"a": 1}),  # missing argument
        step("shout", {"text": "hi"}),  # the agent's own tool, through its own mailbox
        step(final="5"),
    ]
    agent = kernel.spawn(Worker, name="w-valid", script=script)
    result = agent.options(timeout=30).call("run", "add two and three")
    steps = result["steps"]
    assert [s["action"] for s in steps] == ["calc.add", None, None, "shout", "final"]
    assert steps[0]["observation"] == "5"
    assert steps[1]["observation"].startswith("invalid decision:") and "expected number" in steps[1]["observation"]
    assert "missing 'b'" in steps[2]["observation"]
    assert steps[3]["observation"] == "HI"
    assert result["answer"] == "5" and result["stopped"] == "final"
    assert all(s["ms"] >= 0 for s in steps)
    assert calc.call("history") == [["add", 2, 3]]


def test_tool_error_becomes_observation(kernel, calc):
    agent = kernel.spawn(Worker, name="w-err", script=[step("calc.div", {"a": 1, "b": 0}), step(final="cannot")])
    result = agent.options(timeout=30).call("run", "divide one by zero")
    assert "ZeroDivisionError" in result["steps"][0]["observation"]
    assert result["answer"] == "cannot"
    assert agent.call("stats")["tool_calls"] == 1


def test_max_steps_is_honoured(kernel, calc):
    agent = kernel.spawn(Worker, name="w-steps", script=[step("calc.add", {"a": i, "b": 1}) for i in range(10)])
    result = agent.options(timeout=30).call("run", "count", max_steps=3)
    assert len(result["steps"]) == 3 and result["stopped"] == "max_steps" and result["answer"] is None
    assert len(calc.call("history")) == 3
    with pytest.raises(llmos.RemoteError, match="max_steps"):
        agent.call("run", "count", max_steps=0)


def test_only_granted_tools_and_audit(kernel, calc):
    sub = kernel.subscribe("sys.audit")
    try:
        # The spawn grant overrides the class's: calc.add is no longer granted.
        agent = kernel.spawn(
            Worker, name="w-perm", tools=["calc.div"], script=[step("calc.add", {"a": 1, "b": 2}), step(final="no")]
        )
        result = agent.options(timeout=30).call("run", "try an ungranted tool")
        assert result["steps"][0]["observation"].startswith("refused:")
        assert calc.call("history") == []
        agent2 = kernel.spawn(Worker, name="w-audit", script=[step("calc.add", {"a": 1, "b": 2}), step(final="3")])
        agent2.options(timeout=30).call("run", "add one and two")
        events: list[dict] = []

        def tool_events() -> bool:
            body = sub.get(timeout=10)[1]
            event = body.get("event", body)  # on sys.audit the daemon wraps it with who reported it
            if event.get("kind") == "agent.tool":
                events.append(event)
            return len(events) >= 2

        wait_for(tool_events, timeout=20, what="audit events")
        refused = next(e for e in events if e.get("agent") == "w-perm")
        assert refused["outcome"] == "refused" and refused["tool"] == "calc.add"
        assert refused["goal"] == "try an ungranted tool"
        ok = next(e for e in events if e.get("agent") == "w-audit")
        assert ok["outcome"] == "ok" and ok["tool"] == "calc.add" and ok["kind"] == "agent.tool"
    finally:
        sub.close()


def test_confirmed_tool_needs_approval(kernel, calc):
    script = [step("calc.wipe", {"what": "logs"}), step(final="done")]
    # No approver: denied.
    denied = kernel.spawn(Worker, name="w-noapp", script=script).options(timeout=30).call("run", "wipe logs")
    assert "no approver" in denied["steps"][0]["observation"]
    # An approver that says no, one that says yes, and one too slow (denied on timeout).
    kernel.spawn(Approver, False, name="says-no")
    kernel.spawn(Approver, True, name="says-yes")
    slow = kernel.spawn(Approver, True, silent=True, name="too-slow")
    no = kernel.spawn(Worker, name="w-no", approver="says-no.approve", script=script)
    assert no.options(timeout=30).call("run", "wipe logs")["steps"][0]["observation"].startswith("refused: denied")
    late = kernel.spawn(Worker, name="w-late", approver="too-slow.approve", approval_timeout=0.5, script=script)
    obs = late.options(timeout=30).call("run", "wipe logs")["steps"][0]["observation"]
    assert "no approval within 0.5 s" in obs
    assert slow.call("seen")[0]["tool"] == "calc.wipe"
    assert calc.call("history") == []
    yes = kernel.spawn(Worker, name="w-yes", approver="says-yes.approve", script=script)
    assert yes.options(timeout=30).call("run", "wipe logs")["steps"][0]["observation"] == "wiped logs"
    assert calc.call("history") == [["wipe", "logs"]]


def test_human_approves_on_a_topic(kernel, calc):
    requests = kernel.subscribe("approvals.request.")
    try:
        agent = kernel.spawn(
            Worker, name="w-human", approver="topic", script=[step("calc.wipe", {"what": "tmp"}), step(final="ok")]
        )
        fut = agent.options(timeout=30).ask("run", "wipe tmp")
        topic, req = requests.get(timeout=20)
        assert topic == "approvals.request.w-human" and req["tool"] == "calc.wipe" and req["args"] == {"what": "tmp"}
        llmos.agents.answer_approval(kernel, req, True, "fine by me")
        assert fut.result(30)["steps"][0]["observation"] == "wiped tmp"
    finally:
        requests.close()


def test_call_options_flow_into_tool_calls(kernel, calc):
    agent = kernel.spawn(Worker, name="w-prio", script=[step("calc.options_seen"), step(final="seen")])
    result = agent.options(priority=6, timeout=30).call("run", "report options")
    seen = json.loads(result["steps"][0]["observation"])
    assert seen["priority"] == 6 and 0 < seen["timeout"] <= 30
    # The approval of a confirmed tool is asked at the run's priority too.
    approver = kernel.spawn(Approver, True, name="prio-approver")
    script = [step("calc.wipe", {"what": "tmp"}), step(final="done")]
    asks = kernel.spawn(Worker, name="w-prio-ask", approver="prio-approver.approve", script=script)
    assert asks.options(priority=6, timeout=30).call("run", "wipe tmp")["steps"][0]["observation"] == "wiped tmp"
    assert approver.call("priorities_seen") == [6]


def test_stream_yields_steps_as_they_happen(kernel, calc):
    agent = kernel.spawn(Worker, name="w-stream", script=[step("calc.add", {"a": 1, "b": 1}), step(final="2")])
    items = list(agent.options(timeout=30).stream("run", "add one and one"))
    assert [i.get("action") for i in items[:-1]] == ["calc.add", "final"]
    assert items[-1]["answer"] == "2" and items[-1]["steps"] == 2


def test_observations_enter_the_next_decision_and_react(kernel):
    agent = kernel.spawn(Listener, name="listener")
    kernel.publish("news.weather", {"text": "rain at noon"})
    agent.tell("observe", "the door is open")
    wait_for(lambda: agent.call("stats")["observations"] >= 2, timeout=20, what="two observations")
    context = json.dumps(agent.options(timeout=30).call("run", "what happened?")["answer"])
    assert "rain at noon" in context and "the door is open" in context
    results = kernel.subscribe("agents.listener.result")
    try:
        kernel.publish("news.alarm", {"react": "the alarm"})
        _topic, msg = results.get(timeout=20)
        assert msg["goal"] == "react to the alarm" and "the alarm" in msg["answer"]
    finally:
        results.close()


def test_ask_agent_delegates(kernel, calc):
    kernel.spawn(Worker, name="helper", script=[step("calc.add", {"a": 20, "b": 22}), step(final="42")])
    boss = kernel.spawn(
        Worker,
        name="boss",
        tools=["ask_agent:helper"],
        script=[step("ask_agent", {"name": "helper", "goal": "add 20 and 22"}), step(final="helper says 42")],
    )
    result = boss.options(timeout=60).call("run", "get the sum from the helper")
    assert result["steps"][0]["observation"] == "42"
    assert result["answer"] == "helper says 42"


def test_a_pool_of_agents_takes_tasks_by_tags(kernel, calc):
    script = [step("calc.add", {"a": 1, "b": 1}), step(final="2")]
    pool = kernel.pool(Worker, size=2, tags=["math"], script=script)
    try:
        futures = [pool.options(tags=["math"]).ask("run", f"task {i}") for i in range(4)]
        results = [f.result(60) for f in futures]
        assert [r["answer"] for r in results] == ["2"] * 4
        assert len(calc.call("history")) == 4
        done = [m["done"] for m in pool.load()["members"].values()]
        assert sum(done) == 4 and all(done)  # both members took tasks (dispatch by load)
    finally:
        pool.stop()


class DenseTokens(llmos.Policy):
    """Calls ``shout`` every step and reports 3 tokens for every token the context estimate counts, as a
    device whose tokenizer is denser than the estimate would: the window must shrink to fit the device's count."""

    async def decide(self, request, kernel):
        estimated = sum(estimate_tokens(m["content"]) for m in request.messages)
        decision = {"thought": "t" * 100, "tool": "shout", "args": {"text": "y" * 100}}
        return llmos.agents.Proposal(decision, prompt_tokens=3 * estimated, completion_tokens=50)


class Dense(llmos.Agent):
    instructions = "Shout."
    memory = False
    policy = DenseTokens()

    @llmos.tool
    def shout(self, text: str) -> str:
        """Say ``text`` loudly."""
        return text.upper()


def test_the_device_token_count_fits_the_context(kernel):
    agent = kernel.spawn(Dense, name="dense", context_tokens=1200)
    result = agent.options(timeout=60).call("run", "shout a lot", max_steps=10)
    prompts = [s["tokens"] - s["completion_tokens"] for s in result["steps"]]
    assert len(prompts) == 10 and result["prompt_tokens"] == sum(prompts)
    assert max(prompts) <= 1200, prompts  # by the estimate alone the last prompts would be ~3x over
    assert agent.call("stats")["evicted"] > 0
