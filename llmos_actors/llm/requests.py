"""Checking a generate/chat request and turning it into a ``Sequence``: clear errors for bad input,
bounds on everything a caller controls."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from .sequence import SamplingParams, Sequence

#: Bounds on what a caller sends.
MAX_PROMPT_CHARS = 1 << 20
MAX_STOPS = 16
MAX_STOP_CHARS = 256
MAX_MESSAGES = 1024


@dataclass(frozen=True)
class RequestOptions:
    """What ``generate``, ``chat`` and ``complete`` accept besides the prompt (one definition for all).

    ``stop``: a string or strings that end the text (not included); ``seed``: reproducible
    sampling; ``json_schema``/``grammar``: constrained output; ``ignore_eos``: always make
    ``max_tokens`` tokens (benchmarks).
    """

    max_tokens: int = 64
    temperature: float = 0.0
    stop: Any = None
    seed: int | None = None
    json_schema: Any = None
    grammar: Any = None
    ignore_eos: bool = False

    @classmethod
    def parse(cls, options: dict[str, Any]) -> RequestOptions:
        """The options of one call, every name known.

        Raises:
            TypeError: an unknown option (naming the known ones).
        """
        unknown = set(options) - set(OPTIONS)
        if unknown:
            names = ", ".join(sorted(map(str, unknown)))
            raise TypeError(f"unknown option(s) {names}; generate and chat take: {', '.join(OPTIONS)}")
        return cls(**options)

    def sampling(self) -> SamplingParams:
        """Validated sampling parameters (raises ValueError/TypeError naming the bad value)."""
        return sampling_params(self.max_tokens, self.temperature, self.stop, self.seed, self.ignore_eos)

    @property
    def constrained(self) -> bool:
        return self.json_schema is not None or self.grammar is not None


#: Options ``generate`` and ``chat`` accept besides the prompt.
OPTIONS = tuple(f.name for f in fields(RequestOptions))


def sampling_params(max_tokens: Any, temperature: Any, stop: Any, seed: Any, ignore_eos: Any) -> SamplingParams:
    """Validated sampling parameters.

    Raises:
        ValueError, TypeError: naming the bad value.
    """
    if type(max_tokens) is not int or max_tokens < 1:
        raise ValueError(f"max_tokens must be an integer >= 1, not {max_tokens!r}")
    if type(temperature) not in (int, float) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, not {temperature!r}")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop):
        stops = tuple(stop)
    else:
        raise TypeError("stop must be a string or a list of strings")
    if len(stops) > MAX_STOPS or any(not s or len(s) > MAX_STOP_CHARS for s in stops):
        raise ValueError(f"stop: at most {MAX_STOPS} non-empty strings of at most {MAX_STOP_CHARS} characters")
    if seed is not None and type(seed) is not int:
        raise TypeError(f"seed must be an integer or None, not {type(seed).__name__}")
    if type(ignore_eos) is not bool:
        raise TypeError("ignore_eos must be True or False")
    return SamplingParams(int(max_tokens), float(temperature), seed, stops, ignore_eos)


def encode_prompt(tokenizer: Any, prompt: Any) -> list[int]:
    if not isinstance(prompt, str):
        raise TypeError(f"the prompt must be a string, not {type(prompt).__name__}")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"the prompt is {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are accepted")
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError("the prompt is empty")
    return list(ids)


def chat_prompt(tokenizer: Any, messages: Any) -> str:
    """The model's chat template applied to ``messages`` (a list of {role, content} maps)."""
    if not isinstance(messages, list) or not messages or len(messages) > MAX_MESSAGES:
        raise TypeError(f"messages must be a non-empty list of at most {MAX_MESSAGES} {{role, content}} maps")
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise TypeError("each message must be a map with string 'role' and 'content'")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("this model has no chat template: use generate with a prompt")
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def check_fits(prompt_len: int, context: int, budget_tokens: int) -> None:
    """A prompt must leave room for one token in the context and in the KV budget."""
    if prompt_len >= context:
        raise ValueError(
            f"the prompt is {prompt_len} tokens; the model's context length is {context} tokens "
            f"(the prompt must leave room for at least one generated token)"
        )
    if prompt_len >= budget_tokens:
        raise ValueError(f"the prompt is {prompt_len} tokens; the device's KV budget holds {budget_tokens} tokens")


def new_sequence(
    seq_id: int,
    prompt_ids: list[int],
    params: SamplingParams,
    level: int,
    *,
    sink: Any,
    constraint: Any = None,
    generator: Any = None,
    deadline: float | None = None,
) -> Sequence:
    level = 0 if level < 0 else 7 if level > 7 else int(level)
    return Sequence(
        id=seq_id,
        tokens=list(prompt_ids),
        prompt_len=len(prompt_ids),
        params=params,
        level=level,
        base_level=level,
        sink=sink,
        constraint=constraint,
        generator=generator,
        deadline=deadline,
    )
