"""The OpenAI wire format: request bodies checked and turned into device calls, answers and chunks shaped.

Pure functions, no sockets: ``openai_server`` puts them behind HTTP. A field the device
cannot honour (``n`` > 1, ``top_p`` < 1, tools, log-probabilities) is refused with an
OpenAI error object naming it, never silently ignored; fields with no effect on the answer
(``user``, ``metadata``, ...) are accepted. Two extensions, as vLLM spells them:
``grammar`` (an EBNF grammar) and ``ignore_eos``.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Any

#: Tokens made when a completion request gives no ``max_tokens`` (the OpenAI default).
DEFAULT_COMPLETION_TOKENS = 16
#: Tokens made at most when a chat request gives none (the context length ends it earlier).
DEFAULT_CHAT_TOKENS = 1024
#: Largest ``max_tokens`` accepted.
MAX_TOKENS_LIMIT = 1 << 16
#: Fields accepted and ignored: they do not change the answer.
IGNORED = frozenset({"user", "metadata", "store", "service_tier", "parallel_tool_calls", "prompt_cache_key"})
COMMON = frozenset(
    {"model", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop", "seed"}
    | {"presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "grammar", "ignore_eos"}
)
COMPLETION_FIELDS = COMMON | IGNORED | {"prompt", "echo", "suffix", "best_of"}
CHAT_FIELDS = COMMON | IGNORED | {"messages", "max_completion_tokens", "response_format", "top_logprobs"}
CHAT_FIELDS |= {"tools", "tool_choice", "functions", "function_call"}
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class ApiError(Exception):
    """A request the endpoint refuses, as an OpenAI error object with its HTTP status."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, kind: str = "invalid_request_error", code=None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.kind = kind
        self.code = code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


@dataclass
class Job:
    """One request, ready for the device: ``llm.stream("complete", prompt=/messages=, **options)``."""

    chat: bool
    model: str
    stream: bool
    include_usage: bool
    prompt: str | None = None
    messages: list[dict] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def device_kwargs(self) -> dict[str, Any]:
        return {"messages": self.messages, **self.options} if self.chat else {"prompt": self.prompt, **self.options}


def _check_fields(body: Any, allowed: frozenset[str]) -> dict:
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise bad(f"Unrecognized request argument supplied: {unknown[0]}", unknown[0])
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("you must provide a model parameter (the device's name, see /v1/models)", "model")
    return body


