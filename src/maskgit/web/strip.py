"""The decoding strip: one frame per decoding step, showing which tokens are still masked.

A ``StripRecorder`` is passed as the pipeline's ``callback``. After each step it keeps the token grid
of one image: the tokens decided so far, and the ones still masked. ``render`` decodes every frame
with the pipeline's tokenizer and covers the still-masked tokens with a grey checkerboard (one square
per token), so the frames read left to right as the image filling in, as MaskGIT decodes it.

The decoder needs a full grid, so a still-masked position is decoded from the step's sampled guess
(``sampled_ids``) before it is covered; the covered pixels never show that guess, but it does reach the visible pixels
next to it through the decoder's receptive field.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from maskgit.sampling import MASK_ID, DecodeStep

__all__ = ["StripRecorder", "checker_overlay"]

# Two greys, far from the garment colours, so masked tokens read as "not decided yet".
_CHECKER = (0.42, 0.58)


def checker_overlay(images: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Cover masked tokens with a grey checkerboard.

    images (N, 3, H, W) float in [0, 1]; masked (N, h, w) bool with H, W multiples of h, w.
    Returns a new (N, 3, H, W) tensor.
    """
    count, _, height, width = images.shape
    rows, columns = masked.shape[-2:]
    factor_h, factor_w = height // rows, width // columns
    parity = (torch.arange(rows)[:, None] + torch.arange(columns)[None, :]) % 2
    grey = torch.where(parity.bool(), _CHECKER[1], _CHECKER[0]).to(images)
    cover = masked.to(images.device).repeat_interleave(factor_h, -2).repeat_interleave(factor_w, -1)
    grey = grey.repeat_interleave(factor_h, 0).repeat_interleave(factor_w, 1)
    return torch.where(cover[:, None], grey.expand(count, 3, height, width), images)


class StripRecorder:
    """A decoding ``callback`` that records the token grid of one image after every step.

    Args:
        decode_ids: token ids (N, h, w) int64 → images (N, 3, H, W) float in [0, 1].
        row: which image of the batch to record.
        on_step: called with ``(steps done, total)`` after each step (progress).
        total: the steps of the whole run, every window's (``maskgit.runs.RunCost``); None: the
            steps of the decode under way.
    """

    def __init__(
        self,
        decode_ids: Callable[[torch.Tensor], torch.Tensor],
        row: int = 0,
        on_step: Callable[[int, int], None] | None = None,
        total: int | None = None,
    ) -> None:
        self.decode_ids = decode_ids
        self.row = row
        self.on_step = on_step
        self.total = total
        self.frames: list[tuple[torch.Tensor, torch.Tensor]] = []  # (ids (h, w), masked (h, w))

    def __call__(self, step: DecodeStep) -> None:
        # Position 0 of a sequence is the class slot; the rest is the square token window.
        # sampled_ids holds the known tokens and the step's guess everywhere else; next_ids marks the
        # positions still masked. After the last step the output is sampled_ids as it is (the
        # official decoder still re-masks a token in next_ids there, which nothing reads).
        ids = step.sampled_ids[self.row, 1:].detach().cpu()
        if step.step < step.num_steps - 1:
            masked = step.next_ids[self.row, 1:].detach().cpu() == MASK_ID
        else:
            masked = torch.zeros_like(ids, dtype=torch.bool)
        side = math.isqrt(ids.numel())
        self.frames.append((ids.reshape(side, side), masked.reshape(side, side)))
        if self.on_step is not None:
            if self.total is None:
                self.on_step(step.step + 1, step.num_steps)
            else:
                self.on_step(len(self.frames), self.total)

    def render(self, min_side: int = 96, gap: int = 4) -> np.ndarray:
        """All frames side by side: uint8 (S, n * (S + gap) - gap, 3), each frame scaled up by an
        integer factor (nearest) to at least ``min_side`` pixels, white gaps between frames."""
        if not self.frames:
            raise ValueError("no decoding steps were recorded")
        ids = torch.stack([frame[0] for frame in self.frames])
        masked = torch.stack([frame[1] for frame in self.frames])
        with torch.inference_mode():
            images = self.decode_ids(ids).float().clamp(0, 1).cpu()
        images = checker_overlay(images, masked)
        scale = max(1, math.ceil(min_side / images.shape[-1]))
        images = images.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
        count, _, height, width = images.shape
        strip = torch.ones(3, height, count * (width + gap) - gap)
        for index, image in enumerate(images):
            strip[:, :, index * (width + gap) : index * (width + gap) + width] = image
        return (strip * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
