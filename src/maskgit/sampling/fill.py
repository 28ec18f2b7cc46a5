"""Fill the unknown tokens of a token canvas of any size with a fixed-size transformer.

The transformer's learned positions cover one ``latent_size x latent_size`` raster, so a canvas of
another size is filled window by window: each step decodes the window that holds unknown tokens
and the most known context, until none are left. A canvas of exactly the model's size is a single
official ``decode`` call, so box editing at the model's size matches the official demo exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from maskgit.sampling.engine import DecodeStep, run_sampler
from maskgit.sampling.noise import NoiseSource
from maskgit.sampling.samplers import Sampler
from maskgit.sampling.steps import MASK_ID

__all__ = ["fill_tokens"]


def _origins(length: int, window: int) -> list[int]:
    """Window starts along one axis: half-overlapping, with the last flush to the end."""
    if length <= window:
        return [0]
    stride = max(1, window // 2)
    starts = list(range(0, length - window, stride))
    return starts + [length - window]


def fill_tokens(
    transformer: Callable[[torch.Tensor], torch.Tensor],
    canvas: torch.Tensor,
    class_tokens: torch.Tensor,
    *,
    latent_size: int,
    sampler: Sampler,
    noise: NoiseSource,
    start_step: int = 0,
    callback: Callable[[DecodeStep], None] | None = None,
) -> torch.Tensor:
    """Fill a token canvas with ``sampler``, window by window when it is not the model's size.

    Args:
        transformer: ids (B, 1 + latent_size²) → logits, as for ``run_sampler``.
        canvas: (B, h, w) int64 with ``MASK_ID`` (-1) where tokens are to be generated; all rows
            must have their unknown tokens at the same positions.
        class_tokens: (B,) int64, ``label + codebook_size``.
        latent_size: the side of the model's token grid.
        sampler: the per-step decisions, shared by every window.
        noise: the run's randomness; window k draws from ``noise.window(k)``.
        start_step: first decoding step of every window.
        callback: called after every step of every window (``DecodeStep`` of that window).

    Returns:
        (B, h, w) int64 with every token filled.
    """
    if canvas.dim() != 3:
        raise ValueError(f"canvas must be (B, h, w), got shape {tuple(canvas.shape)}")
    unknown = canvas == MASK_ID
    if not torch.equal(unknown, unknown[:1].expand_as(unknown)):
        raise ValueError("all rows of the canvas must have their unknown tokens at the same positions")
    if not unknown.any():
        raise ValueError("nothing to generate: the canvas has no unknown tokens")
    batch, height, width = canvas.shape
    # A canvas smaller than the window is padded with unknowns that are generated and cropped away.
    padded = F.pad(canvas, (0, max(0, latent_size - width), 0, max(0, latent_size - height)), value=MASK_ID).clone()
    padded_h, padded_w = padded.shape[1:]
    windows = [(top, left) for top in _origins(padded_h, latent_size) for left in _origins(padded_w, latent_size)]
    for window_index in range(len(windows) + 1):
        unknown = padded[0] == MASK_ID
        best, best_known = None, -1
        for top, left in windows:
            cell = unknown[top : top + latent_size, left : left + latent_size]
            if cell.any():
                known = int((~cell).sum())
                if known > best_known:
                    best, best_known = (top, left), known
        if best is None:
            break
        top, left = best
        window = padded[:, top : top + latent_size, left : left + latent_size]
        sequence = torch.cat([class_tokens[:, None].to(window), window.reshape(batch, -1)], dim=1)
        final = run_sampler(
            transformer, sequence, sampler, noise.window(window_index), start_step=start_step, callback=callback
        )
        padded[:, top : top + latent_size, left : left + latent_size] = final[:, -1, 1:].reshape(
            batch, latent_size, latent_size
        )
    return padded[:, :height, :width]
