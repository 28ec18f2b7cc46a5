"""The StyleGAN2 discriminator (spec §1.6) and the perceptual-loss plug-in."""

from __future__ import annotations

import pytest
import torch

from maskgit.training.discriminator import BlurDownsample, Discriminator, discriminator_widths


def test_official_width_table():
    assert discriminator_widths(256) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}
    assert discriminator_widths(512)[512] == 32
    assert discriminator_widths(32, channel_base=1024, max_channels=64) == {4: 64, 8: 64, 16: 64, 32: 32}
    with pytest.raises(ValueError, match="power-of-two"):
        discriminator_widths(24)


@pytest.mark.parametrize("size", [8, 16, 32])
def test_discriminator_layout_and_output_shape(size):
    torch.manual_seed(0)
    model = Discriminator(size, channel_base=128, max_channels=16)
    # One downsampling block per resolution size, size/2, ..., 8; the last one ends at 4x4.
    assert len(model.blocks) == size.bit_length() - 3
    assert model.dense.in_features == discriminator_widths(size, 128, 16)[4] * 16
    images = torch.rand(3, 3, size, size)
    logits = model(images)
    assert logits.shape == (3, 1)
    # Samples are independent (no batch statistics), so R1 and data parallelism are per sample.
    torch.testing.assert_close(torch.cat([model(images[i : i + 1]) for i in range(3)]), logits)
    with pytest.raises(ValueError, match=f"\\(B, 3, {size}, {size}\\)"):
        model(torch.rand(1, 3, size * 2, size * 2))


def test_blur_downsample_halves_and_is_a_normalised_low_pass():
    blur = BlurDownsample()
    constant = torch.full((1, 2, 8, 8), 3.0)
    out = blur(constant)
    assert out.shape == (1, 2, 4, 4)
    # Interior outputs of a constant are the constant (the taps sum to 1); the border sees the zero pad.
    torch.testing.assert_close(out[..., 1:-1, 1:-1], torch.full((1, 2, 2, 2), 3.0))
    # Highest-frequency checkerboard is strongly attenuated.
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2
    assert blur(checker.float()[None, None])[..., 1:-1, 1:-1].std() < 0.01
