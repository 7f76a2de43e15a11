"""The benchmark's GGUF model as a float32 Hugging Face directory (safetensors), converted once and cached.

vLLM reads our quantized GGUF file poorly, so its peer gets the very weights the device
dequantizes, written with ``save_pretrained`` (which also records the architecture vLLM
needs) beside the tokenizer. The copy lives under ``$XDG_CACHE_HOME/llmos-actors`` (else
``~/.cache/llmos-actors``), named by a hash of the GGUF file's contents: it is made once per
model file, and a half-written copy is never taken for a finished one.

    python -m llmos_actors.bench.llm_model_copy [GGUF]   # convert now (default: SmolLM2); prints the directory
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmos-actors"


def hf_copy(gguf: Path) -> Path:
    """The directory holding ``gguf`` converted to float32 safetensors, made now if not cached."""
    with open(gguf, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()[:16]
    out = cache_root() / f"{gguf.stem}-f32-{digest}"
    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        _convert(gguf, work)
        work.chmod(0o755)  # mkdtemp made it private
        try:
            work.rename(out)
        except OSError:
            if not (out / "config.json").is_file():  # not a concurrent run that finished first
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are plain float32 tensors by now, but transformers refuses to save a model it
    # loaded from a GGUF file: forgetting the GGUF quantizer lets save_pretrained write them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)


def main(argv: list[str]) -> int:
    from ..llm.loading import default_model

    print(hf_copy(Path(argv[0]) if argv else default_model()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
