"""What a run makes and what it costs, known before it starts.

``RunPlan``: ``per_class`` images of each class in turn, image ``i`` of class
``classes[i // per_class]``, and the file each goes to. ``RunCost``: the decoding windows, steps and
transformer passes of one image, and the check against the limit on them.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from maskgit.validation import MAX_TOKEN_PASSES, check_token_passes

__all__ = ["RunPlan", "RunCost"]


@dataclass(frozen=True)
class RunPlan:
    """``per_class`` images of each class id in ``classes``, in that order.

    Files: ``<class:04d>/<k:04d>.png``, where ``k`` counts the images of that class over the whole
    run, so a class listed twice gets distinct files (the layout of ``maskgit generate`` and of
    maskgit-torch's ``generate_imagenet.py``); with ``prefix``, ``<prefix>_<i:04d>.png`` (the
    editing commands). Process ``rank`` of ``world_size`` makes the images with
    ``i % world_size == rank`` (round-robin, so that every process gets every class).
    """

    classes: tuple[int, ...]
    per_class: int
    prefix: str | None = None

    def __post_init__(self) -> None:
        if not self.classes:
            raise ValueError("a run needs at least one class")
        if self.per_class < 1:
            raise ValueError(f"images per class must be at least 1, got {self.per_class}")

    def __len__(self) -> int:
        return len(self.classes) * self.per_class

    def label(self, index: int) -> int:
        """The class id of image ``index``."""
        return self.classes[index // self.per_class]

    @property
    def labels(self) -> list[int]:
        return [self.label(index) for index in range(len(self))]

    @functools.cached_property
    def _first_number(self) -> tuple[int, ...]:
        """For each entry of ``classes``: the number of its class's first image in this run."""
        seen: dict[int, int] = {}
        numbers = []
        for label in self.classes:
            numbers.append(seen.get(label, 0))
            seen[label] = numbers[-1] + self.per_class
        return tuple(numbers)

    def path(self, index: int) -> str:
        """Where image ``index`` goes, relative to the run's folder."""
        if self.prefix is not None:
            return f"{self.prefix}_{index:04d}.png"
        entry = index // self.per_class
        return f"{self.classes[entry]:04d}/{self._first_number[entry] + index % self.per_class:04d}.png"

    @property
    def paths(self) -> list[str]:
        return [self.path(index) for index in range(len(self))]

    def shard(self, rank: int, world_size: int) -> list[int]:
        """The image indices process ``rank`` of ``world_size`` makes."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        return list(range(rank, len(self), world_size))

    def rows(self) -> list[tuple[int, list[int]]]:
        """Each class once, in order of first appearance, with the indices of its images."""
        rows: dict[int, list[int]] = {}
        for index in range(len(self)):
            rows.setdefault(self.label(index), []).append(index)
        return list(rows.items())


@dataclass(frozen=True)
class RunCost:
    """The transformer work of one image, known before any decoding.

    Attributes:
        windows: windows decoded per image (one unless the canvas is not the model's token grid,
            ``maskgit.sampling.fill.plan_windows``).
        steps: decoding steps per window (``num_steps - start_step``).
        passes: transformer passes per window (``Sampler.transformer_passes``: a guided step is two).
        sequence: tokens per pass: the class slot and the model's window.
    """

    windows: int
    steps: int
    passes: int
    sequence: int

    @property
    def token_passes(self) -> int:
        """Tokens through the transformer for one image: what its decoding time grows with,
        for a small and a large model alike. With context reuse it is the most: a cheap step
        puts fewer tokens through."""
        return self.windows * self.passes * self.sequence

    def decoding_steps(self, images: int, batch_size: int) -> int:
        """Decoding steps of ``images`` images made ``batch_size`` at a time: a progress bar's total."""
        return math.ceil(images / batch_size) * self.windows * self.steps

    def check(self, limit: int = MAX_TOKEN_PASSES, *, flag: str = "--max-token-passes") -> None:
        """ValueError when one image takes more token passes than ``limit`` (which ``flag`` raises)."""
        check_token_passes(self.windows, self.passes, self.sequence, limit, flag=flag)
