"""checkpoints/maskgit_torch.py: maskgit-torch .ckpt files load the official weights exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import (
    MASKGIT_TORCH,
    TOKENIZER_CKPT,
    TOKENIZER_MSGPACK,
    TRANSFORMER_CKPT,
    TRANSFORMER_MSGPACK,
    load_npz,
    official_params,
)
from maskgit import VQGAN, CheckpointError, MaskGITTransformer
from maskgit.checkpoints.formats import detect_format
from maskgit.checkpoints.maskgit_torch import (
    _port_tokenizer_path,
    maskgit_torch_to_official,
    model_kind_of_maskgit_torch,
)
from maskgit.configs import TRANSFORMER_PRESETS


@pytest.mark.parametrize("cls, official, port", [(VQGAN, TOKENIZER_MSGPACK, TOKENIZER_CKPT),
                                                 (MaskGITTransformer, TRANSFORMER_MSGPACK, TRANSFORMER_CKPT)])
def test_maskgit_torch_files_load_the_official_weights_exactly(cls, official, port):
    assert detect_format(port) == "maskgit-torch" and detect_format(official) == "official"
    a, b = cls.from_pretrained(official), cls.from_pretrained(port)
    assert a.config == b.config
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), name


def test_maskgit_torch_tokenizer_names_follow_the_listing():
    listing = json.loads((MASKGIT_TORCH / "state_dict_listing.json").read_text())["files"]
    state = listing["maskgit_torch_tokenizer_small128.ckpt"]["state_dict"]
    for name, info in state.items():
        official = info["from_official"].replace(".", "/")
        assert _port_tokenizer_path(name, num_levels=5) == official, name


def test_maskgit_torch_transformer_reproduces_official_logits():
    model = MaskGITTransformer.from_pretrained(TRANSFORMER_CKPT)
    io = load_npz("transformer_small_io.npz")
    with torch.no_grad():
        logits = model(torch.from_numpy(io["input_ids"]))
    np.testing.assert_allclose(logits.numpy(), io["logits"], atol=5e-5, rtol=1e-5)


def test_the_kind_is_read_from_the_keys_and_unknown_keys_are_named():
    state = torch.load(TRANSFORMER_CKPT, map_location="cpu", weights_only=True)["state_dict"]
    assert model_kind_of_maskgit_torch(state, "t.ckpt") == "transformer"
    tokenizer = torch.load(TOKENIZER_CKPT, map_location="cpu", weights_only=True)["state_dict"]
    assert model_kind_of_maskgit_torch(tokenizer, "v.ckpt") == "vqgan"
    with pytest.raises(CheckpointError, match=r"x.ckpt: not a maskgit-torch tokenizer or transformer \(keys: .*layer.weight"):
        model_kind_of_maskgit_torch({"layer.weight": torch.zeros(1)}, "x.ckpt")
    for kind, weights, extra in (("transformer", state, "blocks.0.Adapter.weight"), ("vqgan", tokenizer, "lpips.net.0")):
        with pytest.raises(CheckpointError, match=f"y.ckpt: unexpected maskgit-torch key\\(s\\) .*{extra}"):
            maskgit_torch_to_official({**weights, extra: torch.zeros(2)}, kind, num_heads=2, source="y.ckpt")


def test_the_fused_attention_is_split_into_official_heads():
    state = torch.load(TRANSFORMER_CKPT, map_location="cpu", weights_only=True)["state_dict"]
    heads = TRANSFORMER_PRESETS["small128"].num_heads
    flat = maskgit_torch_to_official(state, "transformer", num_heads=heads)
    official = official_params(TRANSFORMER_MSGPACK)
    assert flat.keys() == official.keys()
    for name, array in official.items():
        np.testing.assert_array_equal(flat[name], array, err_msg=name)
