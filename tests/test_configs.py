"""Model configs: presets and the tokenizer's block order, which the models and the name mapping share."""

from __future__ import annotations

import pytest
import torch

from maskgit import VQGAN
from maskgit.checkpoints.official import tokenizer_scopes
from maskgit.configs import TOKENIZER_PRESETS, ConfigError, ResBlockSpec, TokenizerConfig, TransformerConfig


def test_official_tokenizer_block_order():
    config = TOKENIZER_PRESETS["imagenet256"]  # widths 128, 128, 256, 256, 512; two blocks each
    encoder = config.encoder_blocks
    assert len(encoder) == 12
    assert encoder[0] == ResBlockSpec(128, 128, False)
    assert encoder[3] == ResBlockSpec(128, 128, True)
    assert encoder[4] == ResBlockSpec(128, 256, False)
    assert [i for i, b in enumerate(encoder) if b.resample_after] == [1, 3, 5, 7]
    assert [b.out_channels for b in encoder[8:]] == [512] * 4
    decoder = config.decoder_blocks
    assert decoder[0] == ResBlockSpec(512, 512, False)
    assert [i for i, b in enumerate(decoder) if b.resample_after] == [3, 5, 7, 9]
    assert [decoder[i].out_channels for i in (3, 5, 7, 9)] == [512, 256, 256, 128]
    assert decoder[-1] == ResBlockSpec(128, 128, False)


def test_models_are_built_from_the_block_order():
    config = TokenizerConfig(filters=8, channel_multipliers=(1, 2, 4), num_res_blocks=1, embedding_dim=4,
                             codebook_size=8, norm_groups=4, image_size=16)
    with torch.device("meta"):
        model = VQGAN(config)
    for blocks, modules in ((config.encoder_blocks, model.encoder.res_blocks), (config.decoder_blocks, model.decoder.res_blocks)):
        assert [(m.conv1.in_channels, m.conv2.out_channels, m.shortcut is not None) for m in modules] == [
            (b.in_channels, b.out_channels, b.in_channels != b.out_channels) for b in blocks
        ]
    assert [c.out_channels for c in model.decoder.upsample_convs] == [
        b.out_channels for b in config.decoder_blocks if b.resample_after
    ]
    # The official names cover exactly the model's parameters.
    ours = {f"{s.ours}.weight" for s in tokenizer_scopes(config) if s.kind not in ("block", "leaf")}
    assert ours == {name for name in model.state_dict() if name.endswith(".weight") and "codebook" not in name}


def test_configs_reject_inconsistent_values():
    with pytest.raises(ConfigError, match="channel_multipliers must be one or more integers >= 1"):
        TokenizerConfig(channel_multipliers=())
    with pytest.raises(ConfigError, match="divisible by norm_groups=32"):
        TokenizerConfig(filters=48)
    with pytest.raises(ConfigError, match="num_heads must be >= 1, got 0"):
        TransformerConfig(num_heads=0)
    with pytest.raises(ConfigError, match=r"dropout must be in \[0, 1\), got 1.0"):
        TransformerConfig(dropout=1.0)
