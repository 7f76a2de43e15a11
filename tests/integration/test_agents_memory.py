"""Agent memory and the blackboard on real daemons: eviction, recall across restarts, grants, compare-and-set."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading

import pytest

import llmos_actors as llmos
from llmos_actors.agents.policy import Proposal
from llmos_actors.testing import short_tmpdir, start_daemon, wait_for


class GoalScript(llmos.Policy):
    """The goal is the script (a JSON list of decisions); a final of ``"$last"`` answers the last observation."""

    def __init__(self) -> None:
        self.position: dict[str, int] = {}

    async def decide(self, request, kernel):
        script = json.loads(request.goal)
        item = script[request.step - 1] if request.step <= len(script) else {"thought": "", "final": ""}
        if item.get("final") == "$last":
            last = [m["content"] for m in request.messages if m["content"].startswith("Observation:")]
            item = {"thought": "", "final": last[-1] if last else ""}
        return Proposal(item)


class Rememberer(llmos.Agent):
    policy = GoalScript()
    context_tokens = 400


class Reader(llmos.Agent):
    policy = GoalScript()
    memory_grants = ["mem-a"]


def remember(text: str) -> str:
    return json.dumps([{"thought": "", "tool": "remember", "args": {"text": text}}, {"thought": "", "final": "ok"}])


def recall(query: str, namespace: str = "") -> str:
    args = {"query": query, **({"namespace": namespace} if namespace else {})}
    return json.dumps([{"thought": "", "tool": "recall", "args": args}, {"thought": "", "final": "$last"}])


class StateDirProbe(llmos.Actor):
    def state_dir(self) -> str:
        return os.environ.get("LLMOS_STATE_DIR", "")


def test_actors_see_the_daemons_state_dir():
    """Set in the config file only (not inherited from the environment), it still reaches the actors."""
    base = short_tmpdir()
    try:
        with start_daemon(base / "rt", env={"LLMOS_STATE_DIR": ""}, state_dir=str(base / "from-file")) as d:
            assert d.connect().spawn(StateDirProbe).call("state_dir") == str(base / "from-file")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def kill_and_wait_restart(kernel, name: str) -> None:
    old = next(r["pid"] for r in kernel.ps() if r["name"] == name and r["state"] == "running")
    os.kill(old, signal.SIGKILL)
    wait_for(
        lambda: any(r["name"] == name and r["state"] == "running" and r["pid"] != old for r in kernel.ps()),
        timeout=30,
        what=f"the supervisor's restart of {name}",
    )


def test_evicted_turns_are_recalled(kernel):
    agent = kernel.spawn(Rememberer, name="mem-evict")
    filler = [
        {"thought": f"note {i}", "tool": "remember", "args": {"text": f"filler {i} " + "x" * 120}} for i in range(12)
    ]
    first = {"thought": "the secret", "tool": "remember", "args": {"text": "the password is zebra-17"}}
    goal = json.dumps([first, *filler, {"thought": "", "final": "done"}])
    agent.options(timeout=60).call("run", goal, max_steps=20)
    stats = agent.call("stats")
    assert stats["evicted"] > 0  # the context window of 400 tokens overflowed
    found = agent.options(timeout=30).call("run", recall("zebra password"))["answer"]
    assert "zebra-17" in found


def test_memory_survives_a_daemon_restart():
    base = short_tmpdir()
    rdir = base / "rt"
    with start_daemon(rdir, grace=2.0) as d:
        k = d.connect()
        k.spawn(Rememberer, name="mem-a").options(timeout=30).call("run", remember("the launch code is alpha-42"))
    with start_daemon(rdir, grace=2.0) as d:
        k = d.connect()
        agent = k.spawn(Rememberer, name="mem-a")
        assert "alpha-42" in agent.options(timeout=30).call("run", recall("launch code"))["answer"]
        # Another agent reads mem-a's namespace only where granted.
        reader = k.spawn(Reader, name="reader")
        assert "alpha-42" in reader.options(timeout=30).call("run", recall("launch", "mem-a"))["answer"]
        stranger = k.spawn(Rememberer, name="stranger")
        denied = stranger.options(timeout=30).call("run", recall("launch", "mem-a"))
        assert "alpha-42" not in json.dumps(denied)
        assert "invalid decision" in denied["steps"][0]["observation"]
    shutil.rmtree(base, ignore_errors=True)


def test_restarted_agent_keeps_long_term_memory(kernel):
    agent = kernel.spawn(Rememberer, name="mem-sup", restart="permanent")
    agent.options(timeout=30).call("run", remember("the meeting moved to room 204"))
    kill_and_wait_restart(kernel, "mem-sup")
    result = agent.options(timeout=30, wait_restart=True).call("run", recall("meeting room"))
    assert "room 204" in result["answer"]


def test_blackboard_compare_and_set_under_two_writers(kernel):
    board = kernel.spawn(llmos.Blackboard, name="board")
    rounds = 25
    conflicts = [0, 0]

    def writer(i: int) -> None:
        with llmos.connect(config=kernel.config) as k:
            ref = k.lookup("board")
            for _ in range(rounds):
                while True:
                    entry = ref.call("read", "counter")
                    value = (entry["value"] or 0) + 1
                    if ref.call("write", "counter", value, entry["version"], writer=f"w{i}")["ok"]:
                        break
                    conflicts[i] += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    entry = board.call("read", "counter")
    assert entry["value"] == 2 * rounds and entry["version"] == 2 * rounds  # no increment lost
    stale = board.call("write", "counter", 0, 1)
    assert stale["ok"] is False and stale["version"] == 2 * rounds and stale["value"] == 2 * rounds
    assert stale["reason"] == f"version changed: write again with expected_version {2 * rounds}"
    with pytest.raises(llmos.RemoteError, match="expected_version"):
        board.call("write", "counter", 0, -1)


def test_blackboard_survives_its_restart(kernel):
    board = kernel.spawn(llmos.Blackboard, name="board-sup", restart="permanent")
    assert board.call("write", "plan", {"step": 1}, 0)["version"] == 1
    kill_and_wait_restart(kernel, "board-sup")
    entry = board.options(timeout=30, wait_restart=True).call("read", "plan")
    assert entry["value"] == {"step": 1} and entry["version"] == 1
    assert [e["key"] for e in board.call("entries", "pl")] == ["plan"]
