"""The LLM engine in-process (no daemon): batched greedy decoding equals ``model.generate`` token for
token, also across preemptions (swap and recompute) and prefix-cache hits; blocks come back."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from llm_tiny import PROMPTS, build_model_dir, reference_greedy  # noqa: E402

from llmos_actors.llm import loading  # noqa: E402
from llmos_actors.llm.build import DeviceSettings, build_engine  # noqa: E402
from llmos_actors.llm.requests import new_sequence, sampling_params  # noqa: E402

MAX_TOKENS = 24


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_model_dir(tmp_path_factory.mktemp("tiny-llama"))
    return path, reference_greedy(path, PROMPTS, MAX_TOKENS)


class Collector:
    def __init__(self):
        self.done = {}
        self.text = {}

    def __call__(self, events):
        for sink, kind, data in events:
            if kind == "done":
                self.done[sink] = data
            elif kind == "text":
                self.text[sink] = self.text.get(sink, "") + data
            else:
                raise data


class SlowClock:
    """A clock that moves a second per look: steps as slow as a machine under heavy load."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1.0
        return self.now


def make(path, **settings):
    model, tok, _ = loading.load(path)
    out = Collector()
    engine = build_engine(model, tok, DeviceSettings.from_kwargs(settings), on_events=out)
    return engine, tok, out


def submit(engine, tok, prompt, level=4, max_tokens=MAX_TOKENS):
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    params = sampling_params(max_tokens, 0.0, None, None, True)
    seq = new_sequence(engine.new_id(), ids, params, level, sink=None)
    seq.sink = seq.id
    engine.submit(seq)
    return seq


def test_batched_greedy_equals_generate_one_at_a_time(tiny):
    path, ref = tiny
    engine, tok, out = make(path, kv_blocks=256, block_size=4, max_step_tokens=64)
    seqs = [submit(engine, tok, p) for p in PROMPTS]
    engine.run_until_idle()
    for seq, want in zip(seqs, ref, strict=False):
        assert seq.out_ids == want
        assert out.text[seq.id] == tok.decode(want)
        assert out.done[seq.id]["finish_reason"] == "length"
    assert engine.kv.manager.available() == engine.kv.manager.num_blocks  # filed blocks stay cached, available
    ttft = engine.meter.ttft.snapshot()  # what LLM.on_metrics reports as llm_ttft_seconds
    assert ttft["count"] == 8 and ttft["counts"][-1] == 8 and len(ttft["le"]) == len(ttft["counts"])
    assert engine.meter.tokens_total == 8 * MAX_TOKENS


@pytest.mark.parametrize("mode", ["swap", "recompute"])
def test_preemption_resumes_with_the_same_tokens(tiny, mode):
    path, ref = tiny
    # A budget too small for all eight at once: sequences are preempted and resumed.
    engine, tok, _ = make(path, kv_blocks=40, block_size=4, max_step_tokens=64, preempt=mode, prefix_cache=False)
    engine.scheduler.quantum = 8
    engine.scheduler.clock = SlowClock()  # every step "takes" a second: waiters age past runners
    seqs = [submit(engine, tok, p) for p in PROMPTS]
    engine.run_until_idle(max_steps=5000)
    assert engine.scheduler.preemptions > 0
    counts = engine.kv.numbers()
    assert counts["swap_outs" if mode == "swap" else "recomputes"] > 0
    for seq, want in zip(seqs, ref, strict=False):
        assert seq.out_ids == want
    assert engine.kv.manager.available() == 40


def test_priority_arrival_preempts_the_lowest_running(tiny):
    path, ref = tiny
    engine, tok, _ = make(path, kv_blocks=256, block_size=4, max_batch=2, max_step_tokens=64, preempt="swap")
    low = [submit(engine, tok, p, level=0) for p in PROMPTS[:2]]
    for _ in range(3):
        engine.step()
    urgent = submit(engine, tok, PROMPTS[2], level=7)
    engine.step()
    assert urgent in engine.scheduler.running
    assert sum(s in engine.scheduler.running for s in low) == 1
    actions = [d["action"] for d in engine.scheduler.decisions]
    assert "preempt" in actions and "swap" in actions
    engine.run_until_idle()
    assert [s.out_ids for s in (*low, urgent)] == ref[:3]


