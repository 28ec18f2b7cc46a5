"""checkpoints/config_inference.py: model configs read from parameter shapes."""

from __future__ import annotations

import pytest
import torch

from conftest import TOKENIZER_MSGPACK, TRANSFORMER_CKPT, TRANSFORMER_MSGPACK, official_params, write_official_params
from maskgit import VQGAN, CheckpointError, MaskGITTransformer, TokenizerConfig, TransformerConfig
from maskgit.checkpoints.config_inference import (
    count_indices,
    infer_official_transformer_config,
    infer_tokenizer_config,
    infer_transformer_config,
)
from maskgit.checkpoints.official import state_dict_to_official
from maskgit.configs import TOKENIZER_PRESETS, TRANSFORMER_PRESETS


def test_config_inferred_from_a_custom_architecture(tmp_path):
    config = TokenizerConfig(filters=32, channel_multipliers=(1, 2, 3), num_res_blocks=1, embedding_dim=8,
                             codebook_size=40, image_size=256)
    torch.manual_seed(0)
    model = VQGAN(config)
    write_official_params(state_dict_to_official(model.state_dict(), config), tmp_path / "ckpt")
    loaded = VQGAN.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == config
    images = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.reconstruct(images), model.eval().reconstruct(images), rtol=0, atol=0)


def test_transformer_without_a_preset_needs_a_config(tmp_path):
    config = TransformerConfig(codebook_size=16, num_classes=3, hidden_size=32, num_layers=1, num_heads=2,
                               intermediate_size=64, latent_size=4)
    model = MaskGITTransformer(config)
    write_official_params(state_dict_to_official(model.state_dict(), config), tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="codebook size.*pass config="):
        MaskGITTransformer.from_pretrained(tmp_path / "ckpt")
    loaded = MaskGITTransformer.from_pretrained(tmp_path / "ckpt", config=config)
    ids = torch.randint(0, 16, (2, 17))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model.eval()(ids), rtol=0, atol=0)


def test_the_tokenizer_codebook_size_completes_the_inference(tmp_path, monkeypatch):
    config = TransformerConfig(codebook_size=16, num_classes=3, hidden_size=32, num_layers=1, num_heads=2,
                               intermediate_size=64, latent_size=4)
    write_official_params(state_dict_to_official(MaskGITTransformer(config).state_dict(), config), tmp_path / "ckpt")
    assert MaskGITTransformer.from_pretrained(tmp_path / "ckpt", codebook_size=16).config == config
    with pytest.raises(CheckpointError, match="vocabulary of 20 ids leaves no class ids beside 19 codes"):
        MaskGITTransformer.from_pretrained(tmp_path / "ckpt", codebook_size=19)
    # A maskgit-torch file does not store the head count, so without a preset it still needs a config.
    monkeypatch.delitem(TRANSFORMER_PRESETS, "small128")
    with pytest.raises(CheckpointError, match=r"\.ckpt: the head count cannot be read.*pass config="):
        MaskGITTransformer.from_pretrained(TRANSFORMER_CKPT, codebook_size=64)


def test_the_fixture_shapes_give_the_small_presets():
    tokenizer = official_params(TOKENIZER_MSGPACK)
    assert infer_tokenizer_config(tokenizer, source="tok") == TOKENIZER_PRESETS["small128"]
    transformer = official_params(TRANSFORMER_MSGPACK)
    assert infer_official_transformer_config(transformer) == TRANSFORMER_PRESETS["small128"]
    assert count_indices(transformer, r"TransformerLayer_(\d+)/") == TRANSFORMER_PRESETS["small128"].num_layers
    assert count_indices(["a/1/x", "a/1/y", "a/3/x", "b/2/x"], r"a/(\d+)/") == 2


def test_shapes_that_fit_no_tokenizer_are_named():
    flat = official_params(TOKENIZER_MSGPACK)
    with pytest.raises(CheckpointError, match="tok: missing parameter params/quantizer/codebook"):
        infer_tokenizer_config({k: v for k, v in flat.items() if k != "quantizer/codebook"}, source="tok")
    # One encoder ResBlock fewer no longer splits evenly over the levels and the middle.
    last = max(int(k.split("/")[1].split("_")[1]) for k in flat if k.startswith("encoder/ResBlock_"))
    fewer = {k: v for k, v in flat.items() if not k.startswith(f"encoder/ResBlock_{last}/")}
    with pytest.raises(CheckpointError, match=f"tok: {last} encoder ResBlocks do not fit"):
        infer_tokenizer_config(fewer, source="tok")


def test_transformer_shapes_need_a_preset_or_the_codebook_and_heads():
    with pytest.raises(CheckpointError, match="the codebook size and the head count cannot be read"):
        infer_transformer_config(vocab_size=30, hidden_size=32, num_layers=1, intermediate_size=64,
                                 max_position_embeddings=17, num_heads=None)
    config = infer_transformer_config(vocab_size=30, hidden_size=32, num_layers=1, intermediate_size=64,
                                      max_position_embeddings=17, num_heads=2, codebook_size=16)
    # The official vocabulary: 16 codes, then the classes, then the mask.
    assert (config.codebook_size, config.num_classes, config.latent_size, config.vocab_size) == (16, 13, 4, 30)
