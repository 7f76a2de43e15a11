"""The LLM benchmark's peers, each in its own process: what an agent framework does without a device.

    python llm_peer.py MODE MODEL_DIR GGUF_FILE THREADS

MODE ``sequential``: transformers' ``generate`` one prompt after another (an agent
framework calling a model in-process today); ``static``: one left-padded batch of
all prompts (an offline upper bound for that batch size); ``vllm``: vLLM's
``LLM.generate`` over all prompts (MODEL_DIR a safetensors directory, GGUF_FILE
"-"). Prints ``ready`` after loading and one warm-up, then per stdin line
``{"messages": [[...], ...], "max_tokens": n}`` prints ``{"seconds": s, "tokens": n}``.
Greedy, EOS ignored: every prompt makes ``max_tokens`` tokens.

Standalone on purpose (standard library, torch, transformers or vLLM only): it runs
under another interpreter for vLLM, whose CPU build needs its own virtual environment.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _hf(mode: str, model_dir: str, gguf: str, threads: int):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    extra = {"gguf_file": gguf} if gguf != "-" else {}
    tok = AutoTokenizer.from_pretrained(model_dir, **extra)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **extra).eval()
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token

    def run(conversations: list, max_tokens: int) -> int:
        texts = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in conversations]
        groups = [[t] for t in texts] if mode == "sequential" else [texts]
        made = 0
        with torch.inference_mode():
            for group in groups:
                enc = tok(group, return_tensors="pt", padding=True, add_special_tokens=False)
                out = model.generate(
                    **enc,
                    max_new_tokens=max_tokens,
                    min_new_tokens=max_tokens,
                    do_sample=False,
                    pad_token_id=tok.pad_token_id,
                )
                made += (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]
        return made

    return run


def _vllm(model_dir: str):
    from vllm import LLM, SamplingParams

    llm = LLM(model=model_dir, dtype="float32")
    tok = llm.get_tokenizer()

    def run(conversations: list, max_tokens: int) -> int:
        texts = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in conversations]
        params = SamplingParams(temperature=0.0, max_tokens=max_tokens, min_tokens=max_tokens, ignore_eos=True)
        outs = llm.generate(texts, params, use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in outs)

    return run


def main(argv: list[str]) -> int:
    mode, model_dir, gguf, threads = argv[0], argv[1], argv[2], int(argv[3])
    # Answers go to the original stdout; everything else printed there (vLLM logs to stdout) to stderr.
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    run = _vllm(model_dir) if mode == "vllm" else _hf(mode, model_dir, gguf, threads)
    run([[{"role": "user", "content": "hi"}]], 2)
    print("ready", file=answers, flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        t0 = time.perf_counter()
        tokens = run(job["messages"], job["max_tokens"])
        print(json.dumps({"seconds": time.perf_counter() - t0, "tokens": tokens}), file=answers, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