def test_prefix_cache_hit_gives_the_same_tokens(tiny):
    path, ref = tiny
    engine, tok, _ = make(path, kv_blocks=256, block_size=4, max_step_tokens=64)
    first = submit(engine, tok, PROMPTS[6])
    engine.run_until_idle()
    hits = engine.kv.manager.hits
    again = submit(engine, tok, PROMPTS[6])
    engine.run_until_idle()
    assert engine.kv.manager.hits > hits
    assert first.out_ids == again.out_ids == ref[6]


def test_chunked_prefill_does_not_stall_decoding(tiny):
    path, _ = tiny
    engine, tok, _ = make(path, kv_blocks=512, block_size=4, max_batch=4, max_step_tokens=16)
    short = submit(engine, tok, PROMPTS[1], max_tokens=8)
    engine.step()
    long_prompt = " ".join(PROMPTS) * 3
    long = submit(engine, tok, long_prompt, max_tokens=4)
    made = short.generated
    for _ in range(4):
        engine.step()
    assert long.prefilling  # still prefilling in chunks...
    assert short.generated >= made + 4  # ...while the short one makes a token every step
    engine.run_until_idle()


def test_cancel_frees_blocks(tiny):
    path, _ = tiny
    engine, tok, _ = make(path, kv_blocks=64, block_size=4, prefix_cache=False)
    seq = submit(engine, tok, PROMPTS[0], max_tokens=100)
    for _ in range(3):
        engine.step()
    assert engine.kv.manager.used() > 0
    engine.cancel(seq.id)
    engine.step()
    assert engine.kv.manager.used() == 0
    assert seq.finish_reason == "cancelled"


def test_a_sequence_longer_than_the_budget_ends_at_the_budget(tiny):
    path, _ = tiny
    engine, tok, out = make(path, kv_blocks=8, block_size=4, max_batch=2, max_step_tokens=8)
    seq = submit(engine, tok, PROMPTS[0], max_tokens=1000)
    engine.run_until_idle(max_steps=200)
    assert len(seq.tokens) == 32
    assert out.done[seq.id]["finish_reason"] == "length"
    assert engine.kv.manager.available() == 8


@pytest.mark.parametrize(("prefill_rate", "chosen"), [(1.0, "swap"), (1e-12, "recompute")])
def test_auto_preemption_takes_the_cheaper_by_measured_cost(tiny, prefill_rate, chosen):
    path, ref = tiny
    engine, tok, _ = make(path, kv_blocks=40, block_size=4, max_step_tokens=64, prefix_cache=False)
    engine.prefill_rate = prefill_rate
    engine.steps = 0
    seqs = [submit(engine, tok, p) for p in PROMPTS]
    while engine.step():
        engine.prefill_rate = prefill_rate  # hold the measured rate where the case puts it
    actions = {d["action"] for d in engine.scheduler.decisions}
    assert chosen in actions and ({"swap", "recompute"} - {chosen}).isdisjoint(actions)
    assert [s.out_ids for s in seqs] == ref


class OnlyToken:
    """A constraint (the ``constrain.Constraint`` interface) that allows one token, ``fail_after``
    tokens then refuses in ``advance``."""

    def __init__(self, token, fail_after=None):
        self.token, self.fail_after, self.taken = token, fail_after, 0

    def allowed(self, vocab_size):
        mask = torch.zeros(vocab_size, dtype=torch.bool)
        mask[self.token] = True
        return mask

    def advance(self, token_id):
        if self.fail_after is not None and self.taken >= self.fail_after:
            raise ValueError("token not allowed by the output constraint here")
        self.taken += 1

    def is_finished(self):
        return self.taken >= 5

    def copy(self):
        return OnlyToken(self.token, self.fail_after)


def test_constraints_mask_the_logits_and_a_broken_one_fails_alone(tiny):
    path, ref = tiny
    engine, tok, out = make(path, kv_blocks=128, block_size=4)
    masked = submit(engine, tok, PROMPTS[0])
    masked.constraint = OnlyToken(42)
    broken = submit(engine, tok, PROMPTS[1])
    broken.constraint = OnlyToken(43, fail_after=2)
    plain = submit(engine, tok, PROMPTS[2])
    failed = []
    engine.on_events = lambda events: [
        failed.append(sink) if kind == "error" else out([(sink, kind, data)]) for sink, kind, data in events
    ]
    engine.run_until_idle()
    assert masked.out_ids == [42] * 5 and out.done[masked.id]["finish_reason"] == "stop"
    assert failed == [broken.id] and broken.id not in out.done
    assert plain.out_ids == ref[2]
    assert engine.kv.manager.available() == 128


