"""models/pretrained.py: ``from_pretrained`` over every format checks the model kind, the
parameters and their dtypes; ``save_pretrained`` round trips."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from conftest import TOKENIZER_CKPT, TRANSFORMER_MSGPACK
from maskgit import VQGAN, CheckpointError, MaskGITTransformer
from maskgit.checkpoints.flax_msgpack import read_flax_msgpack, write_flax_msgpack
from maskgit.configs import TRANSFORMER_PRESETS


def test_integer_weights_are_refused_in_every_format(tmp_path, small_tokenizer):
    from safetensors.torch import load_file, save_file

    small_tokenizer.save_pretrained(tmp_path / "tok")
    weights = tmp_path / "tok" / "model.safetensors"
    save_file({k: v.to(torch.int8) for k, v in load_file(weights).items()}, weights)
    with pytest.raises(CheckpointError, match=r"tok: .* has dtype torch.int8; weights must be floating point"):
        VQGAN.from_pretrained(tmp_path / "tok")
    tree = read_flax_msgpack(TRANSFORMER_MSGPACK)
    tree["params"]["MlmLayer_0"]["mlm_bias"]["bias"] = tree["params"]["MlmLayer_0"]["mlm_bias"]["bias"].astype(np.int8)
    write_flax_msgpack(tree, tmp_path / "int8.msgpack")
    with pytest.raises(CheckpointError, match=r"params/MlmLayer_0/mlm_bias/bias has dtype int8"):
        MaskGITTransformer.from_pretrained(tmp_path / "int8.msgpack")


def test_transformer_checkpoint_given_to_the_tokenizer():
    with pytest.raises(CheckpointError, match="holds a MaskGIT transformer.*VQGAN needs a VQGAN tokenizer"):
        VQGAN.from_pretrained(TRANSFORMER_MSGPACK)
    with pytest.raises(CheckpointError, match="holds a VQGAN tokenizer.*maskgit-torch"):
        MaskGITTransformer.from_pretrained(TOKENIZER_CKPT)


def test_a_config_of_the_other_model_is_a_type_error():
    with pytest.raises(TypeError, match="config must be a TokenizerConfig, got TransformerConfig"):
        VQGAN.from_pretrained(TOKENIZER_CKPT, config=TRANSFORMER_PRESETS["small128"])


def test_save_pretrained_round_trips_into_an_eval_model(tmp_path, small_transformer):
    small_transformer.train()
    try:
        small_transformer.save_pretrained(tmp_path / "t")
    finally:
        small_transformer.eval()
    loaded = MaskGITTransformer.from_pretrained(tmp_path / "t", device="cpu")
    assert not loaded.training and loaded.mlm_bias.device.type == "cpu"
    assert loaded.config == small_transformer.config
    state = small_transformer.state_dict()
    assert loaded.state_dict().keys() == state.keys()
    assert all(torch.equal(loaded.state_dict()[name], value) for name, value in state.items())


def test_our_folder_with_missing_extra_or_misshapen_weights_is_named(tmp_path, small_tokenizer):
    from safetensors.torch import load_file, save_file

    small_tokenizer.save_pretrained(tmp_path / "tok")
    weights = tmp_path / "tok" / "model.safetensors"
    state = load_file(weights)
    name = sorted(state)[0]
    save_file({**{k: v for k, v in state.items() if k != name}, "extra.weight": torch.zeros(1)}, weights)
    with pytest.raises(CheckpointError, match=rf"tok: missing parameter\(s\) \['{name}'\]; unexpected parameter\(s\) \['extra.weight'\]"):
        VQGAN.from_pretrained(tmp_path / "tok")
    save_file({**state, name: torch.zeros(3, 2)}, weights)
    expected = tuple(state[name].shape)
    with pytest.raises(CheckpointError, match=re.escape(f"tok: {name} has shape (3, 2), expected {expected}")):
        VQGAN.from_pretrained(tmp_path / "tok")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_weights_stored_in_half_precision_load_as_float32(small_transformer, tmp_path, dtype):
    small_transformer.save_pretrained(tmp_path / "half", dtype=dtype)
    small_transformer.save_pretrained(tmp_path / "full")
    half_size = (tmp_path / "half" / "model.safetensors").stat().st_size
    assert half_size < 0.55 * (tmp_path / "full" / "model.safetensors").stat().st_size
    loaded = MaskGITTransformer.from_pretrained(tmp_path / "half")
    for name, tensor in loaded.state_dict().items():
        assert tensor.dtype == torch.float32
        torch.testing.assert_close(tensor, small_transformer.state_dict()[name].to(dtype).float(), rtol=0, atol=0)
    with pytest.raises(ValueError, match="dtype must be"):
        small_transformer.save_pretrained(tmp_path / "int", dtype=torch.int8)


def test_loading_the_shipped_model_does_not_import_torch_dynamo():
    # Building on the meta device must not reach torch's compiler stack: importing it costs about a
    # second of every command's start (nn.Embedding's own init did, through its normal_ draw).
    import subprocess
    import sys

    code = ("import sys; from maskgit import MaskGIT; MaskGIT.from_pretrained('fashion-mnist'); "
            "print(sorted(m for m in sys.modules if m.startswith('torch._dynamo')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_embeddings_keep_their_initial_draw_off_the_meta_device():
    from maskgit.models.pretrained import embedding

    torch.manual_seed(3)
    ours = embedding(7, 5)
    after = torch.rand(1)
    torch.manual_seed(3)
    theirs = torch.nn.Embedding(7, 5)
    assert torch.equal(ours.weight, theirs.weight) and torch.equal(after, torch.rand(1))
    assert ours.weight.requires_grad
    with torch.device("meta"):
        assert embedding(7, 5).weight.is_meta
