"""A tiny random-weight Llama and a byte-level BPE tokenizer trained here: an HF model directory
for the LLM device's tests, built offline in a second."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "an operating system for agents schedules the model like a processor",
    "pages of keys and values live in shared memory blocks",
    "hello world, how are you today? fine, thanks.",
    "priority seven preempts priority zero at the next step",
] * 20

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

PROMPTS = [
    "the quick brown fox",
    "hello world",
    "an operating system for agents schedules",
    "pages of keys",
    "priority seven preempts priority zero",
    "fine, thanks.",
    "the lazy dog jumps over the quick brown fox and then",
    "values live in shared memory",
]


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model_dir(
    path: Path, *, layers: int = 2, context: int = 512, seed: int = 0, greedy_never_ends: bool = False
) -> Path:
    """Save a tiny Llama (random weights, fixed seed) and its tokenizer under ``path``.

    ``greedy_never_ends``: the end-of-sequence token's output row is zero, so its logit is 0 while
    the other 400 are spread around it: greedy decoding never picks it, and an answer runs until
    ``max_tokens`` or until it is stopped (a random model otherwise ends one in ~400 tokens).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id,
        pad_token_id=tok.eos_token_id,
        initializer_range=0.2,  # spread logits: no near-ties for greedy decoding to trip on
    )
    model = LlamaForCausalLM(cfg).eval()
    if greedy_never_ends:
        with torch.no_grad():
            model.lm_head.weight[tok.eos_token_id].zero_()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def reference_greedy(path: Path, prompts: list[str], max_tokens: int) -> list[list[int]]:
    """``model.generate`` one prompt at a time, greedy, EOS ignored: the tokens the device must make."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    out = []
    for prompt in prompts:
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
        gen = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_tokens,
            min_new_tokens=max_tokens,
            do_sample=False,
            pad_token_id=tok.eos_token_id,
        )
        out.append(gen[0, ids.shape[1] :].tolist())
    return out


def write_gguf(path: Path, *, blocks: int = 1, skip: str | None = None) -> Path:
    """A small GGUF file with every Llama decoder weight (random values, float32), for the spawn checks;
    ``skip`` leaves one tensor out."""
    import gguf
    import numpy as np

    from llmos_actors.llm.verify import GGUF_BLOCK

    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(blocks)
    names = ["token_embd.weight", "output_norm.weight"]
    names += [f"blk.{i}.{part}.weight" for i in range(blocks) for part in GGUF_BLOCK]
    for name in names:
        if name != skip:
            writer.add_tensor(name, rng.random((8, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
