"""The agent's parts without processes: tool descriptions, decision schema and checks, memory, grants."""

from __future__ import annotations

import asyncio
import os
from typing import Literal

import pytest

import llmos_actors as llmos
from llmos_actors.agents.context import ShortTermMemory
from llmos_actors.agents.decision import DecisionError, NotGranted, decision_schema, parse_decision
from llmos_actors.agents.memory import LongTermMemory, match_query
from llmos_actors.agents.permissions import Approvals, Grants
from llmos_actors.agents.policy import DecisionRequest
from llmos_actors.agents.tools import parse_docstring, tool_methods


class Host(llmos.Actor):
    @llmos.tool
    def search(self, query: str, limit: int = 5, mode: Literal["fast", "deep"] = "fast", tags: list[str] | None = None):
        """Search the archive for documents.

        Longer explanation that is not part of the summary.

        Args:
            query: words to look for,
                over two lines.
            limit: how many results.

        Returns:
            the documents.
        """

    @llmos.tool(confirm=True)
    def delete(self, doc_id: int) -> None:
        """Delete a document."""

    def plain(self) -> None:
        """Not a tool."""


def test_tool_spec_from_hints_and_docstring():
    tools = tool_methods(Host)
    assert set(tools) == {"search", "delete"}
    spec = tools["search"].spec("archive.search")
    assert spec.description == "Search the archive for documents."
    props = spec.parameters["properties"]
    assert props["query"]["type"] == "string" and props["query"]["description"] == "words to look for, over two lines."
    assert props["limit"] == {"type": "integer", "description": "how many results."}
    assert props["mode"] == {"enum": ["fast", "deep"]}
    assert props["tags"]["type"] == "array" and props["tags"]["items"]["type"] == "string"
    assert spec.parameters["required"] == ["query"]
    assert tools["delete"].confirm and not spec.confirm
    # The decorated method is still the plain method on an instance, and the class lists its tools.
    host = Host.__new__(Host)
    assert host.plain() is None and [t["name"] for t in host.llmos_tools()] == ["search", "delete"]


def test_docstring_without_args():
    assert parse_docstring("Only a summary.") == ("Only a summary.", {})


def test_decision_schema_and_checks():
    spec = tool_methods(Host)["search"].spec("archive.search")
    schema = decision_schema([spec])
    assert len(schema["anyOf"]) == 2
    assert schema["anyOf"][0]["properties"]["args"]["properties"]["query"]["maxLength"] == 120
    tools = {spec.name: spec}
    d = parse_decision('{"thought": "look", "tool": "archive.search", "args": {"query": "cats", "limit": 2}}', tools)
    assert d.tool == "archive.search" and d.args == {"query": "cats", "limit": 2}
    assert parse_decision({"thought": "t", "final": "done"}, tools).final == "done"
    assert parse_decision('{"thought": "a\tb\x01", "final": "x"}', tools).thought == "a\tb\x01"  # raw controls
    with pytest.raises(NotGranted):
        parse_decision({"thought": "", "tool": "archive.delete", "args": {}}, tools)
    short = decision_schema([spec], thought_chars=40, answer_chars=50, arg_chars=30)
    assert short["anyOf"][0]["properties"]["thought"]["maxLength"] == 40
    assert short["anyOf"][0]["properties"]["args"]["properties"]["query"]["maxLength"] == 30
    assert short["anyOf"][1]["properties"]["final"]["maxLength"] == 50
    board = tool_methods(llmos.Blackboard)["write"].spec("board.write")  # value: Any -> a short scalar
    value = decision_schema([board], arg_chars=30)["anyOf"][0]["properties"]["args"]["properties"]["value"]
    assert value["anyOf"][0] == {"type": "string", "maxLength": 30} and len(value["anyOf"]) == 3
    for bad, why in [
        ("not json", "not JSON"),
        ({"thought": "", "tool": "archive.search", "args": {"query": 3}}, "expected string"),
        ({"thought": "", "tool": "archive.search", "args": {"query": "x", "limit": True}}, "expected integer"),
        ({"thought": "", "tool": "archive.search", "args": {"query": "x", "mode": "slow"}}, "not one of"),
        ({"thought": "", "tool": "archive.search", "args": {"query": "x", "extra": 1}}, "unexpected extra"),
        ({"thought": ""}, "names a 'tool'"),
        ({"thought": "", "tool": "archive.search", "args": {"query": "x", "limit": 10**30}}, "out of range"),
    ]:
        with pytest.raises(DecisionError, match=why):
            parse_decision(bad, tools)