def _number(body: dict, name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if type(value) not in (int, float) or not math.isfinite(value) or not low <= value <= high:
        raise bad(f"{name} must be a number from {low:g} to {high:g}, not {value!r}", name)
    return float(value)


def _unsupported(body: dict, name: str, allowed: tuple, why: str) -> None:
    if name in body and body[name] not in allowed:
        raise bad(f"{name}={body[name]!r} is not supported: {why}", name, "unsupported_parameter")


def _common(body: dict, chat: bool) -> tuple[dict[str, Any], bool, bool]:
    """Device options, stream, include_usage: what completions and chat share."""
    _unsupported(body, "n", (None, 1), "the device makes one choice per request")
    _unsupported(body, "best_of", (None, 1), "the device makes one choice per request")
    _unsupported(body, "echo", (None, False), "the prompt is not echoed")
    _unsupported(body, "suffix", (None, ""), "no insertion mode")
    _unsupported(body, "logprobs", (None, False, 0), "log-probabilities are not reported")
    _unsupported(body, "top_logprobs", (None, 0), "log-probabilities are not reported")
    _unsupported(body, "logit_bias", (None, {}), "use response_format or grammar to restrict tokens")
    for name in ("presence_penalty", "frequency_penalty"):
        _unsupported(body, name, (None, 0, 0.0), "no penalties; sampling is greedy or by temperature")
    if _number(body, "top_p", 1.0, 0.0, 1.0) != 1.0:
        raise bad("top_p below 1 is not supported: sampling is greedy or by temperature alone", "top_p")
    options: dict[str, Any] = {"temperature": _number(body, "temperature", 1.0, 0.0, 2.0)}
    name = "max_completion_tokens" if chat and body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = body.get(name)
    if max_tokens is None:
        max_tokens = DEFAULT_CHAT_TOKENS if chat else DEFAULT_COMPLETION_TOKENS
    if type(max_tokens) is not int or not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise bad(f"{name} must be an integer from 1 to {MAX_TOKENS_LIMIT}, not {max_tokens!r}", name)
    options["max_tokens"] = max_tokens
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 16:
            raise bad("stop must be a non-empty string or a list of at most 16 of them", "stop")
        options["stop"] = stop
    seed = body.get("seed")
    if seed is not None:
        if type(seed) is not int:
            raise bad(f"seed must be an integer, not {seed!r}", "seed")
        options["seed"] = seed
    if body.get("grammar") is not None:
        if not isinstance(body["grammar"], str):
            raise bad("grammar must be a string (EBNF with a root rule)", "grammar")
        options["grammar"] = body["grammar"]
    if body.get("ignore_eos") is not None:
        if type(body["ignore_eos"]) is not bool:
            raise bad("ignore_eos must be true or false", "ignore_eos")
        options["ignore_eos"] = body["ignore_eos"]
    stream = body.get("stream") or False
    if type(stream) is not bool:
        raise bad("stream must be true or false", "stream")
    include_usage = False
    stream_options = body.get("stream_options")
    if stream_options is not None:
        if not stream:
            raise bad("stream_options is only allowed when stream is true", "stream_options")
        if not isinstance(stream_options, dict) or set(stream_options) - {"include_usage"}:
            raise bad("stream_options takes only include_usage", "stream_options")
        include_usage = stream_options.get("include_usage") is True
    return options, stream, include_usage


def parse_completion(body: Any) -> Job:
    """A ``/v1/completions`` body as a ``Job``; raises ``ApiError`` naming the bad field."""
    body = _check_fields(body, COMPLETION_FIELDS)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise bad("prompt must be a non-empty string (one prompt per request)", "prompt")
    options, stream, include_usage = _common(body, chat=False)
    return Job(False, body["model"], stream, include_usage, prompt=prompt, options=options, id=new_id("cmpl"))


def _content(message: dict, index: int) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad("only text content parts are supported", f"messages.[{index}].content")
            parts.append(part["text"])
        return "".join(parts)
    raise bad("message content must be a string or a list of text parts", f"messages.[{index}].content")


def _response_format(value: Any) -> dict | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise bad("response_format.json_schema must be an object with a name", "response_format")
        schema = spec.get("schema", {"type": "object"})
        if not isinstance(schema, dict):
            raise bad("response_format.json_schema.schema must be a JSON Schema object", "response_format")
        return schema
    raise bad("response_format.type must be text, json_object or json_schema", "response_format")


def parse_chat(body: Any) -> Job:
    """A ``/v1/chat/completions`` body as a ``Job``; raises ``ApiError`` naming the bad field."""
    body = _check_fields(body, CHAT_FIELDS)
    if body.get("tools") or body.get("functions"):
        raise bad("tools are not supported: constrain the answer with response_format json_schema", "tools")
    _unsupported(body, "tool_choice", (None, "none", "auto"), "tools are not supported")
    _unsupported(body, "function_call", (None, "none", "auto"), "tools are not supported")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("messages must be a non-empty list", "messages")
    converted = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            raise bad(f"messages.[{i}].role must be one of {', '.join(ROLES)}, not {role!r}", f"messages.[{i}].role")
        converted.append({"role": ROLES[role], "content": _content(message, i)})
    options, stream, include_usage = _common(body, chat=True)
    schema = _response_format(body.get("response_format"))
    if schema is not None:
        if "grammar" in options:
            raise bad("give response_format or grammar, not both", "grammar")
        options["json_schema"] = schema
    return Job(True, body["model"], stream, include_usage, messages=converted, options=options, id=new_id("chatcmpl"))


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def usage(info: dict) -> dict:
    prompt, made = int(info.get("prompt_tokens", 0)), int(info.get("tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": made, "total_tokens": prompt + made}


def answer(job: Job, created: int, text: str, info: dict) -> dict:
    """The whole (non-streamed) response."""
    finish = info.get("finish_reason", "stop")
    if job.chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None}
        obj = "text_completion"
    choice["finish_reason"] = finish
    return {
        "id": job.id,
        "object": obj,
        "created": created,
        "model": job.model,
        "choices": [choice],
        "usage": usage(info),
    }


def chunk(job: Job, created: int, text: str | None, finish: str | None = None, *, first: bool = False) -> dict:
    """One server-sent event of a streamed response (``text`` None with ``finish``: the last one)."""
    if job.chat:
        delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
        if text:
            delta["content"] = text
        choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        obj = "text_completion"
    out = {"id": job.id, "object": obj, "created": created, "model": job.model, "choices": [choice]}
    if job.include_usage:
        out["usage"] = None
    return out


def usage_chunk(job: Job, created: int, info: dict) -> dict:
    obj = "chat.completion.chunk" if job.chat else "text_completion"
    return {"id": job.id, "object": obj, "created": created, "model": job.model, "choices": [], "usage": usage(info)}
