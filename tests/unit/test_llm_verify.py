"""The LLM device's checks of a model's files before loading: truncated, corrupt or incomplete
GGUF files and Hugging Face directories are refused naming what is wrong; complete ones pass."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("gguf")

from llm_tiny import write_gguf

from llmos_actors.llm.loading import ModelNotFound
from llmos_actors.llm.verify import check_directory, check_gguf


def test_a_complete_gguf_passes_and_a_truncated_copy_fails(tmp_path):
    good = write_gguf(tmp_path / "good.gguf", blocks=2)
    check_gguf(good)
    data = good.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) - 100])
    with pytest.raises(ModelNotFound, match=r"tensor 'blk\.1\.\w+\.weight' ends at byte \d+ but the file has"):
        check_gguf(cut)
    cut.write_bytes(data[:200])  # inside the metadata
    with pytest.raises(ModelNotFound, match="ends inside its header"):
        check_gguf(cut)


def test_garbage_with_the_gguf_magic_fails(tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    with pytest.raises(ModelNotFound, match="not a valid GGUF file: version"):
        check_gguf(junk)
    junk.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)  # version 3, absurd counts
    with pytest.raises(ModelNotFound, match="claims"):
        check_gguf(junk)


def test_a_gguf_missing_a_weight_or_of_another_architecture_fails(tmp_path):
    holed = write_gguf(tmp_path / "holed.gguf", skip="blk.0.ffn_up.weight")
    with pytest.raises(ModelNotFound, match=r"lacks weights: blk\.0\.ffn_up\.weight"):
        check_gguf(holed)
    import gguf
    import numpy as np

    other = tmp_path / "other.gguf"
    writer = gguf.GGUFWriter(str(other), "bert")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelNotFound, match="architecture 'bert' is not supported"):
        check_gguf(other)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    from llm_tiny import build_model_dir

    return build_model_dir(tmp_path_factory.mktemp("tiny-llama"))


def test_a_hugging_face_directory_complete_truncated_or_without_weights(tiny_dir, tmp_path):
    check_directory(tiny_dir)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dir, copy)
    weights = copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 64])
    with pytest.raises(ModelNotFound, match="past the end of the file"):
        check_directory(copy)
    weights.write_bytes(b"\xff" * 64)
    with pytest.raises(ModelNotFound, match="not a safetensors file"):
        check_directory(copy)
    weights.unlink()
    with pytest.raises(ModelNotFound, match="has no weights"):
        check_directory(copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(ModelNotFound, match="model type 'bert' is not supported"):
        check_directory(copy)
