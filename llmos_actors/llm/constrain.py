"""Constrained output: a JSON schema or a grammar becomes, at each step, the set of tokens the model may emit.

Built on xgrammar, chosen by measurement against lm-format-enforcer and
outlines-core on the SmolLM2 tokenizer (figures in docs/llm.md): it compiles an
agent's action schema in milliseconds, fills a next-token mask in microseconds,
and accepts every tokenization of a valid answer. Compiled grammars are cached
per tokenizer and per schema, because an agent sends the same schema at every
step.

The engine's side of the contract::

    c = build_constraint(tokenizer, json_schema=schema)   # None when nothing constrains
    while not c.is_finished():
        mask = c.allowed(vocab_size)                       # torch.bool [vocab_size], or None
        token = sample(logits.masked_fill(~mask, -inf))
        c.advance(token)
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

#: Longest schema or grammar text accepted (characters, after canonical JSON encoding).
MAX_SPEC_CHARS = 64 * 1024
#: Compiled grammars kept per tokenizer (least recently used dropped first).
CACHE_ENTRIES = 128

_XGR_NOISE = re.compile(r"^\[[\d:]+\] \S+:\d+: ")


def _xgr() -> Any:
    import xgrammar  # imported on first use: the device only pays for it when a request is constrained

    return xgrammar


class Constraint:
    """The grammar state of one sequence: which tokens may come next, advanced token by token."""

    __slots__ = ("_bitmask", "_matcher", "_vocab")

    def __init__(self, matcher: Any, tokenizer_vocab: int) -> None:
        self._matcher = matcher
        self._vocab = tokenizer_vocab
        self._bitmask = np.zeros((tokenizer_vocab + 31) // 32, dtype=np.int32)

    def allowed(self, vocab_size: int) -> torch.Tensor:
        """Mask of the tokens allowed next, ``torch.bool`` of length ``vocab_size``.

        Ids the tokenizer does not have (a model whose embedding is padded past
        the vocabulary) are never allowed. After the end, only stop tokens are.
        """
        self._matcher.fill_next_token_bitmask(self._bitmask)
        bits = np.unpackbits(self._bitmask.view(np.uint8), bitorder="little")
        n = min(vocab_size, self._vocab)
        if n == vocab_size:
            return torch.from_numpy(bits[:n].view(np.bool_))
        mask = torch.zeros(vocab_size, dtype=torch.bool)
        mask[:n] = torch.from_numpy(bits[:n].view(np.bool_))
        return mask

    def advance(self, token_id: int) -> None:
        """Take ``token_id`` as emitted; raises ``ValueError`` if the grammar does not allow it."""
        if not self._matcher.accept_token(int(token_id)):
            raise ValueError(f"token {token_id} is not allowed by the output constraint here")

    def is_finished(self) -> bool:
        """True once the answer is complete and a stop token was taken."""
        return bool(self._matcher.is_terminated())

    def copy(self) -> Constraint:
        """An independent copy in the same state (a preempted sequence keeps one to resume from)."""
        return Constraint(self._matcher.fork(), self._vocab)


class _Compiler:
    """One tokenizer's xgrammar compiler and its cache of compiled grammars."""

    def __init__(self, tokenizer: Any, stop_token_ids: tuple[int, ...]) -> None:
        xgr = _xgr()
        self.vocab = len(tokenizer)
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=self.vocab, stop_token_ids=list(stop_token_ids))
        self.compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        self.cache: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self.lock = threading.Lock()
        self.compiled = 0  # compilations done (cache misses), for tests and stats

    def get(self, kind: str, text: str) -> Any:
        key = (kind, text)
        with self.lock:
            hit = self.cache.get(key)
            if hit is not None:
                self.cache.move_to_end(key)
                return hit
            try:
                if kind == "json_schema":
                    # Compact JSON: a small model cannot wander off into whitespace.
                    compiled = self.compiler.compile_json_schema(text, any_whitespace=False, strict_mode=True)
                else:
                    compiled = self.compiler.compile_grammar(text)
            except RuntimeError as exc:
                what = "json_schema is not supported" if kind == "json_schema" else "grammar is invalid"
                raise ValueError(f"{what}: {_clean(exc)}") from None
            self.compiled += 1
            self.cache[key] = compiled
            if len(self.cache) > CACHE_ENTRIES:
                self.cache.popitem(last=False)
            return compiled


