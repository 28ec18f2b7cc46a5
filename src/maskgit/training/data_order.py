"""The order and the randomness of the training data, as functions of the seed alone.

Everything random about a *sample* (its augmentation, its mask, its class dropout) is drawn from a
generator seeded by ``(seed, epoch, index)``, never from a stream that depends on the rank, the
data-loader worker or the batch split. So N processes see the same global batch, with the same
randomness, as one process, and a resumed run sees the same data as an uninterrupted one. The data
order is a seeded permutation per epoch; the position in it (epoch, index) is what a checkpoint
saves.

``batch_size`` is the global batch of one optimizer step: ``world_size × grad_accum_steps``
micro-batches of ``batch_size / (world_size · grad_accum_steps)`` samples. The last incomplete
batch of an epoch is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

__all__ = ["mix_seed", "DataPosition", "epoch_permutation", "SeededDataset", "StepBatchSampler", "RANK_TAG", "AUGMENT_TAG"]

_MASK64 = (1 << 64) - 1


def _splitmix64(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def mix_seed(*values: int) -> int:
    """A well-mixed 63-bit seed from integers (splitmix64 chained), the same on every platform."""
    state = 0
    for value in values:
        state = _splitmix64(state ^ (int(value) & _MASK64))
    return state >> 1


_PERMUTATION_TAG = 0x5EED_0001
RANK_TAG = 0x5EED_0002
AUGMENT_TAG = 0x5EED_0003


@dataclass(frozen=True)
class DataPosition:
    """Where the next global batch starts: ``index`` into epoch ``epoch``'s permutation."""

    epoch: int = 0
    index: int = 0

    def normalized(self, batch_size: int, dataset_size: int) -> DataPosition:
        """Move to the next epoch when the rest of this one cannot fill a batch (dropped)."""
        if self.index + batch_size > dataset_size:
            return DataPosition(self.epoch + 1, 0)
        return self

    def advanced(self, batch_size: int, dataset_size: int) -> DataPosition:
        start = self.normalized(batch_size, dataset_size)
        return DataPosition(start.epoch, start.index + batch_size)


def epoch_permutation(seed: int, epoch: int, size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(mix_seed(seed, epoch, _PERMUTATION_TAG))
    return torch.randperm(size, generator=generator)


class SeededDataset(Dataset):
    """Wraps a dataset of ``(x, label)`` items; key ``(epoch, index)`` → ``(x, label, sample_seed)``.

    ``sample_seed = mix_seed(seed, epoch, index)``. The item is produced with torch's global RNG
    seeded by ``mix_seed(sample_seed, AUGMENT_TAG)`` (inside ``fork_rng``, so the caller's RNG is
    untouched): random augmentations drawn from torch's RNG become a function of the sample and the
    epoch only. The trainer draws the sample's other randomness (mask, class dropout) from a
    generator seeded by ``sample_seed`` itself; the tag keeps the two streams apart (with one seed
    for both, the flip and the mask ratio would be the same uniform draw).
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> tuple[Any, int, int]:
        epoch, index = key
        sample_seed = mix_seed(self.seed, epoch, index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix_seed(sample_seed, AUGMENT_TAG))
            item = self.dataset[index]
        x, label = item[0], item[1]
        return x, int(label), sample_seed


class StepBatchSampler:
    """Yields this rank's micro-batches of keys ``(epoch, index)``, forever, from ``start`` on.

    Global batch b of an epoch is ``permutation[b·B : (b+1)·B]``; its micro-step a is the slice
    ``[a·W·m, (a+1)·W·m)`` of which rank r takes ``[r·m, (r+1)·m)`` (B = batch_size, W = world
    size, m = micro-batch size). Every micro-step of one optimizer step is yielded in order.
    """

    def __init__(
        self,
        dataset_size: int,
        batch_size: int,
        *,
        world_size: int,
        rank: int,
        grad_accum_steps: int,
        seed: int,
        start: DataPosition,
    ) -> None:
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.grad_accum_steps = grad_accum_steps
        self.micro_batch = batch_size // (world_size * grad_accum_steps)
        self.seed = seed
        self.start = start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        position = self.start
        permutation_epoch, permutation = -1, torch.empty(0, dtype=torch.long)
        span = self.world_size * self.micro_batch
        while True:
            position = position.normalized(self.batch_size, self.dataset_size)
            if position.epoch != permutation_epoch:
                permutation_epoch = position.epoch
                permutation = epoch_permutation(self.seed, position.epoch, self.dataset_size)
            batch = permutation[position.index : position.index + self.batch_size].tolist()
            for micro_step in range(self.grad_accum_steps):
                first = micro_step * span + self.rank * self.micro_batch
                yield [(position.epoch, index) for index in batch[first : first + self.micro_batch]]
            position = position.advanced(self.batch_size, self.dataset_size)
