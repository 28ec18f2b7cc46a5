"""evaluation/reconstruction.py: PSNR and SSIM against their reference formulas (and torchmetrics'
SSIM when installed), codebook perplexity, and the one tokenizer evaluation."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from maskgit import VQGAN, TokenizerConfig
from maskgit.evaluation.features import FeatureExtractor
from maskgit.evaluation.reconstruction import codebook_perplexity, evaluate_tokenizer, gaussian_ssim, psnr, ssim
from maskgit.evaluation.statistics import FeatureStatistics, frechet_distance
from training_helpers import RandomImages


def _reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004, window by window: 11x11 Gaussian (sigma 1.5), one window centred on every
    pixel of the image reflect-padded by 5 (torchmetrics' convention)."""
    x, y = (np.pad(a, ((0, 0), (5, 5), (5, 5)), mode="reflect") for a in (x, y))
    coords = np.arange(11) - 5
    line = np.exp(-coords**2 / (2 * 1.5**2))
    window = np.outer(line, line) / np.outer(line, line).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for channel in range(x.shape[0]):
        for top in range(x.shape[1] - 10):
            for left in range(x.shape[2] - 10):
                a, b = x[channel, top : top + 11, left : left + 11], y[channel, top : top + 11, left : left + 11]
                mu_a, mu_b = (window * a).sum(), (window * b).sum()
                var_a = (window * (a - mu_a) ** 2).sum()
                var_b = (window * (b - mu_b) ** 2).sum()
                cov = (window * (a - mu_a) * (b - mu_b)).sum()
                values.append(((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
    return float(np.mean(values))


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 3, 16, 14, generator=generator)
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=generator)).clamp(0, 1)
    return noisy, clean


def test_ssim_matches_the_window_by_window_formula(pair):
    noisy, clean = pair
    expected = [_reference_ssim(n.double().numpy(), c.double().numpy()) for n, c in zip(noisy, clean)]
    np.testing.assert_allclose(gaussian_ssim(noisy, clean).numpy(), expected, rtol=1e-9)
    np.testing.assert_allclose(ssim(noisy, clean).numpy(), expected, rtol=1e-6)  # torchmetrics when installed
    assert torch.allclose(gaussian_ssim(clean, clean), torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="H, W >= 11"):
        ssim(noisy[..., :8, :8], clean[..., :8, :8])


