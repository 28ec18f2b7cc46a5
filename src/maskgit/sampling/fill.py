"""Fill the unknown tokens of a token canvas of any size with a fixed-size transformer.

The transformer's learned positions cover one ``latent_size x latent_size`` raster, so a canvas of
another size is filled window by window: each step decodes the window that holds unknown tokens
and the most known context, until none are left. A canvas of exactly the model's size is a single
official ``decode`` call, so box editing at the model's size matches the official demo exactly.

Which windows are decoded, and in what order, follows from the positions of the unknown tokens
alone (``plan_windows``), so a run knows its whole cost before it starts.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from maskgit.sampling.engine import DecodeStep, run_sampler
from maskgit.sampling.noise import NoiseSource
from maskgit.sampling.samplers import Sampler
from maskgit.sampling.steps import MASK_ID

__all__ = ["fill_tokens", "plan_windows"]


def _origins(length: int, window: int) -> list[int]:
    """Window starts along one axis: half-overlapping, with the last flush to the end."""
    if length <= window:
        return [0]
    stride = max(1, window // 2)
    starts = list(range(0, length - window, stride))
    return starts + [length - window]


def plan_windows(unknown: torch.Tensor, latent_size: int) -> list[tuple[int, int]]:
    """The windows that ``fill_tokens`` decodes, in order, for a canvas whose unknown tokens are
    ``unknown`` (bool (h, w)): the (top, left) corner of each ``latent_size x latent_size`` window
    of the canvas padded to at least one window. Each is the window with the most known tokens
    among those that still hold unknown ones (the first such in raster order of the corners), and
    decoding it makes all of its tokens known.

    Computed from the positions alone, before any decoding: a window's unknown count is kept up to
    date as its neighbours are decoded, so thousands of windows plan in well under a second.
    """
    if unknown.dim() != 2 or unknown.dtype != torch.bool:
        raise ValueError(f"unknown must be a bool (h, w) tensor, got {unknown.dtype} of shape {tuple(unknown.shape)}")
    height, width = unknown.shape
    grid = np.pad(unknown.cpu().numpy(), ((0, max(0, latent_size - height)), (0, max(0, latent_size - width))),
                  constant_values=True)
    tops, lefts = _origins(grid.shape[0], latent_size), _origins(grid.shape[1], latent_size)
    # Unknown tokens of every window, from the summed-area table of the grid.
    table = np.pad(grid.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    rows, columns = np.asarray(tops)[:, None], np.asarray(lefts)[None, :]
    counts = (table[rows + latent_size, columns + latent_size] - table[rows, columns + latent_size]
              - table[rows + latent_size, columns] + table[rows, columns])
    area = latent_size * latent_size
    order = []
    while True:
        # Known tokens of the windows that still hold unknown ones; argmax takes the first best.
        score = np.where(counts > 0, area - counts, -1)
        best = int(score.argmax())
        if score.flat[best] < 0:
            return order
        row, column = divmod(best, len(lefts))
        top, left = tops[row], lefts[column]
        order.append((top, left))
        grid[top : top + latent_size, left : left + latent_size] = False
        # Only the windows that overlap this one change.
        rows = range(bisect.bisect_right(tops, top - latent_size), bisect.bisect_left(tops, top + latent_size))
        columns = range(bisect.bisect_right(lefts, left - latent_size), bisect.bisect_left(lefts, left + latent_size))
        for i in rows:
            for j in columns:
                counts[i, j] = grid[tops[i] : tops[i] + latent_size, lefts[j] : lefts[j] + latent_size].sum()


def fill_tokens(
    transformer: Callable[[torch.Tensor], torch.Tensor],
    canvas: torch.Tensor,
    class_tokens: torch.Tensor,
    *,
    latent_size: int,
    sampler: Sampler,
    noise: NoiseSource,
    start_step: int = 0,
    windows: Sequence[tuple[int, int]] | None = None,
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
        windows: the canvas's ``plan_windows``, when the caller has planned them already.
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
    if windows is None:
        windows = plan_windows(unknown[0], latent_size)
    batch, height, width = canvas.shape
    # A canvas smaller than the window is padded with unknowns that are generated and cropped away.
    padded = F.pad(canvas, (0, max(0, latent_size - width), 0, max(0, latent_size - height)), value=MASK_ID).clone()
    for window_index, (top, left) in enumerate(windows):
        window = padded[:, top : top + latent_size, left : left + latent_size]
        sequence = torch.cat([class_tokens[:, None].to(window), window.reshape(batch, -1)], dim=1)
        final = run_sampler(
            transformer, sequence, sampler, noise.window(window_index), start_step=start_step, callback=callback
        )
        padded[:, top : top + latent_size, left : left + latent_size] = final[:, -1, 1:].reshape(
            batch, latent_size, latent_size
        )
    return padded[:, :height, :width]