def test_a_policy_restricts_a_step_to_tool_calls_or_the_answer():
    spec = tool_methods(Host)["search"].spec("archive.search")
    both = decision_schema([spec])

    def request(schema: dict) -> DecisionRequest:
        return DecisionRequest("a1", "goal", 1, [], schema, {spec.name: spec})

    tools_only = request(both)
    tools_only.restrict(final=False)
    assert tools_only.schema == both["anyOf"][0]
    answer_only = request(both)
    answer_only.restrict(final=True)
    assert answer_only.schema == both["anyOf"][1]
    no_tools = decision_schema([])  # no tool form exists: the step keeps its only form, the answer
    bare = request(no_tools)
    bare.restrict(final=False)
    assert bare.schema == no_tools


def test_long_term_memory_search(tmp_path):
    mem = LongTermMemory(tmp_path, "agent-1")
    mem.add("the cat sat on the mat")
    mem.add("dogs bark at night")
    assert [h["text"] for h in mem.search("cat")] == ["the cat sat on the mat"]
    assert mem.search('bark" OR *') and mem.search("")[0]["text"] == "dogs bark at night"  # no query syntax leaks
    assert match_query("a-b (c)") == '"a" OR "b" OR "c"'
    mem.close()
    reader = LongTermMemory(tmp_path, "agent-1", readonly=True)
    assert reader.count() == 2
    with pytest.raises(PermissionError):
        reader.add("x")
    reader.close()
    with pytest.raises(FileNotFoundError):
        LongTermMemory(tmp_path, "nobody", readonly=True)
    with pytest.raises(ValueError):
        LongTermMemory(tmp_path, "../escape")


def test_short_term_memory_evicts_least_recently_used():
    evicted = []
    stm = ShortTermMemory(budget=60, evict=evicted.append, count=lambda text: 10)
    turns = [stm.add("user", f"turn {i} about {'apples' if i == 0 else 'pears'}") for i in range(6)]
    assert stm.touch("apples") == 1  # recalled: the oldest turn is now the most recently used
    stm.add("user", "one more")
    gone = stm.fit(fixed_tokens=10)
    assert [t.content for t in gone] == [turns[1].content, turns[2].content]
    assert turns[0] in stm.turns and evicted == gone
    assert stm.tokens + 10 <= 60


def test_grants():
    grants = Grants.parse(["calc.add", "team.board.write", "ask_agent:helper"])
    assert grants.remote == {"calc.add": ("calc", "add"), "team.board.write": ("team.board", "write")}
    assert grants.ask_agent == frozenset({"helper"})
    assert Grants.parse(["ask_agent"]).ask_agent == frozenset()
    assert Grants.parse([]).ask_agent is None
    with pytest.raises(ValueError):
        Grants.parse(["nodot"])
    with pytest.raises(TypeError):
        Grants.parse("calc.add")


def test_agent_settings_are_checked():
    with pytest.raises(ValueError, match="thought_chars"):
        llmos.Agent(thought_chars=0)
    with pytest.raises(ValueError, match="step_tokens"):
        llmos.Agent(step_tokens=10**9)
    with pytest.raises(ValueError, match="approver"):
        llmos.Agent(approver="nobody")
    with pytest.raises(TypeError, match="unknown agent settings"):
        llmos.Agent(colour="red")
    assert llmos.Agent(thought_chars=40, approver="topic").thought_chars == 40


def _answer(by: str, agent: str = "a1", ident: str = "1", kind: str = "agent.approval") -> dict:
    event = {"kind": kind, "agent": agent, "id": ident, "approve": True, "reason": "ok"}
    return {"action": "reported", "by": by, "time": 0.0, "event": event}


def test_approvals_take_answers_from_the_owner_only():
    loop = asyncio.new_event_loop()
    try:
        approvals = Approvals("a1", "topic", owner="key:alice")
        fut = approvals._pending["1"] = loop.create_future()
        ignored = approvals.on_audit(_answer("uid:1000/pid:42"))
        assert ignored == {
            "kind": "agent.approval_ignored",
            "agent": "a1",
            "id": "1",
            "from": "uid:1000/pid:42",
            "reason": "only the owner key:alice may answer",
        }
        assert not fut.done()
        # Other agents' answers, other events and malformed messages are none of its business.
        for other in (_answer("uid:1", agent="a2"), _answer("uid:1", kind="agent.tool"), {"action": "spawn"}, "x"):
            assert approvals.on_audit(other) is None
        assert approvals.on_audit(_answer("key:alice")) is None
        assert fut.result() == {"approve": True, "reason": "ok"}
        # Owned by the daemon: the daemon's own user answers.
        mine = Approvals("a1", "topic", owner="daemon")
        assert mine.owner == f"uid:{os.geteuid()}"
    finally:
        loop.close()
