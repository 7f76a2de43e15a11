"""Checking a model's files at spawn, before the slow load: a truncated, corrupt or incomplete
model fails the spawn with what is wrong, not the first call.

A GGUF file is walked header to tensor table (no tensor is read: ~50 ms for SmolLM2, where
``gguf.GGUFReader`` builds an array per metadata entry and takes seconds); every tensor's data
must lie inside the file and the decoder's weights must all be there. A Hugging Face directory's
``config.json`` must parse and name a supported model type, and its safetensors files must hold
every decoder weight inside their length.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from pathlib import Path
from typing import Any

from .loading import ModelNotFound

#: Llama-shaped model types (the paged forward's), as config.json and as GGUF name them.
HF_TYPES = ("llama", "mistral", "qwen2")
GGUF_ARCHS = ("llama", "mistral", "qwen2")
#: Per decoder block, the weights a Llama-shaped model needs (GGUF names, then Hugging Face names).
GGUF_BLOCK = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")
HF_BLOCK = (
    "input_layernorm",
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "post_attention_layernorm",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)
#: Bounds on what a file may claim (a garbage header must not make us loop or allocate for long).
MAX_ENTRIES = 1 << 20
MAX_HEADER_BYTES = 100 << 20
_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
STRING, ARRAY = 8, 9


def check_model(directory: Path, gguf: str | None) -> None:
    """Raise ``ModelNotFound`` saying what is wrong with the model at ``directory`` (``gguf``: its file)."""
    if gguf is not None:
        check_gguf(directory / gguf)
    else:
        check_directory(directory)


# ---------------------------------------------------------------------- GGUF
class _Reader:
    def __init__(self, data: Any, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def fail(self, why: str) -> ModelNotFound:
        return ModelNotFound(f"model file {str(self.path)!r} is not a valid GGUF file: {why}")

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise self.fail(f"it ends inside its header (at byte {len(self.data)})")
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return value

    def count(self, what: str) -> int:
        n = self.unpack("Q")
        if n > MAX_ENTRIES:
            raise self.fail(f"it claims {n} {what}")
        if n > len(self.data) - self.pos:  # every entry takes a byte at least
            raise self.fail(f"it ends inside its header (at byte {len(self.data)})")
        return n

    def string(self) -> str:
        n = self.unpack("Q")
        if self.pos + n > len(self.data):
            raise self.fail(f"a string of {n} bytes runs past the end of the file")
        raw = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", "replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALAR:
            return self.unpack(_SCALAR[kind])
        if kind == STRING:
            return self.string()
        if kind == ARRAY:
            inner, n = self.unpack("I"), self.count("array items")
            if inner in _SCALAR:  # skipped whole: no model needs these values here
                size = struct.calcsize("<" + _SCALAR[inner]) * n
                if self.pos + size > len(self.data):
                    raise self.fail("an array runs past the end of the file")
                self.pos += size
                return None
            for _ in range(n):
                self.value(inner)
            return None
        raise self.fail(f"unknown metadata type {kind}")


def check_gguf(path: Path) -> None:
    """Header, metadata and tensor table of a GGUF file; every tensor inside the file; all decoder weights."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 24:
                raise ModelNotFound(f"model file {str(path)!r} is not a valid GGUF file: {size} bytes is too short")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                _walk(data, path, size)
    except OSError as exc:
        raise ModelNotFound(f"model file {str(path)!r} cannot be read: {exc.strerror}") from exc


