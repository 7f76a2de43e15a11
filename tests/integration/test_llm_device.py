"""The LLM device through a real daemon: concurrent greedy requests equal ``model.generate``,
preemption and prefix cache keep the tokens, streams cancel, deaths and restarts, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from llm_tiny import PROMPTS, build_model_dir, build_tokenizer, reference_greedy

import llmos_actors as llmos
from llmos_actors.testing import wait_for

MAX_TOKENS = 24
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_model_dir(tmp_path_factory.mktemp("tiny-llama"))
    tok = build_tokenizer()
    texts = [tok.decode(ids) for ids in reference_greedy(path, PROMPTS, MAX_TOKENS)]
    return str(path), texts


def spawn(kernel, path, name, **settings):
    settings.setdefault("kv_blocks", 512)  # the tiny model's blocks are 2 KiB: a 1 MiB budget
    settings.setdefault("cpus", 1)  # one torch thread: nothing to spin-wait for on a busy machine
    llm = kernel.spawn(llmos.LLM, model=path, name=name, **settings)
    wait_for(lambda: llm.call("stats")["state"] == "ready", timeout=120, what="the model to load")
    return llm


def concurrent(llm, prompts, **kw):
    futures = [llm.ask("generate", p, max_tokens=MAX_TOKENS, ignore_eos=True, **kw) for p in prompts]
    return [f.result(timeout=120) for f in futures]


def test_eight_concurrent_requests_equal_generate(kernel, tiny):
    path, want = tiny
    llm = spawn(kernel, path, "llm-eq", block_size=4, kv_blocks=4096)  # 8 MiB of pool pages
    assert concurrent(llm, PROMPTS) == want
    stats = llm.call("stats")
    assert stats["tokens_total"] >= 8 * MAX_TOKENS
    assert stats["running"] == 0 and stats["kv_blocks_used"] == 0
    assert "llm-eq" in kernel.status()["pages"]["largest_holders"]  # the KV budget is pool pages


@pytest.mark.parametrize("mode", ["swap", "recompute"])
def test_preemption_and_resume_keep_the_tokens(kernel, tiny, mode):
    path, want = tiny
    llm = spawn(kernel, path, f"llm-{mode}", block_size=4, kv_blocks=40, preempt=mode, prefix_cache=False)
    assert concurrent(llm, PROMPTS) == want
    stats = llm.call("stats")
    assert stats["preemptions"] > 0
    assert stats["swap_outs" if mode == "swap" else "recomputes"] > 0
    assert stats["kv_blocks_used"] == 0 and stats["swapped"] == 0


def test_prefix_cache_hit_keeps_the_tokens(kernel, tiny):
    path, want = tiny
    llm = spawn(kernel, path, "llm-prefix", block_size=4)
    assert llm.call("generate", PROMPTS[6], max_tokens=MAX_TOKENS, ignore_eos=True) == want[6]
    hits = llm.call("stats")["prefix_hits"]
    assert llm.call("generate", PROMPTS[6], max_tokens=MAX_TOKENS, ignore_eos=True) == want[6]
    assert llm.call("stats")["prefix_hits"] > hits


def test_stream_pieces_and_close_frees_blocks(kernel, tiny):
    path, want = tiny
    llm = spawn(kernel, path, "llm-stream", block_size=4, prefix_cache=False)
    pieces = list(llm.stream("generate", PROMPTS[0], max_tokens=MAX_TOKENS, ignore_eos=True))
    assert len(pieces) > 1 and "".join(pieces) == want[0]
    stream = llm.stream("generate", PROMPTS[1], max_tokens=400, ignore_eos=True)
    next(stream)
    assert llm.call("stats")["kv_blocks_used"] > 0
    stream.close()
    wait_for(lambda: llm.call("stats")["kv_blocks_used"] == 0, timeout=10, what="blocks freed")
    assert llm.call("stats")["running"] == 0


def test_priority_reaches_the_scheduler(kernel, tiny):
    path, _ = tiny
    llm = spawn(kernel, path, "llm-prio", block_size=4)
    llm.options(priority=7).call("generate", PROMPTS[0], max_tokens=2)
    llm.options(priority=1).call("generate", PROMPTS[0], max_tokens=2)
    assert list(llm.options(priority=6).stream("generate", PROMPTS[0], max_tokens=2))
    llm.options(objective=5.0).call("generate", PROMPTS[0], max_tokens=2)  # the goal function's level
    levels = [d["level"] for d in llm.call("decisions") if d["action"] == "admit"]
    assert levels[-4:] == [7, 1, 6, 5]


def test_decisions_are_published_on_a_system_topic_every_one_counted(kernel, tiny):
    path, _ = tiny
    with kernel.subscribe("sys.device.decision") as sub:
        llm = spawn(kernel, path, "llm-decide", block_size=4)
        futures = [llm.ask("generate", PROMPTS[i % 8], max_tokens=2) for i in range(40)]
        for f in futures:
            f.result(timeout=120)
        total = llm.call("stats")["decisions"]
        assert total >= 40  # an admission each, at least
        seen, skipped, admitted = 0, 0, set()

        def all_accounted():
            nonlocal seen, skipped
            while True:
                try:
                    topic, entry = sub.get(timeout=0.05)
                except llmos.CallTimeout:
                    break
                assert topic == "sys.device.decision" and entry["actor"] == "llm-decide" and entry["actor_id"]
                if entry["action"] == "skipped":  # over the per-heartbeat bound: counted, not sent
                    skipped += entry["count"]
                else:
                    seen += 1
                    admitted.update([entry["seq"]] if entry["action"] == "admit" else [])
            return seen + skipped == total

        wait_for(all_accounted, timeout=30, what="every decision published or counted as skipped")
    kept = {d["seq"] for d in llm.call("decisions", last=200) if d["action"] == "admit"}
    assert admitted <= kept and (len(admitted) == 40 or skipped > 0)


@pytest.fixture(scope="module")
def long_tiny(tmp_path_factory):
    """The tiny model with a 32k context: a 100,000-token request runs far longer than any test
    waits, so only a cancellation can free its blocks."""
    return str(build_model_dir(tmp_path_factory.mktemp("tiny-llama-long"), context=1 << 15))


CALLER = """
import sys, llmos_actors as llmos
runtime, how = sys.argv[1], sys.argv[2]
with llmos.connect(runtime) as k:
    llm = k.lookup("llm-caller")
    print("calling", flush=True)
    if how == "stream":
        for piece in llm.stream("generate", "hello world", max_tokens=100000, ignore_eos=True):
            print("piece", flush=True)
    else:
        print(llm.call("generate", "hello world", max_tokens=100000, ignore_eos=True), flush=True)