def test_psnr_matches_its_definition(pair):
    noisy, clean = pair
    mse = ((noisy.double() - clean.double()) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(psnr(noisy, clean), -10 * torch.log10(mse))
    assert psnr(noisy, clean).dtype == torch.float64
    half = torch.full((1, 3, 4, 4), 0.5)
    assert psnr(half, torch.zeros_like(half)).item() == pytest.approx(10 * np.log10(4))
    # Per image: an error of 0.1 everywhere is 20 dB, whatever the other image of the batch does.
    targets = torch.zeros(2, 3, 4, 4)
    images = torch.stack([torch.full((3, 4, 4), 0.1), torch.full((3, 4, 4), 1.0)])
    torch.testing.assert_close(psnr(images, targets), torch.tensor([20.0, 0.0], dtype=torch.float64))
    assert psnr(targets, targets).tolist() == [float("inf")] * 2  # reproduced exactly
    with pytest.raises(ValueError, match=r"two equal \(B, C, H, W\) batches"):
        psnr(images, targets[:1])


def test_codebook_perplexity():
    assert codebook_perplexity(torch.ones(8)).item() == pytest.approx(8.0, rel=1e-3)
    assert codebook_perplexity(torch.tensor([5, 0, 0, 0])).item() == pytest.approx(1.0, rel=1e-3)


def test_ssim_without_torchmetrics_is_the_same_number(pair, monkeypatch):
    noisy, clean = pair
    with_library = ssim(noisy, clean)
    monkeypatch.setitem(sys.modules, "torchmetrics.functional.image", None)  # import now fails
    torch.testing.assert_close(ssim(noisy, clean), with_library, rtol=1e-9, atol=1e-12)


def _tokenizer(image_size: int = 16) -> VQGAN:
    torch.manual_seed(0)
    return VQGAN(TokenizerConfig(filters=8, channel_multipliers=(1, 2), num_res_blocks=1, embedding_dim=4,
                                 codebook_size=16, norm_groups=4, image_size=image_size))


def test_tokenizer_evaluation_averages_psnr_and_ssim_and_counts_codes_over_the_first_images():
    tokenizer = _tokenizer().train()
    images = RandomImages(10).images
    scores = evaluate_tokenizer(tokenizer, TensorDataset(images, torch.zeros(10)), max_images=6, batch_size=4)
    assert tokenizer.training  # the training flag is restored
    with torch.no_grad():
        ids = tokenizer.eval().encode_to_ids(images[:6])
        outputs = tokenizer.decode_ids(ids).clamp(0, 1)
    assert scores.images == 6 and scores.fid is None
    assert scores.psnr == pytest.approx(psnr(outputs, images[:6]).mean().item(), rel=1e-9)
    assert scores.ssim == pytest.approx(ssim(outputs, images[:6]).mean().item(), rel=1e-9)
    used = ids.unique().numel()
    assert scores.codebook_usage_percent == pytest.approx(100 * used / 16)
    assert 1 <= scores.codebook_perplexity <= used + 1e-4
    assert scores.as_dict() == {"images": 6, "psnr": scores.psnr, "ssim": scores.ssim,
                                "codebook_usage_percent": scores.codebook_usage_percent,
                                "codebook_perplexity": scores.codebook_perplexity}
    # Images in memory, uint8 or float, are the same images as the dataset's.
    assert evaluate_tokenizer(tokenizer, images, max_images=6, batch_size=4) == scores
    as_uint8 = (images * 255).round().to(torch.uint8)
    assert evaluate_tokenizer(tokenizer, as_uint8, max_images=6, batch_size=4) == evaluate_tokenizer(
        tokenizer, as_uint8.float() / 255, max_images=6, batch_size=4)
    with pytest.raises(ValueError, match="empty"):
        evaluate_tokenizer(tokenizer, RandomImages(0))
    # SSIM's window is 11 px: smaller images have a PSNR but no SSIM.
    small = evaluate_tokenizer(_tokenizer(8), RandomImages(3, size=8).images)
    assert small.ssim is None and "ssim" not in small.as_dict() and small.psnr > 0


class _ChannelMeans(FeatureExtractor):
    """3-d features: the mean of each channel of a float image."""

    name = "channel-means"
    device = torch.device("cpu")

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        return image.float() / 255 if image.dtype == torch.uint8 else image

    def __call__(self, batch):
        return batch.mean(dim=(2, 3)), None


def test_tokenizer_evaluation_can_round_to_uint8_and_measure_the_reconstruction_fid():
    tokenizer = _tokenizer().eval()
    images = (RandomImages(12).images * 255).round() / 255  # exact 8-bit values, as read from PNGs
    scores = evaluate_tokenizer(tokenizer, images, batch_size=5, quantize=True, extractor=_ChannelMeans())
    with torch.no_grad():
        outputs = (tokenizer.decode_ids(tokenizer.encode_to_ids(images)).clamp(0, 1) * 255).round() / 255
    assert scores.psnr == pytest.approx(psnr(outputs, images).mean().item(), rel=1e-9)
    plain = evaluate_tokenizer(tokenizer, images, batch_size=5)
    assert plain.psnr != scores.psnr and plain.codebook_usage_percent == scores.codebook_usage_percent
    # The rFID: the reconstructions' features against the inputs'.
    expected = frechet_distance(FeatureStatistics.from_features(outputs.mean(dim=(2, 3))),
                                FeatureStatistics.from_features(images.mean(dim=(2, 3))))
    assert scores.fid == pytest.approx(expected, rel=1e-6) and scores.fid > 0
    with pytest.raises(ValueError, match="at least 2 images"):
        evaluate_tokenizer(tokenizer, images, max_images=1, extractor=_ChannelMeans())
