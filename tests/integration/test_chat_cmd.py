"""``llmos chat`` driven through its stdin against a real device (tiny random-weight model), and the device
figures in ``llmos ps`` / ``llmos top``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from llm_tiny import build_model_dir

from llmos_actors.cli.__main__ import main
from llmos_actors.llm import LLM
from llmos_actors.testing import wait_for

pytestmark = pytest.mark.timeout(300)


def _device(daemon, path, name: str):
    kernel = daemon.connect()
    llm = kernel.spawn(LLM, model=str(path), name=name, block_size=4)
    wait_for(lambda: llm.call("stats")["state"] == "ready", timeout=120, what="the model to load")
    yield llm
    kernel.kill(llm, force=True)


@pytest.fixture(scope="module")
def device(daemon, tmp_path_factory):
    yield from _device(daemon, build_model_dir(tmp_path_factory.mktemp("tiny-chat")), "llm-chat")


@pytest.fixture(scope="module")
def long_device(daemon, tmp_path_factory):
    """A long context and a greedy answer that never ends by itself: only Ctrl-C can stop it."""
    path = build_model_dir(tmp_path_factory.mktemp("tiny-chat-long"), context=1 << 15, greedy_never_ends=True)
    yield from _device(daemon, path, "llm-chat-long")


def _chat_cmd(daemon, *extra: str, name: str = "llm-chat") -> tuple[list[str], dict]:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    argv = [sys.executable, "-m", "llmos_actors.cli", "--runtime-dir", str(daemon.runtime_dir), "chat", name]
    return [*argv, "--temperature", "0", *extra], env


def test_conversation_through_stdin(daemon, device) -> None:
    first = [{"role": "user", "content": "hello world"}]
    answer1 = device.call("chat", first, max_tokens=8)
    second = [*first, {"role": "assistant", "content": answer1}, {"role": "user", "content": "the quick brown fox"}]
    answer2 = device.call("chat", second, max_tokens=8)
    after_reset = device.call("chat", [{"role": "user", "content": "pages of keys"}], max_tokens=8)
    argv, env = _chat_cmd(daemon, "--max-tokens", "8")
    script = "hello world\n/stats\nthe quick brown fox\n/reset\npages of keys\n/exit\nnever sent\n"
    done = subprocess.run(argv, input=script, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith(answer1 + "\n{")
    stats_text, rest = out[len(answer1) + 1 :].split("\n}\n", 1)
    assert json.loads(stats_text + "}")["state"] == "ready"
    assert rest == f"{answer2}\n{after_reset}\n"


def test_tokens_show_while_the_answer_is_made_and_ctrl_c_stops_it(daemon, long_device) -> None:
    device = long_device
    argv, env = _chat_cmd(daemon, "--max-tokens", "30000", name="llm-chat-long")
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        proc.stdin.write(b"hello world\n")
        proc.stdin.flush()
        first = os.read(proc.stdout.fileno(), 1)  # the first piece arrives ...
        assert first
        assert device.call("stats")["running"] == 1  # ... while the device is still making the answer
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: device.call("stats")["running"] == 0, timeout=30, what="the answer to be stopped")
        proc.stdin.close()
        rest = (first + proc.stdout.read()).decode()
        assert proc.wait(timeout=30) == 0
        assert rest.endswith(" [stopped]\n")
        assert device.call("stats")["kv_blocks_used"] == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_bad_input_is_reported_and_the_chat_goes_on(daemon, device) -> None:
    argv, env = _chat_cmd(daemon, "--max-tokens", "4")
    done = subprocess.run(
        argv, input="fox " * 3000 + "\nhello world\n", capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0
    assert "context length" in done.stderr
    assert done.stdout.strip().splitlines()[-1] == device.call(
        "chat", [{"role": "user", "content": "hello world"}], max_tokens=4
    )


def test_ps_and_top_show_the_device(daemon, device, capsys) -> None:
    device.call("generate", "hello", max_tokens=4)
    assert main(["--runtime-dir", str(daemon.runtime_dir), "ps", "--live"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("DEVICE"))
    assert header.split()[:5] == ["DEVICE", "MODEL", "STATE", "TOK/S", "BATCH"]
    line = next(line for line in out.splitlines() if line.startswith("llm-chat") and "ready" in line)
    assert "/" in line.split()[8]  # KV blocks used/total
    assert main(["--runtime-dir", str(daemon.runtime_dir), "ps", "--json", "--live"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["llm-chat"]["device"]["state"] == "ready" and "tokens_per_s" in rows["llm-chat"]["device"]
    assert main(["--runtime-dir", str(daemon.runtime_dir), "top", "--once", "-n", "0.2"]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("llm-chat") and "ready" in line for line in out.splitlines())
