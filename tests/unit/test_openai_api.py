"""The OpenAI request checks and answer shapes, without a server."""

from __future__ import annotations

import pytest

from llmos_actors.llm.openai_api import (
    DEFAULT_CHAT_TOKENS,
    DEFAULT_COMPLETION_TOKENS,
    ApiError,
    answer,
    chunk,
    parse_chat,
    parse_completion,
    usage_chunk,
)
from llmos_actors.llm.openai_server import parse_listen

MSG = [{"role": "user", "content": "hi"}]


def test_chat_request_becomes_device_options() -> None:
    job = parse_chat(
        {
            "model": "llm",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            ],
            "max_completion_tokens": 5,
            "temperature": 0,
            "stop": "\n",
            "seed": 3,
            "user": "ignored",
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer"}}},
        }
    )
    assert job.chat and job.id.startswith("chatcmpl-") and not job.stream
    assert job.device_kwargs() == {
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "ab"}],
        "max_tokens": 5,
        "temperature": 0.0,
        "stop": ["\n"],
        "seed": 3,
        "json_schema": {"type": "integer"},
    }


def test_defaults_follow_openai() -> None:
    chat = parse_chat({"model": "m", "messages": MSG})
    assert chat.options == {"max_tokens": DEFAULT_CHAT_TOKENS, "temperature": 1.0}
    text = parse_completion(
        {"model": "m", "prompt": ["once"], "stream": True, "stream_options": {"include_usage": True}}
    )
    assert text.prompt == "once" and text.stream and text.include_usage
    assert text.options["max_tokens"] == DEFAULT_COMPLETION_TOKENS
    assert parse_chat({"model": "m", "messages": MSG, "response_format": {"type": "json_object"}}).options[
        "json_schema"
    ] == {"type": "object"}
    assert "json_schema" not in parse_chat({"model": "m", "messages": MSG, "response_format": {"type": "text"}}).options


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MSG}, "model"),
        ({"model": "m", "messages": MSG, "bogus": 1}, "bogus"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages.[0].role"),
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages.[0].content"),
        ({"model": "m", "messages": MSG, "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "messages": MSG, "max_tokens": True}, "max_tokens"),
        ({"model": "m", "messages": MSG, "temperature": 3}, "temperature"),
        ({"model": "m", "messages": MSG, "temperature": float("nan")}, "temperature"),
        ({"model": "m", "messages": MSG, "n": 3}, "n"),
        ({"model": "m", "messages": MSG, "top_p": 0.9}, "top_p"),
        ({"model": "m", "messages": MSG, "logprobs": True}, "logprobs"),
        ({"model": "m", "messages": MSG, "presence_penalty": 0.5}, "presence_penalty"),
        ({"model": "m", "messages": MSG, "tools": [{"type": "function"}]}, "tools"),
        ({"model": "m", "messages": MSG, "stop": ["a"] * 17}, "stop"),
        ({"model": "m", "messages": MSG, "seed": "1"}, "seed"),
        ({"model": "m", "messages": MSG, "stream": "yes"}, "stream"),
        ({"model": "m", "messages": MSG, "stream_options": {"include_usage": True}}, "stream_options"),
        ({"model": "m", "messages": MSG, "response_format": {"type": "yaml"}}, "response_format"),
        ({"model": "m", "messages": MSG, "response_format": {"type": "json_schema"}}, "response_format"),
        (
            {"model": "m", "messages": MSG, "grammar": 'root ::= "a"', "response_format": {"type": "json_object"}},
            "grammar",
        ),
    ],
)
def test_bad_chat_requests_name_the_field(body: dict, param: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_chat(body)
    err = info.value.body()["error"]
    assert info.value.status == 400 and err["type"] == "invalid_request_error" and err["param"] == param
    assert err["message"]


@pytest.mark.parametrize(
    "body", [[1], {"model": "m"}, {"model": "m", "prompt": ["a", "b"]}, {"model": "m", "prompt": ""}]
)
def test_bad_completion_requests(body) -> None:
    with pytest.raises(ApiError):
        parse_completion(body)


def test_answer_and_chunks() -> None:
    job = parse_chat({"model": "m", "messages": MSG, "stream": True, "stream_options": {"include_usage": True}})
    info = {"finish_reason": "length", "prompt_tokens": 7, "tokens": 3}
    whole = answer(job, 1, "abc", info)
    assert whole["choices"][0]["message"] == {"role": "assistant", "content": "abc"}
    assert whole["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert chunk(job, 1, None, first=True)["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunk(job, 1, "x")["choices"][0]["delta"] == {"content": "x"} and chunk(job, 1, "x")["usage"] is None
    assert chunk(job, 1, None, "stop")["choices"][0]["finish_reason"] == "stop"
    assert usage_chunk(job, 1, info)["choices"] == []
    text = parse_completion({"model": "m", "prompt": "p"})
    assert answer(text, 1, "t", info)["choices"][0]["text"] == "t"
    assert chunk(text, 1, "t")["object"] == "text_completion" and "usage" not in chunk(text, 1, "t")


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:8000") == ("127.0.0.1", 8000)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("8000", ":80", "host:", "h:99999", "h:x"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_listen(bad)