def _walk(data: Any, path: Path, size: int) -> None:
    """The header, metadata and tensor table in ``data`` (the file mapped; no tensor is read)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    r = _Reader(data, path)
    if r.unpack("4s") != b"GGUF":
        raise r.fail("it does not start with 'GGUF'")
    version = r.unpack("I")
    if version not in (2, 3):
        raise r.fail(f"version {version} (versions 2 and 3 are read)")
    n_tensors, n_meta = r.count("tensors"), r.count("metadata entries")
    meta: dict[str, Any] = {}
    for _ in range(n_meta):
        key = r.string()
        meta[key] = r.value(r.unpack("I"))
    tensors: dict[str, tuple[int, int]] = {}  # name -> (offset, bytes)
    for _ in range(n_tensors):
        name = r.string()
        dims = r.unpack("I")
        if dims > 8:
            raise r.fail(f"tensor {name!r} claims {dims} dimensions")
        elements = 1
        for _ in range(dims):
            elements *= r.unpack("Q")
        kind, offset = r.unpack("I"), r.unpack("Q")
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
        except (ValueError, KeyError):
            raise r.fail(f"tensor {name!r} has unknown type {kind}") from None
        tensors[name] = (offset, elements // block * type_size)
    align = meta.get("general.alignment") or 32
    start = -(-r.pos // align) * align
    for name, (offset, nbytes) in tensors.items():
        if start + offset + nbytes > size:
            raise r.fail(
                f"tensor {name!r} ends at byte {start + offset + nbytes} but the file has {size} bytes (truncated?)"
            )
    arch = meta.get("general.architecture")
    if arch not in GGUF_ARCHS:
        raise r.fail(f"architecture {arch!r} is not supported (supported: {', '.join(GGUF_ARCHS)})")
    blocks = meta.get(f"{arch}.block_count")
    if not isinstance(blocks, int) or blocks < 1:
        raise r.fail(f"no {arch}.block_count in its metadata")
    want = ["token_embd.weight", "output_norm.weight"]
    want += [f"blk.{i}.{part}.weight" for i in range(blocks) for part in GGUF_BLOCK]
    _missing(path, want, tensors)


def _missing(where: Path, want: list[str], have: Any) -> None:
    missing = [name for name in want if name not in have]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ModelNotFound(f"model {str(where)!r} lacks weights: {shown}")


# ---------------------------------------------------------------------- Hugging Face directory
def check_directory(directory: Path) -> None:
    """config.json parses and names a supported type; safetensors weights complete and inside their files."""
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"model directory {str(directory)!r}: config.json cannot be read: {exc}") from exc
    kind = config.get("model_type") if isinstance(config, dict) else None
    if kind not in HF_TYPES:
        supported = ", ".join(HF_TYPES)
        raise ModelNotFound(f"model directory {str(directory)!r}: model type {kind!r} is not supported ({supported})")
    files = _safetensors_files(directory)
    if files is None:
        if any((directory / n).is_file() for n in ("pytorch_model.bin", "pytorch_model.bin.index.json")):
            return  # pickled weights: only torch can read them, at load
        where = str(directory)
        raise ModelNotFound(f"model directory {where!r} has no weights (model.safetensors or pytorch_model.bin)")
    names: set[str] = set()
    for file in files:
        names.update(_safetensors_names(file))
    layers = int(config.get("num_hidden_layers") or 0)
    want = ["model.embed_tokens.weight", "model.norm.weight"]
    want += [f"model.layers.{i}.{part}.weight" for i in range(layers) for part in HF_BLOCK]
    _missing(directory, want, names)


def _safetensors_files(directory: Path) -> list[Path] | None:
    single = directory / "model.safetensors"
    if single.is_file():
        return [single]
    index = directory / "model.safetensors.index.json"
    if not index.is_file():
        return None
    try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelNotFound(f"model index {str(index)!r} cannot be read: {exc}") from exc
    files = [directory / str(s) for s in shards]
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        raise ModelNotFound(f"model directory {str(directory)!r} lacks weight files: {', '.join(absent[:5])}")
    return files


def _safetensors_names(path: Path) -> list[str]:
    """The tensor names of a safetensors file whose header parses and whose tensors lie inside it."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw = f.read(8)
            header_len = struct.unpack("<Q", raw)[0] if len(raw) == 8 else -1
            if not 0 < header_len <= min(MAX_HEADER_BYTES, size - 8):
                raise ModelNotFound(f"weights {str(path)!r} are not a safetensors file (bad header length)")
            header = json.loads(f.read(header_len))
    except OSError as exc:
        raise ModelNotFound(f"weights {str(path)!r} cannot be read: {exc.strerror}") from exc
    except ValueError as exc:
        raise ModelNotFound(f"weights {str(path)!r}: the safetensors header does not parse: {exc}") from exc
    body = size - 8 - header_len
    names = []
    for name, info in header.items() if isinstance(header, dict) else ():
        if name == "__metadata__":
            continue
        end = info.get("data_offsets", [0, 0])[1] if isinstance(info, dict) else None
        if not isinstance(end, int) or end > body:
            raise ModelNotFound(f"weights {str(path)!r}: tensor {name!r} lies past the end of the file (truncated?)")
        names.append(name)
    return names
