"""The OpenAI-compatible endpoint, driven by the official ``openai`` client over loopback, in front of a real
device serving a tiny random-weight model."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("aiohttp")
openai = pytest.importorskip("openai")
jsonschema = pytest.importorskip("jsonschema")

from llm_tiny import build_model_dir  # noqa: E402

from llmos_actors.cli.__main__ import main  # noqa: E402
from llmos_actors.llm import LLM  # noqa: E402
from llmos_actors.llm.openai_server import OpenAIServer  # noqa: E402
from llmos_actors.testing import wait_for  # noqa: E402

pytestmark = pytest.mark.timeout(300)
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello world"}]
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"enum": ["yes", "no"]}, "n": {"type": "integer", "minimum": 0, "maximum": 9}},
    "required": ["answer", "n"],
}


@pytest.fixture(scope="module")
def served(daemon, tmp_path_factory):
    """A tiny device ``llm-oa`` and an endpoint in front of it; yields (kernel, device ref, base URL)."""
    path = build_model_dir(tmp_path_factory.mktemp("tiny-oa"))
    kernel = daemon.connect()
    llm = kernel.spawn(LLM, model=str(path), name="llm-oa", block_size=4)
    wait_for(lambda: llm.call("stats")["state"] == "ready", timeout=120, what="the model to load")
    server = kernel.spawn(OpenAIServer, "llm-oa", "127.0.0.1:0", name="openai-t")
    url = server.call("address")
    yield kernel, llm, url
    kernel.kill(server, force=True)
    kernel.kill(llm, force=True)


@pytest.fixture
def client(served):
    with openai.OpenAI(base_url=served[2], api_key="-", max_retries=0, timeout=120) as c:
        yield c


def test_models(client) -> None:
    assert [m.id for m in client.models.list().data] == ["llm-oa"]
    assert client.models.retrieve("llm-oa").owned_by == "llmos"
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.models.retrieve("gpt-4o")


def test_chat_equals_the_device_and_streams_the_same(served, client) -> None:
    _, llm, _ = served
    want = llm.call("chat", MESSAGES, max_tokens=12, ignore_eos=True)
    got = client.chat.completions.create(
        model="llm-oa", messages=MESSAGES, max_tokens=12, temperature=0, extra_body={"ignore_eos": True}
    )
    assert got.choices[0].message.content == want and got.choices[0].finish_reason == "length"
    assert got.object == "chat.completion" and got.usage.completion_tokens == 12 and got.usage.prompt_tokens > 0
    chunks = list(
        client.chat.completions.create(
            model="llm-oa",
            messages=MESSAGES,
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == want
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # pieces, not one blob


def test_completions_plain_and_streamed(served, client) -> None:
    _, llm, _ = served
    want = llm.call("generate", "the quick brown fox", max_tokens=10, ignore_eos=True)
    got = client.completions.create(
        model="llm-oa", prompt="the quick brown fox", max_tokens=10, temperature=0, extra_body={"ignore_eos": True}
    )
    assert got.choices[0].text == want and got.usage.completion_tokens == 10
    stream = client.completions.create(
        model="llm-oa",
        prompt="the quick brown fox",
        max_tokens=10,
        temperature=0,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    assert "".join(c.choices[0].text for c in stream) == want


def test_response_format_json_schema_validates(client) -> None:
    for seed in range(3):
        for stream in (False, True):
            kwargs = dict(
                model="llm-oa",
                messages=MESSAGES,
                max_tokens=64,
                temperature=1.0,
                seed=seed,
                response_format={"type": "json_schema", "json_schema": {"name": "reply", "schema": SCHEMA}},
            )
            if stream:
                text = "".join(
                    c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kwargs)
                )
            else:
                reply = client.chat.completions.create(**kwargs)
                assert reply.choices[0].finish_reason == "stop"
                text = reply.choices[0].message.content
            jsonschema.validate(json.loads(text), SCHEMA)


def test_priority_header_reaches_the_device(served, client) -> None:
    _, llm, _ = served
    client.with_options(default_headers={"X-Llmos-Priority": "6"}).completions.create(
        model="llm-oa", prompt="hello", max_tokens=2, temperature=0
    )
    admits = [d for d in llm.call("decisions") if d["action"] == "admit"]
    assert admits[-1]["level"] == 6


@pytest.mark.parametrize(
    ("kwargs", "error", "param", "text"),
    [
        ({"model": "nope"}, openai.NotFoundError, "model", "does not exist"),
        ({"max_tokens": 0}, openai.BadRequestError, "max_tokens", "max_tokens must be"),
        ({"n": 2}, openai.BadRequestError, "n", "not supported"),
        ({"top_p": 0.5}, openai.BadRequestError, "top_p", "top_p"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, openai.BadRequestError, "tools", "tools"),
        ({"extra_body": {"frobnicate": 1}}, openai.BadRequestError, "frobnicate", "Unrecognized request argument"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, openai.BadRequestError, "messages.[0].role", "role"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "frog"}}}},
            openai.BadRequestError,
            None,
            "invalid json_schema",
        ),
        ({"messages": [{"role": "user", "content": "fox " * 2000}]}, openai.BadRequestError, None, "context length"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_bad_requests_get_openai_errors_and_disturb_nothing(client, kwargs, error, param, text, stream) -> None:
    request = {"model": "llm-oa", "messages": MESSAGES, "max_tokens": 4, "stream": stream, **kwargs}
    with pytest.raises(error) as info:
        result = client.chat.completions.create(**request)
        list(result) if stream else None
    assert text in info.value.message
    assert info.value.body["param"] == param if isinstance(info.value.body, dict) else True
    ok = client.chat.completions.create(model="llm-oa", messages=MESSAGES, max_tokens=3, temperature=0)
    assert ok.choices[0].message.content is not None


def _raw(url: str, data: bytes, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_malformed_http_gets_error_objects(served) -> None:
    base = served[2]
    status, body = _raw(base + "/chat/completions", b"{not json")
    assert status == 400 and "not valid JSON" in body["error"]["message"]
    status, body = _raw(base + "/chat/completions", b"[1, 2]")
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    status, body = _raw(base + "/chat/completions", b"x" * (5 << 20))
    assert status == 413 and body["error"]["code"] == "request_too_large"
    status, body = _raw(base + "/nowhere", b"{}")
    assert status == 404 and body["error"]["code"] == "not_found"
    good = json.dumps({"model": "llm-oa", "prompt": "hi", "max_tokens": 1}).encode()
    status, body = _raw(base + "/completions", good, {"X-Llmos-Priority": "9"})
    assert status == 400 and body["error"]["param"] == "X-Llmos-Priority"
    status, body = _raw(base + "/completions", good)
    assert status == 200 and body["usage"]["completion_tokens"] == 1


def test_hanging_up_cancels_the_sequence(served, client) -> None:
    _, llm, _ = served
    stream = client.completions.create(
        model="llm-oa", prompt="hello", max_tokens=400, temperature=0, stream=True, extra_body={"ignore_eos": True}
    )
    for i, _chunk in enumerate(stream):
        if i == 2:
            break
    stream.close()
    wait_for(lambda: llm.call("stats")["running"] == 0, timeout=30, what="the sequence to be cancelled")
    stats = llm.call("stats")
    assert stats["kv_blocks_used"] == 0 and stats["tokens_total"] < 10_000
    assert any(d["action"] == "cancel" for d in llm.call("decisions"))


def test_api_key(served, tmp_path) -> None:
    kernel = served[0]
    key = tmp_path / "key"
    key.write_text("s3cret\n")
    server = kernel.spawn(OpenAIServer, "llm-oa", "127.0.0.1:0", api_key_file=str(key), name="openai-key")
    try:
        url = server.call("address")
        with (
            openai.OpenAI(base_url=url, api_key="wrong", max_retries=0) as bad_client,
            pytest.raises(openai.AuthenticationError),
        ):
            bad_client.models.list()
        with openai.OpenAI(base_url=url, api_key="s3cret", max_retries=0) as good_client:
            assert good_client.models.list().data[0].id == "llm-oa"
    finally:
        kernel.kill(server, force=True)


def test_cli_serve_openai(served, daemon, capsys) -> None:
    code = main(["--runtime-dir", str(daemon.runtime_dir), "serve-openai", "--llm", "llm-oa", "--listen", "127.0.0.1:0",
                 "--name", "openai-cli", "--json"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    try:
        assert code == 0 and out["models"] == ["llm-oa"] and out["url"].startswith("http://127.0.0.1:")
        with openai.OpenAI(base_url=out["url"], api_key="-", max_retries=0) as c:
            assert c.models.list().data[0].id == "llm-oa"
    finally:
        served[0].kill("openai-cli", force=True)
    assert main(["--runtime-dir", str(daemon.runtime_dir), "serve-openai", "--llm", "nobody", "--listen", ":x"]) != 0
    assert main(["--runtime-dir", str(daemon.runtime_dir), "serve-openai", "--llm", "nobody"]) == 3
