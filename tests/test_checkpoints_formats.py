"""checkpoints/formats.py: telling the formats apart, reading each one, and our safetensors folders."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch

from conftest import TOKENIZER_CKPT, TOKENIZER_MSGPACK, TRANSFORMER_CKPT
from maskgit import VQGAN, CheckpointError, MaskGITTransformer
from maskgit.checkpoints.flax_msgpack import read_flax_msgpack, write_flax_msgpack
from maskgit.checkpoints.formats import detect_format, read_checkpoint, write_pretrained


def test_missing_params_collection_is_reported(tmp_path):
    path = tmp_path / "ckpt"
    write_flax_msgpack({"opt_state": {"x": np.zeros(2, np.float32)}}, path)
    with pytest.raises(CheckpointError, match="no 'params'"):
        VQGAN.from_pretrained(path)


def test_other_top_level_collections_are_ignored(tmp_path, small_tokenizer):
    tree = read_flax_msgpack(TOKENIZER_MSGPACK)
    tree["state"] = {"step": np.zeros((), np.int32)}
    path = tmp_path / "ckpt"
    write_flax_msgpack(tree, path)
    model = VQGAN.from_pretrained(path)
    for (name, a), b in zip(model.state_dict().items(), small_tokenizer.state_dict().values()):
        assert torch.equal(a, b), name


def test_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": subprocess.Popen}, path)
    with pytest.raises(CheckpointError, match="evil.ckpt"):
        VQGAN.from_pretrained(path)


def test_save_and_load_our_format(tmp_path, small_tokenizer):
    small_tokenizer.save_pretrained(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["config.json", "model.safetensors"]
    loaded = VQGAN.from_pretrained(tmp_path / "tok")
    assert loaded.config == small_tokenizer.config
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), small_tokenizer.state_dict().values()))
    with pytest.raises(CheckpointError, match="holds a VQGAN tokenizer"):
        MaskGITTransformer.from_pretrained(tmp_path / "tok")
    (tmp_path / "tok" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        VQGAN.from_pretrained(tmp_path / "tok")


def test_bad_config_in_our_folder(tmp_path, small_transformer):
    small_transformer.save_pretrained(tmp_path / "t")
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    config["num_experts"] = 4
    (tmp_path / "t" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unknown key.*num_experts"):
        MaskGITTransformer.from_pretrained(tmp_path / "t")


def test_detect_format_by_folder_zip_or_anything_else(tmp_path, small_tokenizer):
    small_tokenizer.save_pretrained(tmp_path / "ours")
    assert detect_format(tmp_path / "ours") == "maskgit"
    assert detect_format(TOKENIZER_CKPT) == "maskgit-torch"  # a torch zip
    assert detect_format(TOKENIZER_MSGPACK) == "official"
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="empty: folder has no config.json; not a saved maskgit model"):
        detect_format(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="absent: no such file or folder"):
        detect_format(tmp_path / "absent")


def test_read_checkpoint_reports_kind_format_and_config(small_tokenizer):
    raw = read_checkpoint(TOKENIZER_MSGPACK)
    assert (raw.format, raw.kind, raw.config) == ("official", "vqgan", small_tokenizer.config)
    assert raw.state_dict is None and "encoder/Conv_0/kernel" in raw.official
    raw = read_checkpoint(TRANSFORMER_CKPT)
    assert (raw.format, raw.kind) == ("maskgit-torch", "transformer")
    # A given codebook size is checked against the model's, whatever the format and kind.
    codebook = small_tokenizer.config.codebook_size
    with pytest.raises(CheckpointError, match=f"a codebook of {codebook} codes, but the tokenizer has {codebook + 1}"):
        read_checkpoint(TOKENIZER_MSGPACK, codebook_size=codebook + 1)


def test_our_folder_with_a_bad_config_file_is_named(tmp_path, small_tokenizer):
    folder = tmp_path / "tok"
    small_tokenizer.save_pretrained(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"tok/config.json: not valid JSON"):
        read_checkpoint(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "diffusion"}))
    with pytest.raises(CheckpointError, match="model_type must be 'vqgan' or 'transformer', got 'diffusion'"):
        read_checkpoint(folder)
    small_tokenizer.save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="model.safetensors: cannot read safetensors"):
        read_checkpoint(folder)


def test_write_pretrained_writes_cpu_weights_and_the_config(tmp_path, small_transformer):
    from safetensors import safe_open

    write_pretrained(tmp_path / "new" / "folder", small_transformer.config, small_transformer.state_dict())
    weights = tmp_path / "new" / "folder" / "model.safetensors"
    with safe_open(str(weights), "pt") as handle:
        assert handle.metadata() == {"format": "pt", "model_type": "transformer"}
        assert sorted(handle.keys()) == sorted(small_transformer.state_dict())
    raw = read_checkpoint(tmp_path / "new" / "folder")
    assert raw.config == small_transformer.config
    assert all(torch.equal(raw.state_dict[k], v) for k, v in small_transformer.state_dict().items())
