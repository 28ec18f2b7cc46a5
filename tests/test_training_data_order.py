"""training/data_order.py: the step-indexed data order shared by ranks and micro-steps, resumable
positions, and per-sample randomness from (seed, epoch, index) alone."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from maskgit.data.transforms import PadTransform
from maskgit.training.data_order import DataPosition, SeededDataset, StepBatchSampler, epoch_permutation, mix_seed
from maskgit.training.masking import sample_masks
from training_helpers import RandomImages


def _take(sampler: StepBatchSampler, count: int) -> list[list[tuple[int, int]]]:
    iterator = iter(sampler)
    return [next(iterator) for _ in range(count)]


def test_ranks_and_micro_steps_partition_the_single_process_batches():
    common = dict(seed=5, start=DataPosition())
    single = _take(StepBatchSampler(10, 4, world_size=1, rank=0, grad_accum_steps=1, **common), 6)
    ranks = [_take(StepBatchSampler(10, 4, world_size=2, rank=r, grad_accum_steps=2, **common), 12) for r in range(2)]
    for step in range(6):
        # Micro-step a of rank r holds global positions a*W*m + r*m ... in order.
        pieces = [ranks[r][2 * step + a] for a in range(2) for r in range(2)]
        assert sum(pieces, []) == single[step]
    # 10 samples, batch 4: two batches per epoch, the last 2 samples of each epoch dropped.
    epochs = [batch[0][0] for batch in single]
    assert epochs == [0, 0, 1, 1, 2, 2]
    first_epoch = sorted(index for batch in single[:2] for _, index in batch)
    assert len(set(first_epoch)) == 8
    assert [i for _, i in single[2]] != [i for _, i in single[0]]  # a new permutation each epoch


def test_a_sampler_started_at_a_saved_position_continues_the_sequence():
    full = _take(StepBatchSampler(10, 4, world_size=1, rank=0, grad_accum_steps=1, seed=1, start=DataPosition()), 5)
    position = DataPosition()
    for _ in range(3):
        position = position.advanced(4, 10)
    assert position == DataPosition(1, 4)
    resumed = _take(StepBatchSampler(10, 4, world_size=1, rank=0, grad_accum_steps=1, seed=1, start=position), 2)
    assert resumed == full[3:5]


def test_sample_randomness_depends_on_seed_epoch_and_index_only():
    dataset = SeededDataset(RandomImages(4, size=8), seed=3)
    a = dataset[(0, 2)]
    torch.rand(100)  # the caller's RNG state does not matter ...
    b = dataset[(0, 2)]
    assert torch.equal(a[0], b[0]) and a[2] == b[2]
    # ... and is not disturbed.
    state = torch.get_rng_state()
    dataset[(1, 2)]
    assert torch.equal(state, torch.get_rng_state())
    assert len({dataset[(epoch, 2)][2] for epoch in range(5)}) == 5


class _AsymmetricImage(torch.utils.data.Dataset):
    """One left-right asymmetric image through the real Fashion-MNIST training transform (a flip)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.image = Image.fromarray(np.arange(36, dtype=np.uint8).reshape(6, 6) * 7)
        self.transform = PadTransform(8, flip=True)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.image), 0


def test_a_samples_flip_and_its_mask_ratio_are_independent():
    # Both used to come from the first uniform of one seed: flipped exactly when the mask ratio
    # was above cos(pi/4), so a model never saw a mirrored image with few tokens masked.
    dataset = SeededDataset(_AsymmetricImage(600), seed=11)
    unflipped = PadTransform(8)(dataset.dataset.image)
    items = [dataset[(0, index)] for index in range(len(dataset))]
    flipped = torch.tensor([not torch.equal(image, unflipped) for image, _, _ in items])
    mask, _ = sample_masks(torch.tensor([seed for _, _, seed in items]), 64)
    high_ratio = mask.sum(1) > 64 * np.cos(np.pi / 4)
    assert 0.4 < flipped.float().mean() < 0.6
    # Every combination occurs about as often as independence predicts (a quarter each; the old
    # coupling gave exactly 0 for two of them).
    for flip in (True, False):
        for high in (True, False):
            share = ((flipped == flip) & (high_ratio == high)).float().mean().item()
            assert 0.18 < share < 0.32, (flip, high, share)


def _splitmix64_reference(value: int) -> int:
    """Vigna's splitmix64 output function, restated from the published C code."""
    mask = (1 << 64) - 1
    z = (value + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def test_mix_seed_is_chained_splitmix64_in_63_bits():
    assert mix_seed(7) == _splitmix64_reference(7) >> 1
    assert mix_seed(7, 3) == _splitmix64_reference(_splitmix64_reference(7) ^ 3) >> 1
    assert mix_seed(-1) == _splitmix64_reference((1 << 64) - 1) >> 1  # negatives wrap to 64 bits
    seeds = {mix_seed(seed, epoch, index) for seed in range(3) for epoch in range(3) for index in range(50)}
    assert len(seeds) == 450 and all(0 <= s < 2**63 for s in seeds)
    assert mix_seed(1, 2) != mix_seed(2, 1)  # order matters


def test_data_position_drops_the_incomplete_last_batch():
    assert DataPosition(0, 4).normalized(4, 10) == DataPosition(0, 4)
    assert DataPosition(0, 8).normalized(4, 10) == DataPosition(1, 0)  # 2 samples left: dropped
    assert DataPosition(0, 6).advanced(4, 10) == DataPosition(0, 10)
    assert DataPosition(0, 10).advanced(4, 10) == DataPosition(1, 4)
    assert DataPosition(2, 0).normalized(4, 4) == DataPosition(2, 0)  # an exact fit stays


def test_epoch_permutations_are_seeded_permutations():
    first = epoch_permutation(5, 0, 100)
    assert sorted(first.tolist()) == list(range(100))
    assert torch.equal(first, epoch_permutation(5, 0, 100))
    assert not torch.equal(first, epoch_permutation(5, 1, 100))
    assert not torch.equal(first, epoch_permutation(6, 0, 100))


def test_seeded_dataset_returns_the_sample_seed_and_label():
    dataset = SeededDataset(RandomImages(4, size=8), seed=3)
    image, label, seed = dataset[(2, 1)]
    assert seed == mix_seed(3, 2, 1) and label == int(dataset.dataset.labels[1]) and len(dataset) == 4
    assert image.shape == (3, 8, 8)
