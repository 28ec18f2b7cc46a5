"""PSNR and SSIM against their reference formulas (and torchmetrics' SSIM when installed)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from maskgit.evaluation.reconstruction import gaussian_ssim, psnr, ssim


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
    half = torch.full((1, 3, 4, 4), 0.5)
    assert psnr(half, torch.zeros_like(half)).item() == pytest.approx(10 * np.log10(4))


def test_ssim_without_torchmetrics_is_the_same_number(pair, monkeypatch):
    noisy, clean = pair
    with_library = ssim(noisy, clean)
    monkeypatch.setitem(sys.modules, "torchmetrics.functional.image", None)  # import now fails
    torch.testing.assert_close(ssim(noisy, clean), with_library, rtol=1e-9, atol=1e-12)
