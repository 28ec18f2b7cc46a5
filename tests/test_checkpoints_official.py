"""checkpoints/official.py: the official parameter names and layouts, small and full size, and
strict mapping errors that name the parameter."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import OFFICIAL, TOKENIZER_MSGPACK, TRANSFORMER_MSGPACK, official_params, write_official_params
from maskgit import VQGAN, CheckpointError, MaskGITTransformer
from maskgit.checkpoints.config_inference import infer_tokenizer_config
from maskgit.checkpoints.official import (
    conv_to_official,
    model_kind_of_official,
    official_to_state_dict,
    parameter_entries,
    state_dict_to_official,
)
from maskgit.configs import TOKENIZER_PRESETS, TRANSFORMER_PRESETS


def test_missing_key_is_named(tmp_path):
    flat = official_params(TOKENIZER_MSGPACK)
    del flat["decoder/ResBlock_4/Conv_2/kernel"]
    write_official_params(flat, tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="missing parameter.*decoder/ResBlock_4/Conv_2/kernel"):
        VQGAN.from_pretrained(tmp_path / "ckpt", config=TOKENIZER_PRESETS["small128"])


def test_unexpected_key_is_named(tmp_path):
    flat = official_params(TRANSFORMER_MSGPACK)
    flat["MlmLayer_0/extra/kernel"] = np.zeros((2, 2), np.float32)
    write_official_params(flat, tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="unexpected parameter.*MlmLayer_0/extra/kernel"):
        MaskGITTransformer.from_pretrained(tmp_path / "ckpt")


def test_wrong_shape_is_named(tmp_path):
    flat = official_params(TRANSFORMER_MSGPACK)
    flat["TransformerLayer_1/Mlp_0/layer_output/kernel"] = np.zeros((128, 32), np.float32)
    write_official_params(flat, tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match=r"layer_output/kernel has shape \(128, 32\).*layers.1.mlp_output.weight"):
        MaskGITTransformer.from_pretrained(tmp_path / "ckpt")


def test_wrong_shape_against_an_explicit_config(tmp_path):
    config = TRANSFORMER_PRESETS["small128"].replace(intermediate_size=96)
    with pytest.raises(CheckpointError, match="intermediate_output/kernel has shape"):
        MaskGITTransformer.from_pretrained(TRANSFORMER_MSGPACK, config=config)


@pytest.mark.parametrize(
    "listing, preset, num_params",
    [
        ("tokenizer_imagenet256_params.json", "imagenet256", 54_515_587),
        ("tokenizer_imagenet512_params.json", "imagenet256", 54_515_587),  # the tokenizer is size-agnostic
        ("transformer_imagenet256_params.json", "imagenet256", 172_457_193),
        ("transformer_imagenet512_params.json", "imagenet512", 173_047_017),
    ],
)
def test_every_official_path_maps_to_exactly_one_parameter(listing, preset, num_params):
    params = json.loads((OFFICIAL / listing).read_text())["params"]
    shapes = {path.removeprefix("params/"): tuple(v["shape"]) for path, v in params.items()}
    is_tokenizer = listing.startswith("tokenizer")
    cls = VQGAN if is_tokenizer else MaskGITTransformer
    config = (TOKENIZER_PRESETS if is_tokenizer else TRANSFORMER_PRESETS)[preset]
    if is_tokenizer:
        assert infer_tokenizer_config({k: np.empty(s, np.float32) for k, s in shapes.items()}) == config
    with torch.device("meta"):
        model = cls(config)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert sum(np.prod(s) for s in expected.values()) == num_params

    entries = parameter_entries(config)
    assert sorted(e.official for e in entries) == sorted(shapes)  # each path once, none left over
    assert sorted(e.ours for e in entries) == sorted(expected)  # each parameter once
    for entry in entries:  # layout: the transposed official shape is our shape
        assert entry.to_torch(np.empty(shapes[entry.official], np.float32)).shape == expected[entry.ours], entry


def test_mapping_round_trips_through_official_layout(small_transformer):
    config = small_transformer.config
    state = small_transformer.state_dict()
    flat = state_dict_to_official(state, config)
    back = official_to_state_dict(flat, config, {k: tuple(v.shape) for k, v in state.items()})
    assert all(torch.equal(back[k], state[k]) for k in state)
    original = official_params(TRANSFORMER_MSGPACK)
    assert all(np.array_equal(flat[k], original[k]) for k in original)


def test_the_model_kind_comes_from_the_top_level_scopes():
    assert model_kind_of_official(official_params(TOKENIZER_MSGPACK), "tok") == "vqgan"
    assert model_kind_of_official(official_params(TRANSFORMER_MSGPACK), "tf") == "transformer"
    with pytest.raises(CheckpointError, match=r"other: not a MaskGIT tokenizer or transformer \(top-level scopes: \['Dense_0', 'encoder'\]\)"):
        model_kind_of_official({"encoder/Conv_0/kernel": np.zeros(1), "Dense_0/kernel": np.zeros(1)}, "other")


def test_a_conv_kernel_round_trips_between_the_layouts():
    kernel = np.arange(3 * 5 * 2 * 4, dtype=np.float32).reshape(3, 5, 2, 4)  # official (kh, kw, in, out)
    entry = next(e for e in parameter_entries(TOKENIZER_PRESETS["small128"]) if e.official == "encoder/Conv_0/kernel")
    weight = entry.to_torch(kernel)
    assert weight.shape == (4, 2, 3, 5) and weight[3, 1, 2, 4] == kernel[2, 4, 1, 3]  # (out, in, kh, kw)
    np.testing.assert_array_equal(conv_to_official(weight), kernel)