def submit_ids(engine, ids, level, max_tokens):
    seq = new_sequence(engine.new_id(), ids, sampling_params(max_tokens, 0.0, None, None, True), level, sink=None)
    seq.sink = seq.id
    engine.submit(seq)
    return seq


@pytest.mark.parametrize("mode", ["swap", "recompute"])
def test_a_priority_arrival_short_of_blocks_preempts_and_the_big_one_resumes_alone(tiny, mode):
    path, _ = tiny
    # The low answer alone fills the budget but two blocks; the urgent prompt needs six.
    prompt = [5 + (i * 7) % 300 for i in range(128)]
    low_tokens, block = 16, 4
    blocks = -(-(len(prompt) + low_tokens) // block) + 2
    alone, _, _ = make(path, kv_blocks=256, block_size=block, max_step_tokens=64, prefix_cache=False)
    want = submit_ids(alone, prompt, 0, low_tokens)
    alone.run_until_idle()
    engine, _, _ = make(path, kv_blocks=blocks, block_size=block, max_step_tokens=64, preempt=mode, prefix_cache=False)
    low = submit_ids(engine, prompt, 0, low_tokens)
    while low.generated < 4:
        engine.step()
    urgent = submit_ids(engine, prompt[:24], 7, 1)
    engine.step()
    assert low.preemptions == 1 and urgent.generated == 1  # displaced at the next step, not after the answer
    engine.run_until_idle(max_steps=200)  # the resumed sequence fits alone: it never preempts itself
    assert engine.scheduler.preemptions == 1
    assert engine.kv.numbers()["swap_ins" if mode == "swap" else "recomputes"] == 1
    assert low.out_ids == want.out_ids
    assert engine.kv.manager.available() == blocks


def test_an_urgent_arrival_stops_the_forward_in_flight_and_the_decoders_ride_along(tiny):
    path, ref = tiny
    engine, tok, _ = make(path, kv_blocks=256, block_size=4, max_step_tokens=64)
    low = [submit(engine, tok, p, level=0) for p in PROMPTS[:3]]
    for _ in range(3):
        engine.step()
    real, arrivals = engine.forward, []

    def forward_while_a_request_arrives(inputs, storage, abort=None):
        if not arrivals:  # what the actor's loop thread does while the engine thread computes
            arrivals.append(submit(engine, tok, PROMPTS[3], level=7))
        return real(inputs, storage, abort)

    engine.forward = forward_while_a_request_arrives
    made = [s.generated for s in low]
    computed = [s.computed for s in low]
    assert engine.step()
    assert engine.interrupted == 1  # abandoned at the next layer...
    assert [s.generated for s in low] == made and [s.computed for s in low] == computed  # ...counting nothing
    engine.step()
    assert arrivals[0].generated == 1  # its first token at the step begun again...
    assert [s.generated for s in low] == [m + 1 for m in made]  # ...which carried the decoders along
    engine.run_until_idle()
    assert engine.interrupted == 1  # level-7 work is never interrupted by itself
    assert [s.out_ids for s in (*low, *arrivals)] == ref[:4]  # token for token across the abandoned step


def test_urgent_requests_back_to_back_never_freeze_the_others(tiny):
    path, _ = tiny
    engine, tok, _ = make(path, kv_blocks=512, block_size=4, max_step_tokens=64)
    low = submit(engine, tok, PROMPTS[0], level=0, max_tokens=200)
    engine.step()
    real = engine.forward

    def forward_with_an_arrival_each_time(inputs, storage, abort=None):
        if low in engine.scheduler.running and all(s.level == 0 for s in engine.scheduler.running):
            submit(engine, tok, PROMPTS[1], level=7, max_tokens=1)  # a new urgent request during every shared step
        return real(inputs, storage, abort)

    engine.forward = forward_with_an_arrival_each_time
    idle_run, longest, before = 0, 0, low.generated
    for _ in range(36):
        engine.step()
        idle_run = 0 if low.generated > before else idle_run + 1
        longest, before = max(longest, idle_run), low.generated
    assert engine.interrupted >= 10  # urgent arrivals kept stopping shared forwards...
    assert longest <= 1  # ...but the low one made a token at every step that was not stopped
    assert low.generated >= 12
    engine.cancel(low.id)
    engine.run_until_idle()
