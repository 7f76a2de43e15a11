"""The tools every agent has: ``remember`` and ``recall`` (its long-term memory) and, when granted,
``ask_agent`` (delegation). Their descriptions come from the signatures below, like any tool's."""

from __future__ import annotations

from typing import Any

from .tools import ToolSpec, spec_from_function

# The functions below only describe the built-ins (signature and docstring); the agent runs them.


def remember(text: str) -> str:
    """Store a note in your long-term memory, to recall in a later step or run.

    Args:
        text: what to remember, in a sentence.
    """


def recall(query: str, namespace: str = "") -> list:
    """Search long-term memory for notes and earlier turns; what is found comes back into view.

    Args:
        query: words to look for.
        namespace: whose memory to search (empty: your own).
    """


def ask_agent(name: str, goal: str) -> str:
    """Ask another agent to achieve a goal and wait for its answer.

    Args:
        name: the other agent's name.
        goal: what it should do, in a sentence.
    """


def builtin_spec(fn: Any, choices: dict[str, list[str]] | None = None) -> ToolSpec:
    """The spec of a built-in, with the allowed values of some string arguments as an enum."""
    spec = spec_from_function(fn, name=fn.__name__)
    params = spec.parameters
    for arg, values in (choices or {}).items():
        prop = dict(params["properties"][arg])
        prop.pop("maxLength", None)
        prop["enum"] = list(values)
        params = {**params, "properties": {**params["properties"], arg: prop}}
    return ToolSpec(spec.name, spec.description, params, actor=None, method=spec.method)