"""


@pytest.mark.parametrize("how", ["stream", "call"])
def test_killed_caller_frees_blocks(kernel, long_tiny, daemon, how):
    llm = spawn(kernel, long_tiny, "llm-caller", block_size=16, kv_blocks=4096, prefix_cache=False)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = [sys.executable, "-c", CALLER, str(daemon.runtime_dir), how]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env)
    try:
        assert child.stdout.readline().startswith(b"calling")
        wait_for(lambda: llm.call("stats")["tokens_total"] > 2, timeout=60, what="the child's generation to run")
        assert llm.call("stats")["running"] == 1
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    wait_for(lambda: llm.call("stats")["kv_blocks_used"] == 0, timeout=30, what="blocks freed")
    stats = llm.call("stats")
    assert stats["running"] == 0 and stats["tokens_total"] < 30_000  # cancelled, not run to its end
    assert [d["action"] for d in llm.call("decisions")][-1] == "cancel"


def test_kill_9_fails_pending_requests_and_permanent_device_returns(kernel, tiny):
    path, want = tiny
    llm = spawn(kernel, path, "llm-perm", block_size=4, restart="permanent")
    pid = next(row["pid"] for row in kernel.ps() if row["name"] == "llm-perm" and row["state"] == "running")
    futures = [llm.ask("generate", p, max_tokens=100000, ignore_eos=True) for p in PROMPTS]
    wait_for(lambda: llm.call("stats")["running"] == 8, timeout=30, what="all eight running")
    os.kill(pid, signal.SIGKILL)
    for f in futures:
        with pytest.raises(llmos.ActorDiedError):
            f.result(timeout=30)

    def back():
        rows = [r for r in kernel.ps() if r["name"] == "llm-perm" and r["state"] == "running"]
        return rows and rows[0]["pid"] != pid

    wait_for(back, timeout=60, what="the permanent device restarted")
    again = kernel.lookup("llm-perm")
    wait_for(lambda: again.call("stats")["state"] == "ready", timeout=120, what="the model to load")
    assert again.call("generate", PROMPTS[0], max_tokens=MAX_TOKENS, ignore_eos=True) == want[0]


def test_bad_input_is_refused_clearly_and_disturbs_nothing(kernel, tiny):
    path, want = tiny
    llm = spawn(kernel, path, "llm-bad", block_size=4)
    stream = llm.stream("generate", PROMPTS[2], max_tokens=MAX_TOKENS, ignore_eos=True)
    first = next(stream)
    with pytest.raises(llmos.RemoteError, match="context length is 512"):
        llm.call("generate", "hello world " * 400)
    with pytest.raises(llmos.RemoteError, match=r"max_tokens must be an integer >= 1"):
        llm.call("generate", "hello", max_tokens=0)
    with pytest.raises(llmos.RemoteError, match=r"unknown option.*top_q"):
        llm.call("generate", "hello", top_q=0.5)
    with pytest.raises(llmos.RemoteError, match="temperature"):
        llm.call("generate", "hello", temperature=-1)
    with pytest.raises(llmos.LlmosError, match=r"schema|constrain"):
        llm.call("generate", "hello", json_schema={"type": "no-such-type"})
    with pytest.raises(llmos.RemoteError, match="messages"):
        llm.call("chat", "not a list")
    assert first + "".join(stream) == want[2]  # the stream in flight was not disturbed
    assert llm.call("generate", PROMPTS[3], max_tokens=MAX_TOKENS, ignore_eos=True) == want[3]
    assert llm.call("stats")["kv_blocks_used"] == 0


def test_missing_model_fails_the_spawn_clearly(kernel, tmp_path):
    with pytest.raises(llmos.ActorDiedError, match="does not exist"):
        kernel.spawn(llmos.LLM, model=str(tmp_path / "nope.gguf"), name="llm-missing")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model")
    with pytest.raises(llmos.ActorDiedError, match="not a GGUF file"):
        kernel.spawn(llmos.LLM, model=str(junk), name="llm-junk")


def test_a_corrupt_or_incomplete_model_fails_the_spawn_clearly(kernel, tiny, tmp_path):
    pytest.importorskip("gguf")
    from llm_tiny import write_gguf

    data = write_gguf(tmp_path / "tiny.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) - 100])  # readable, the magic right, a tensor short
    with pytest.raises(llmos.ActorDiedError, match=r"not a valid GGUF file: tensor .* ends at byte"):
        kernel.spawn(llmos.LLM, model=str(cut), name="llm-cut")
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF" + os.urandom(4096))
    with pytest.raises(llmos.ActorDiedError, match="not a valid GGUF file"):
        kernel.spawn(llmos.LLM, model=str(garbage), name="llm-garbage")
    path, _ = tiny
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in os.listdir(path):  # the model directory without its weights
        if not f.endswith(".safetensors"):
            shutil.copy(os.path.join(path, f), bare / f)
    with pytest.raises(llmos.ActorDiedError, match="has no weights"):
        kernel.spawn(llmos.LLM, model=str(bare), name="llm-bare")
    assert not [r for r in kernel.ps(exited=False) if r["name"] in ("llm-cut", "llm-garbage", "llm-bare")]


def test_a_model_that_fails_to_load_fails_the_device_with_the_load_error(kernel, tiny, tmp_path):
    """Files that pass the spawn's check but do not load (a config that does not match its weights):
    the device dies with the load error, so a waiting caller gets ActorDiedError naming it, not its deadline."""
    path, _ = tiny
    bad = tmp_path / "mismatched"
    shutil.copytree(path, bad)
    config = json.loads((bad / "config.json").read_text())
    config["intermediate_size"] = 96  # the weights have 128
    (bad / "config.json").write_text(json.dumps(config))
    try:
        llm = kernel.spawn(llmos.LLM, model=str(bad), name="llm-mismatch", cpus=1)
    except llmos.ActorDiedError as exc:  # the load failed before the actor was ready: the spawn says why
        died = exc
    else:
        with pytest.raises(llmos.ActorDiedError) as info:
            llm.options(timeout=120).call("generate", "hello", max_tokens=2)
        died = info.value
    assert "cannot load model" in str(died) and "mismatched" in str(died)
    assert died.exitcode == 1 and "cannot load model" in died.reason
    row = next(r for r in kernel.ps() if r["name"] == "llm-mismatch")
    assert row["state"] == "exited" and "cannot load model" in row["exit"]["reason"]
