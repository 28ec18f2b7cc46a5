"""VQGAN parity with the official fixtures (on the plain and the fused form), and input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import load_npz, nchw_to_nhwc, nhwc_to_nchw, runs_as_itself
from maskgit import VQGAN, TokenizerConfig
from maskgit.checkpoints.official import tokenizer_scopes
from maskgit.models.inference import InferenceResBlock

LATENT_TOL = dict(atol=2e-4, rtol=1e-4)
IMAGE_TOL = dict(atol=3e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def io():
    return load_npz("tokenizer_small_io.npz")


def test_encode_matches_official_latents(tokenizer_form, io):
    with torch.no_grad():
        latents = tokenizer_form.encode(nhwc_to_nchw(io["images"]))
    assert latents.shape == (4, 16, 4, 4)
    np.testing.assert_allclose(nchw_to_nhwc(latents), io["latents"], **LATENT_TOL)


def test_ids_and_quantized_match_exactly(tokenizer_form, io):
    with torch.no_grad():
        output = tokenizer_form.quantize(tokenizer_form.encode(nhwc_to_nchw(io["images"])))
        ids = tokenizer_form.encode_to_ids(nhwc_to_nchw(io["images"]))
    assert ids.dtype == torch.int64
    np.testing.assert_array_equal(ids.numpy(), io["ids"])
    np.testing.assert_array_equal(output.ids.numpy(), io["ids"])
    np.testing.assert_array_equal(nchw_to_nhwc(output.quantized), io["quantized"])


@pytest.mark.parametrize("ids_key, images_key", [("ids", "recon"), ("rand_ids", "rand_decoded")])
def test_decode_ids_matches_official(tokenizer_form, io, ids_key, images_key):
    with torch.no_grad():
        images = tokenizer_form.decode_ids(torch.from_numpy(io[ids_key]))
    np.testing.assert_allclose(nchw_to_nhwc(images), io[images_key], **IMAGE_TOL)


def test_reconstruct_is_decode_of_encode(tokenizer_form, io):
    images = nhwc_to_nchw(io["images"])
    with torch.no_grad():
        np.testing.assert_allclose(nchw_to_nhwc(tokenizer_form.reconstruct(images)), io["recon"], **IMAGE_TOL)


def test_every_intermediate_matches_official(tokenizer_form):
    """Each official sub-module output (non-square 16x32 image) against the module we map it to:
    all of them on the plain form; on the fused form, those of the modules that still run as
    themselves (the blocks, the layers between them), as the layers inside a block run fused."""
    tokenizer = tokenizer_form
    data = load_npz("tokenizer_small_intermediates.npz")
    modules = dict(tokenizer.named_modules())
    by_official = {s.official: s.ours for s in tokenizer_scopes(tokenizer.config) if s.kind != "leaf"}
    by_official.update({"encoder": "encoder", "decoder": "decoder"})
    captured: dict[str, torch.Tensor] = {}
    scoped = {key for key in data if key.startswith(("enc:", "dec:")) and key != "enc:quantizer"}
    expected = set()
    handles = []
    for key in scoped:
        ours = by_official[key.split(":", 1)[1]]
        if runs_as_itself(tokenizer, ours):
            expected.add(key)
            handles.append(modules[ours].register_forward_hook(lambda m, i, o, key=key: captured.__setitem__(key, o)))
    try:
        with torch.no_grad():
            quantized = tokenizer.quantize(tokenizer.encode(nhwc_to_nchw(data["input"])))
            tokenizer.decode(quantized.quantized)
    finally:
        for handle in handles:
            handle.remove()
    for key, output in captured.items():
        np.testing.assert_allclose(nchw_to_nhwc(output), data[key], **IMAGE_TOL, err_msg=key)
    assert set(captured) == expected
    assert expected == scoped or any(isinstance(m, InferenceResBlock) for m in tokenizer.modules())
    assert {"enc:encoder/ResBlock_4", "dec:decoder/ResBlock_8", "dec:decoder/Conv_1", "enc:encoder"} <= expected
    np.testing.assert_array_equal(quantized.ids.numpy(), data["ids"])
    np.testing.assert_allclose(nchw_to_nhwc(quantized.quantized), data["enc:quantizer"], **IMAGE_TOL)


def test_shortcut_quirk_drops_the_block_input():
    """The official shortcut block returns h + conv(h): its output must not depend on x except via h."""
    block = VQGAN(TokenizerConfig(filters=32, channel_multipliers=(1, 2), embedding_dim=8, codebook_size=16,
                                  image_size=32)).encoder.res_blocks[2]
    assert block.shortcut is not None and block.shortcut.weight.shape == (64, 64, 1, 1)
    x = torch.randn(1, 32, 8, 8)
    h = block.conv2(torch.nn.functional.silu(block.norm2(block.conv1(torch.nn.functional.silu(block.norm1(x))))))
    torch.testing.assert_close(block(x), h + block.shortcut(h))


def test_fewer_levels_give_a_smaller_stride():
    model = VQGAN(TokenizerConfig(filters=32, channel_multipliers=(1, 2, 2), embedding_dim=8, codebook_size=32,
                                  image_size=32))
    with torch.no_grad():
        ids = model.encode_to_ids(torch.rand(2, 3, 32, 32))
        images = model.decode_ids(ids)
    assert ids.shape == (2, 8, 8)
    assert images.shape == (2, 3, 32, 32)


@pytest.mark.parametrize("channels", [1, 4])
def test_wrong_channel_count_is_rejected(small_tokenizer, channels):
    with pytest.raises(ValueError, match=f"3 channels.*got {channels}"):
        small_tokenizer.encode(torch.rand(1, channels, 32, 32))


@pytest.mark.parametrize("size", [(32, 40), (24, 32)])
def test_side_not_divisible_by_16_is_rejected(small_tokenizer, size):
    with pytest.raises(ValueError, match="multiples of 16"):
        small_tokenizer.encode_to_ids(torch.rand(1, 3, *size))


def test_non_float_images_are_rejected(small_tokenizer):
    with pytest.raises(ValueError, match="float"):
        small_tokenizer.encode(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


@pytest.mark.parametrize("bad", [-1, 64])
def test_ids_outside_the_codebook_are_rejected(small_tokenizer, bad):
    ids = torch.zeros(1, 2, 2, dtype=torch.long)
    ids[0, 1, 1] = bad
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        small_tokenizer.decode_ids(ids)


def test_ids_must_be_a_grid(small_tokenizer):
    with pytest.raises(ValueError, match=r"\(B, h, w\)"):
        small_tokenizer.decode_ids(torch.zeros(4, dtype=torch.long))
