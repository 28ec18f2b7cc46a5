"""web/strip.py: the decoding strip, one frame per step with the still-masked tokens checkered."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskgit.imageio import to_uint8
from maskgit.sampling import MASK_ID
from maskgit.web.strip import StripRecorder, checker_overlay


def test_checker_overlay_covers_masked_tokens_only():
    images = torch.rand(2, 3, 8, 8)
    masked = torch.zeros(2, 4, 4, dtype=torch.bool)
    masked[0, 1, 2] = True
    covered = checker_overlay(images, masked)
    assert torch.equal(covered[1], images[1])
    assert torch.equal(covered[0, :, 2:4, 4:6], torch.full((3, 2, 2), 0.58))  # (1 + 2) odd: the lighter grey
    keep = torch.ones(8, 8, dtype=torch.bool)
    keep[2:4, 4:6] = False
    assert torch.equal(covered[0][:, keep], images[0][:, keep])


def test_strip_records_every_step_and_ends_fully_decoded(shipped_pipeline):
    seen = []
    recorder = StripRecorder(lambda ids: shipped_pipeline.tokenizer.decode_ids(ids), on_step=lambda d, t: seen.append((d, t)))
    images = shipped_pipeline.generate([3, 5], sampler=shipped_pipeline.default_sampler().replace(num_steps=6), seed=1,
                               callback=recorder)
    assert seen == [(k, 6) for k in range(1, 7)]
    masked_counts = [int(masked.sum()) for _, masked in recorder.frames]
    assert masked_counts == sorted(masked_counts, reverse=True) and masked_counts[0] > 0 and masked_counts[-1] == 0
    strip = recorder.render(min_side=64, gap=4)
    assert strip.dtype == np.uint8 and strip.shape == (64, 6 * 68 - 4, 3)
    # The last frame is the first image itself, scaled up 2x (nearest).
    last = strip[:, -64:][::2, ::2]
    np.testing.assert_allclose(last.astype(int), to_uint8(images[0]).astype(int), atol=1)
    # The first frame shows the checker where tokens are still masked.
    first_ids, first_masked = recorder.frames[0]
    assert (first_ids != MASK_ID).all()  # masked positions are decoded from the step's guess
    row, column = map(int, first_masked.nonzero()[0])
    assert set(np.unique(strip[row * 4 : row * 4 + 4, column * 4 : column * 4 + 4])) <= {107, 148}


def test_strip_without_steps_is_an_error(shipped_pipeline):
    with pytest.raises(ValueError, match="no decoding steps"):
        StripRecorder(shipped_pipeline.tokenizer.decode_ids).render()
