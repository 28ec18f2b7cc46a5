"""training/masking.py: training masks use the decoder's cosine schedule with training's own float32
rounding, unchanged; each row follows its own sample seed; masked inputs put the class token first."""

from __future__ import annotations

import math

import pytest
import torch

from maskgit.sampling.schedules import MIN_MASK_RATIO, cosine_ratio, mask_ratio
from maskgit.training.masking import masked_inputs, sample_masks

# Every value torch.rand can return is a multiple of 2**-24; a stride of 7 keeps the test fast.
UNIFORM = torch.arange(0, 2**24, 7, dtype=torch.float32) * 2**-24


def test_training_cosine_is_bitwise_the_formula_training_always_used():
    # Before the schedules were shared, masking.py computed torch.cos(0.5 * math.pi * r).
    assert torch.equal(cosine_ratio(UNIFORM, correctly_rounded=False), torch.cos(0.5 * math.pi * UNIFORM))


def test_decoder_cosine_is_the_clamped_correctly_rounded_ratio_within_one_ulp_of_trainings():
    rounded = cosine_ratio(UNIFORM)
    assert torch.equal(mask_ratio("cosine", UNIFORM, 256), rounded.clamp(MIN_MASK_RATIO, 1.0))
    angle = torch.tensor(math.pi / 2, dtype=torch.float32) * UNIFORM  # float32, as the official code
    assert torch.equal(rounded, torch.cos(angle.double()).float())
    kernel = cosine_ratio(UNIFORM, correctly_rounded=False)
    ulps = (rounded.view(torch.int32) - kernel.view(torch.int32)).abs()
    assert int(ulps.max()) <= 1


def test_sample_masks_mask_ceil_of_the_cosine_ratio_per_seed():
    seeds = torch.arange(100, 164)
    mask, drop = sample_masks(seeds, 16, class_dropout=0.5)
    first = torch.stack([torch.rand(18, generator=torch.Generator().manual_seed(int(s)))[0] for s in seeds])
    expected = torch.ceil(torch.cos(0.5 * math.pi * first) * 16).long().clamp(1, 16)
    assert torch.equal(mask.sum(1), expected)
    assert 0 < int(drop.sum()) < 64
    again, _ = sample_masks(seeds[10:20], 16, class_dropout=0.5)
    assert torch.equal(again, mask[10:20])


def test_masks_follow_the_cosine_schedule_and_the_sample_seed():
    seeds = torch.arange(2000) * 7919
    mask, drop = sample_masks(seeds, 16, class_dropout=0.25)
    counts = mask.sum(1)
    assert counts.min() >= 1 and counts.max() <= 16
    # E[cos(pi/2 r)] = 2/pi for r ~ U[0, 1): the masked fraction averages about 0.64 (+ ceil).
    assert 0.62 < counts.float().mean().item() / 16 < 0.72
    assert 0.2 < drop.float().mean().item() < 0.3
    # Each row depends on its own seed only, not on the batch it is in.
    again, _ = sample_masks(seeds[5:8], 16, class_dropout=0.25)
    assert torch.equal(again, mask[5:8])
    ids = torch.tensor([[3, 4, 5]])
    tokens = masked_inputs(ids, torch.tensor([1]), torch.tensor([[True, False, True]]), torch.tensor([False]),
                           codebook_size=8, mask_token_id=11)
    assert tokens.tolist() == [[9, 11, 4, 11]]
    # A dropped label becomes the null class (id 10 = 8 codes + 2 classes), never the mask token.
    dropped = masked_inputs(ids, torch.tensor([1]), torch.tensor([[False] * 3]), torch.tensor([True]),
                            codebook_size=8, mask_token_id=11, null_class_id=10)
    assert dropped.tolist() == [[10, 3, 4, 5]]
    with pytest.raises(ValueError, match="null class"):
        masked_inputs(ids, torch.tensor([1]), torch.tensor([[False] * 3]), torch.tensor([True]),
                      codebook_size=8, mask_token_id=11)
