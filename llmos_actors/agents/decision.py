"""One decision of an agent: the JSON schema it must match, and the check that it does.

The schema is built from the tools the agent is granted, so a reply constrained by
it names only a granted tool, with arguments of the right shape, or gives the
final answer. Every decision is checked against the same schema whatever made it
(the model, a script), so a bad one becomes an observation, never a call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .tools import ToolSpec

#: Characters of a thought, of a final answer and of a string argument the model may write in one step:
#: they bound the reply, so a constrained step finishes within its token budget.
THOUGHT_CHARS = 120
FINAL_CHARS = 240
ARG_CHARS = 120
#: Largest integer an argument may be (JSON's exact range): a model may write any number of digits.
MAX_INT = 2**53


class DecisionError(ValueError):
    """A decision that does not match the agent's decision schema (the reason says where)."""


class NotGranted(DecisionError):
    """A decision names a tool the agent was not granted (a refusal, audited as such)."""

    def __init__(self, tool: str, granted: list[str]) -> None:
        super().__init__(f"tool {tool!r} is not granted to this agent (granted: {', '.join(sorted(granted))})")
        self.tool = tool


@dataclass(frozen=True)
class Decision:
    """Call ``tool`` with ``args``, or finish with ``final``."""

    thought: str
    tool: str | None = None
    args: dict = field(default_factory=dict)
    final: str | None = None


def _bounded(schema: dict, chars: int) -> dict:
    """A tool's argument schema with every string capped at ``chars`` (what the model may write).

    An untyped argument (``Any``) would let the model write JSON of any size: it may write a short
    string, a number or a boolean instead, any of which the tool accepts.
    """
    if not any(k in schema for k in ("type", "enum", "anyOf", "const")):
        return {**schema, "anyOf": [{"type": "string", "maxLength": chars}, {"type": "number"}, {"type": "boolean"}]}
    out = dict(schema)
    if out.get("type") == "string":
        out["maxLength"] = min(int(out.get("maxLength", chars)), chars)
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _bounded(v, chars) for k, v in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = _bounded(out["items"], chars)
    if isinstance(out.get("anyOf"), list):
        out["anyOf"] = [_bounded(s, chars) for s in out["anyOf"]]
    return out


def decision_schema(
    tools: list[ToolSpec],
    *,
    thought_chars: int = THOUGHT_CHARS,
    answer_chars: int = FINAL_CHARS,
    arg_chars: int = ARG_CHARS,
) -> dict:
    """``{"thought", "tool", "args"}`` for each granted tool, or ``{"thought", "final"}``, with strings capped
    at the given lengths (shorter caps: shorter, faster steps)."""
    thought = {"type": "string", "maxLength": thought_chars}
    options = [
        {
            "type": "object",
            "properties": {
                "thought": thought,
                "tool": {"enum": [spec.name]},
                "args": _bounded(spec.parameters, arg_chars),
            },
            "required": ["thought", "tool", "args"],
            "additionalProperties": False,
        }
        for spec in tools
    ]
    options.append(
        {
            "type": "object",
            "properties": {"thought": thought, "final": {"type": "string", "maxLength": answer_chars}},
            "required": ["thought", "final"],
            "additionalProperties": False,
        }
    )
    return {"anyOf": options} if len(options) > 1 else options[0]


def parse_decision(reply: str | dict, tools: dict[str, ToolSpec]) -> Decision:
    """Check a reply (JSON text or a dict) against the decision schema of ``tools``.

    Raises:
        DecisionError: not JSON, an unknown or ungranted tool, or arguments that do not validate.
    """
    if isinstance(reply, str):
        try:
            data = json.loads(reply, strict=False)  # the grammar lets control characters into strings
        except ValueError as exc:
            raise DecisionError(f"the reply is not JSON: {exc}") from None
    else:
        data = reply
    if not isinstance(data, dict):
        raise DecisionError(f"a decision is a JSON object, not {type(data).__name__}")
    thought = data.get("thought", "")
    if not isinstance(thought, str):
        raise DecisionError("'thought' must be a string")
    if "final" in data and "tool" not in data:
        if not isinstance(data["final"], str):
            raise DecisionError("'final' must be a string")
        return Decision(thought=thought, final=data["final"])
    name = data.get("tool")
    if not isinstance(name, str):
        raise DecisionError("a decision names a 'tool' (with 'args') or gives a 'final' answer")
    spec = tools.get(name)
    if spec is None:
        raise NotGranted(name, list(tools))
    args = data.get("args", {})
    check_value(args, spec.parameters, f"{name} args")
    return Decision(thought=thought, tool=name, args=args)


_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "object": dict,
    "array": list,
    "null": type(None),
}


def check_value(value: Any, schema: dict, where: str) -> None:
    """Validate ``value`` against the JSON-schema subset tools are described with.

    Covers type, enum, required, additionalProperties, properties, items, maxLength and anyOf.

    Raises:
        DecisionError: naming the path of the first mismatch.
    """
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                check_value(value, option, where)
                return
            except DecisionError as exc:
                errors.append(str(exc))
        raise DecisionError(f"{where}: matches none of the allowed forms ({'; '.join(errors)})")
    kind = schema.get("type")
    if kind is not None:
        expected = _TYPES.get(kind)
        is_bool = isinstance(value, bool)
        if expected is None or not isinstance(value, expected) or (is_bool and kind in ("integer", "number")):
            raise DecisionError(f"{where}: expected {kind}, got {type(value).__name__}")
    if type(value) is int and abs(value) > MAX_INT:
        raise DecisionError(f"{where}: {value} is out of range (at most {MAX_INT} either way)")
    if "enum" in schema and value not in schema["enum"]:
        raise DecisionError(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str) and "maxLength" in schema and len(value) > schema["maxLength"]:
        raise DecisionError(f"{where}: longer than {schema['maxLength']} characters")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", ()):
            if key not in value:
                raise DecisionError(f"{where}: missing {key!r}")
        if schema.get("additionalProperties") is False:
            extra = set(value) - set(props)
            if extra:
                raise DecisionError(f"{where}: unexpected {', '.join(sorted(map(str, extra)))}")
        for key, sub in props.items():
            if key in value:
                check_value(value[key], sub, f"{where}.{key}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            check_value(item, schema["items"], f"{where}[{i}]")