_compilers: weakref.WeakKeyDictionary[Any, dict[tuple[int, ...], _Compiler]] = weakref.WeakKeyDictionary()
_compilers_lock = threading.Lock()


def _clean(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return _XGR_NOISE.sub("", lines[0]) if lines else type(exc).__name__


def compiler_for(tokenizer: Any, stop_token_ids: tuple[int, ...] | None = None) -> _Compiler:
    """The (cached) compiler for ``tokenizer``; building one reads the whole vocabulary (~0.2 s)."""
    stops = stop_token_ids if stop_token_ids is not None else _stop_ids(tokenizer)
    with _compilers_lock:
        per_tokenizer = _compilers.setdefault(tokenizer, {})
        compiler = per_tokenizer.get(stops)
        if compiler is None:
            compiler = per_tokenizer[stops] = _Compiler(tokenizer, stops)
        return compiler


def _stop_ids(tokenizer: Any) -> tuple[int, ...]:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("constrained output needs a tokenizer with an end-of-sequence token")
    return tuple(eos) if isinstance(eos, (list, tuple)) else (int(eos),)


def schema_text(json_schema: Any) -> str:
    """Check ``json_schema`` (a dict or its JSON text) and return it as compact JSON text.

    Raises:
        ValueError: not JSON, not a valid JSON Schema, or longer than ``MAX_SPEC_CHARS``.
    """
    if isinstance(json_schema, str):
        if len(json_schema) > MAX_SPEC_CHARS:
            raise ValueError(f"json_schema is longer than {MAX_SPEC_CHARS} characters")
        try:
            json_schema = json.loads(json_schema)
        except json.JSONDecodeError as exc:
            raise ValueError(f"json_schema is not valid JSON: {exc}") from None
    if not isinstance(json_schema, dict):
        raise ValueError(f"json_schema must be a JSON object (a dict), not {type(json_schema).__name__}")
    try:  # keys keep their order: properties are generated in the order the schema lists them
        text = json.dumps(json_schema, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"json_schema is not JSON data: {exc}") from None
    if len(text) > MAX_SPEC_CHARS:
        raise ValueError(f"json_schema is longer than {MAX_SPEC_CHARS} characters")
    import jsonschema

    try:
        jsonschema.validators.validator_for(json_schema).check_schema(json_schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ValueError(f"invalid json_schema at {where}: {exc.message}") from None
    return text


def build_constraint(
    tokenizer: Any,
    json_schema: Any = None,
    grammar: str | None = None,
    *,
    stop_token_ids: tuple[int, ...] | None = None,
) -> Constraint | None:
    """A fresh ``Constraint`` for one request, or None when neither ``json_schema`` nor ``grammar`` is given.

    Args:
        tokenizer: the model's Hugging Face tokenizer.
        json_schema: a JSON Schema (dict or JSON text) the answer must validate against.
        grammar: an EBNF grammar (GBNF, as llama.cpp writes it) with a ``root`` rule.
        stop_token_ids: the tokens that end the answer (default: the tokenizer's EOS).

    Raises:
        ValueError: both given, an invalid or unsupported schema, an invalid grammar, or a spec too long.
    """
    if json_schema is None and grammar is None:
        return None
    if json_schema is not None and grammar is not None:
        raise ValueError("give json_schema or grammar, not both")
    if json_schema is not None:
        kind, text = "json_schema", schema_text(json_schema)
    else:
        if not isinstance(grammar, str):
            raise ValueError(f"grammar must be a string (EBNF with a root rule), not {type(grammar).__name__}")
        if len(grammar) > MAX_SPEC_CHARS:
            raise ValueError(f"grammar is longer than {MAX_SPEC_CHARS} characters")
        kind, text = "grammar", grammar
    stops = tuple(int(t) for t in stop_token_ids) if stop_token_ids is not None else None
    compiler = compiler_for(tokenizer, stops)
    compiled = compiler.get(kind, text)
    return Constraint(_xgr().GrammarMatcher(compiled), compiler.vocab)
