"""``@llmos.tool``: actor methods an agent may call, described to the model by a JSON schema.

The schema of a tool's arguments comes from its type hints and the ``Args:``
section of its docstring, so a tool is written once, as an ordinary method.
An actor that has tools answers ``llmos_tools()`` with their descriptions: that
is how an agent in another process learns what ``"calc.add"`` takes.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Longest tool description and argument description sent to the model (characters).
MAX_DESCRIPTION = 400
#: Longest string argument a tool accepts unless its own schema says otherwise.
MAX_STRING_ARG = 4000

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array"}


@dataclass(frozen=True)
class ToolSpec:
    """What the model is told about one tool, and how its arguments are checked."""

    name: str
    description: str
    parameters: dict
    confirm: bool = False
    #: Where it runs: None for a built-in, "" for the agent's own method, else an actor's name.
    actor: str | None = ""
    method: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "confirm": self.confirm,
            "method": self.method,
        }

    @classmethod
    def from_dict(cls, data: dict, *, name: str, actor: str) -> ToolSpec:
        return cls(
            name=name,
            description=str(data.get("description", ""))[:MAX_DESCRIPTION],
            parameters=dict(data.get("parameters") or {"type": "object", "properties": {}}),
            confirm=bool(data.get("confirm", False)),
            actor=actor,
            method=str(data.get("method") or name.rpartition(".")[2]),
        )


class ToolMethod:
    """What ``@tool`` puts in the class body: the method itself, plus a description.

    Looking it up on an instance gives the plain bound method, so the actor runtime
    calls it like any other; being in a class body, it also gives the class a
    ``llmos_tools()`` method that lists the class's tools.
    """

    def __init__(self, fn: Callable[..., Any], confirm: bool) -> None:
        self.fn = fn
        self.confirm = confirm
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__
        self.__wrapped__ = fn

    def __set_name__(self, owner: type, name: str) -> None:
        if "llmos_tools" not in owner.__dict__:
            owner.llmos_tools = _list_tools  # type: ignore[attr-defined]

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self.fn.__get__(obj, owner)

    def spec(self, name: str) -> ToolSpec:
        return spec_from_function(self.fn, name=name, confirm=self.confirm)


def tool(fn: Callable[..., Any] | None = None, *, confirm: bool = False) -> Any:
    """Mark an actor method as a tool an agent may be granted.

    ``@llmos.tool`` or ``@llmos.tool(confirm=True)``: a confirmed tool changes the
    world irreversibly (deletes, sends, spends) and runs only after its agent's
    approval handler says yes.

        class Calc(llmos.Actor):
            @llmos.tool
            def add(self, a: float, b: float) -> float:
                \"\"\"Add two numbers.

                Args:
                    a: the first number.
                    b: the second number.
                \"\"\"
                return a + b
    """
    if fn is None:
        return lambda f: ToolMethod(f, confirm)
    return ToolMethod(fn, confirm)


def tool_methods(cls: type) -> dict[str, ToolMethod]:
    """The ``@tool`` methods of ``cls`` and its bases, by method name."""
    found: dict[str, ToolMethod] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, ToolMethod):
                found[name] = value
            elif name in found:
                del found[name]  # overridden by a plain method: no longer a tool
    return found


def _list_tools(self: Any) -> list[dict]:
    """The tools this actor offers, with their JSON schemas (for agents that are granted them)."""
    return [m.spec(name).to_dict() for name, m in tool_methods(type(self)).items()]


# ---------------------------------------------------------------------------- schemas
_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The summary (first paragraph) and the ``Args:`` descriptions of a docstring."""
    text = inspect.cleandoc(doc or "")
    if not text:
        return "", {}
    summary = text.split("\n\n", 1)[0].replace("\n", " ").strip()
    args: dict[str, str] = {}
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() in ("Args:", "Arguments:", "Parameters:"))
    except StopIteration:
        return summary, args
    indent = None
    current = None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if depth == 0:
            break  # the next section (Returns:, Raises:)
        match = _ARG_LINE.match(line)
        if match and (indent is None or depth <= indent):
            indent = depth
            current = match.group(1).lstrip("*")
            args[current] = match.group(2).strip()
        elif current is not None:
            args[current] = f"{args[current]} {line.strip()}"
    return summary, args


def type_schema(hint: Any) -> dict:
    """A JSON schema for a type hint (str, int, float, bool, list[X], dict, Literal, Optional)."""
    if hint is inspect.Parameter.empty or hint is Any:
        return {}
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(hint))}
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return type_schema(options[0]) if len(options) == 1 else {"anyOf": [type_schema(a) for a in options]}
    if origin in (list, tuple, set, frozenset):
        inner = typing.get_args(hint)
        schema: dict = {"type": "array"}
        if inner and inner[0] is not Ellipsis:
            schema["items"] = type_schema(inner[0])
        return schema
    if origin is dict:
        return {"type": "object"}
    if hint in _JSON_TYPES:
        schema = {"type": _JSON_TYPES[hint]}
        if hint is str:
            schema["maxLength"] = MAX_STRING_ARG
        return schema
    return {}


def spec_from_function(fn: Callable[..., Any], *, name: str, confirm: bool = False) -> ToolSpec:
    """Describe ``fn`` (a method; ``self`` is skipped) as a tool named ``name``."""
    summary, arg_docs = parse_docstring(fn.__doc__)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: describe without types
        hints = {}
    properties: dict[str, dict] = {}
    required: list[str] = []
    for pname, param in inspect.signature(fn).parameters.items():
        if pname == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        schema = type_schema(hints.get(pname, param.annotation))
        if pname in arg_docs:
            schema["description"] = arg_docs[pname][:MAX_DESCRIPTION]
        properties[pname] = schema
        if param.default is param.empty:
            required.append(pname)
    parameters = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    return ToolSpec(
        name=name,
        description=(summary or name)[:MAX_DESCRIPTION],
        parameters=parameters,
        confirm=confirm,
        method=fn.__name__,
    )
