"""A generation run: its plan, sampler and seed, and the one loop that makes and writes its images.

Image ``i`` of a run depends only on ``(seed, i)`` (``MaskGIT.generate``'s ``image_indices``), so the
images are the same whatever the batch size, the number of processes or the interruptions: ``write``
makes only the images not on disk yet (each PNG written atomically, so a killed run leaves only
whole files), and process ``rank`` of ``world_size`` makes only its share of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm.auto import tqdm

from maskgit.imageio import load_image, make_class_grid, make_grid, save_image
from maskgit.runs.manifest import MANIFEST, SamplingSettings, read_manifest
from maskgit.runs.plan import RunCost, RunPlan
from maskgit.sampling.engine import DecodeStep
from maskgit.sampling.fill import plan_windows
from maskgit.sampling.noise import random_seed
from maskgit.sampling.samplers import Sampler

__all__ = ["Run", "Make", "resolve_seed", "still_to_make", "GRID_IMAGES", "GRID_ROWS", "GRID_COLUMNS"]

#: How a run's images are made: (image indices, step callback) → float32 (B, 3, H, W) in [0, 1].
Make = Callable[[list[int], Callable[[DecodeStep], None] | None], torch.Tensor]

S = TypeVar("S", bound=SamplingSettings)

GRID_IMAGES = 64  # a grid shows the first images only, so that its size stays bounded
GRID_ROWS, GRID_COLUMNS = 32, 16  # the same bound for a grid with one row per class


def resolve_seed(
    seed: int | None, folder: str | os.PathLike[str] | None = None, *, resume: bool = False
) -> tuple[int, bool]:
    """The seed rule of a run: ``seed`` when given; else, resuming, the seed recorded in
    ``folder``'s manifest; else a fresh random one. Returns ``(seed, drawn)``, ``drawn`` True when
    the seed was drawn at random (show it, so that the run can be repeated)."""
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        return seed, False
    if resume and folder is not None:
        path = Path(folder) / MANIFEST
        try:
            settings = read_manifest(folder).settings
        except (OSError, ValueError):
            settings = None
        if not isinstance(settings, SamplingSettings):
            raise ValueError(f"resuming without a seed takes the seed of the first run, and {path} records none; "
                             "give the seed that run printed")
        return settings.seed, False
    return random_seed(), True


def still_to_make(paths: Sequence[str | os.PathLike[str]], *, resume: bool) -> list[int]:
    """The indices of ``paths`` that a run writes: all of them, or when it resumes, those not on disk
    yet (a PNG is written atomically, so one on disk is whole)."""
    return [index for index, path in enumerate(paths) if not (resume and Path(path).is_file())]


@dataclass(frozen=True)
class Run:
    """One run: ``plan`` (what to make), ``sampler`` and ``seed`` (how). A run that fills part of a
    canvas (the editing modes) gives the canvas's ``unknown`` tokens (bool (h, w)) and the
    ``start_step`` its decoding starts at; by default every token of the model's grid is
    generated from step 0.

    ``write`` makes the images with ``make`` (default: class-conditional generation of the plan's
    labels, ``MaskGIT.generate``); an editing run passes its own (``MaskGIT.edit`` and the others
    take ``image_indices`` too).
    """

    plan: RunPlan
    sampler: Sampler
    seed: int
    unknown: torch.Tensor | None = None
    start_step: int = 0

    def cost(self, pipeline: Any) -> RunCost:
        """The work of one image on ``pipeline``'s transformer, planned before any decoding.
        Raises ValueError for guidance on a model without a null class."""
        config = pipeline.transformer.config
        self.sampler.check_guidance(config.null_class_id)
        self.sampler.check_start_step(self.start_step)
        latent = config.latent_size
        unknown = torch.ones(latent, latent, dtype=torch.bool) if self.unknown is None else self.unknown
        return RunCost(windows=len(plan_windows(unknown.cpu(), latent)), steps=self.sampler.num_steps - self.start_step,
                       passes=self.sampler.transformer_passes(self.start_step), sequence=1 + latent * latent)

    def generator(self, pipeline: Any) -> Make:
        """How a class-conditional run makes images ``indices``: ``pipeline.generate``."""
        def make(indices: list[int], callback: Callable[[DecodeStep], None] | None) -> torch.Tensor:
            return pipeline.generate([self.plan.label(i) for i in indices], sampler=self.sampler, seed=self.seed,
                                     image_indices=indices, callback=callback)

        return make

    def editor(self, call: Callable[..., torch.Tensor], **options: Any) -> Make:
        """How an editing run makes images ``indices``: ``call`` is ``MaskGIT.edit``, ``inpaint`` or
        ``outpaint`` with its image and region bound; ``options`` go with every call."""
        def make(indices: list[int], callback: Callable[[DecodeStep], None] | None) -> torch.Tensor:
            return call(class_label=self.plan.label(indices[0]), num_samples=len(indices), image_indices=indices,
                        sampler=self.sampler, seed=self.seed, callback=callback, **options)

        return make

    def settings(self, kind: type[S], *, model: str, class_names: Sequence[str], **fields: Any) -> S:
        """What this run records in its manifest: ``kind`` (``GenerateSettings``, ``EditSettings``,
        ...) with the run's seed, sampler and plan, the names of its classes among the model's
        ``class_names``, and ``fields`` (how it runs, the region it edits)."""
        return kind(model=model, seed=self.seed, sampler=self.sampler.to_dict(), classes=self.plan.classes,
                    per_class=self.plan.per_class, class_names=tuple(class_names[c] for c in self.plan.classes),
                    **fields)

    def images(
        self,
        pipeline: Any,
        indices: Sequence[int] | None = None,
        *,
        batch_size: int,
        make: Make | None = None,
        callback: Callable[[DecodeStep], None] | None = None,
    ) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Make the images ``indices`` (default: all), ``batch_size`` at a time: yields each batch's
        indices and its images, float32 (B, 3, H, W) in [0, 1]."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        indices = list(range(len(self.plan))) if indices is None else list(indices)
        make = make or self.generator(pipeline)
        for start in range(0, len(indices), batch_size):
            batch = indices[start : start + batch_size]
            yield batch, make(batch, callback)

    def write(
        self,
        pipeline: Any,
        out: str | os.PathLike[str],
        *,
        batch_size: int,
        resume: bool = True,
        rank: int = 0,
        world_size: int = 1,
        make: Make | None = None,
        progress: str | None = None,
        callback: Callable[[DecodeStep], None] | None = None,
    ) -> list[int]:
        """Make and write this process's images into ``out`` (``plan.path``); returns the indices
        written. ``resume``: keep the images already there (False: make every one). ``progress``
        names a progress bar over the decoding steps of the work left, its total known from the
        start; ``callback`` gets every decoding step.
        """
        out = Path(out)
        mine = self.plan.shard(rank, world_size)
        todo = [mine[i] for i in still_to_make([out / self.plan.path(index) for index in mine], resume=resume)]
        total = self.cost(pipeline).decoding_steps(len(todo), batch_size) if todo else 0
        with tqdm(total=total, unit="step", desc=progress, disable=progress is None, dynamic_ncols=True) as bar:

            def on_step(step: DecodeStep) -> None:
                bar.update(1)
                if callback is not None:
                    callback(step)

            counting = None if bar.disable and callback is None else on_step
            for batch, images in self.images(pipeline, todo, batch_size=batch_size, make=make, callback=counting):
                for index, image in zip(batch, images):
                    save_image(image, out / self.plan.path(index))
        return todo

    def save_grid(self, out: str | os.PathLike[str], destination: str | os.PathLike[str],
                  class_names: Sequence[str] | None = None) -> None:
        """Tile the run's images in ``out`` into one PNG: with ``class_names``, one labelled row per
        class (the first ``GRID_ROWS`` classes, the first ``GRID_COLUMNS`` images of each), else the
        first ``GRID_IMAGES`` images; either way its size stays bounded."""
        out = Path(out)
        if class_names is None:
            tiles = [load_image(out / self.plan.path(i)) for i in range(min(len(self.plan), GRID_IMAGES))]
            save_image(make_grid(torch.stack(tiles)), destination)
            return
        rows = [(class_names[label], torch.stack([load_image(out / self.plan.path(i)) for i in indices[:GRID_COLUMNS]]))
                for label, indices in self.plan.rows()[:GRID_ROWS]]
        save_image(make_class_grid(rows), destination)

