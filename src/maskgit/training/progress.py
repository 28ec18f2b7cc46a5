"""What a training run shows while it runs: a JSONL metrics log, optional TensorBoard, and image
grids saved as PNG. Only the main process writes."""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from maskgit.io import atomic_path, atomic_write_text

__all__ = ["MetricsLog", "MetricWindow", "save_image_grid", "RunDisplay"]


class MetricWindow:
    """The metrics of the steps since the last log line: per metric a running sum (a float32
    tensor, on the metric's device) and the number of steps that reported it (the discriminator's
    metrics exist only on some steps), the step count, and the wall time since the window opened."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.steps = 0
        self._start = time.perf_counter()

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        """Add one step's metrics (scalar tensors)."""
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + value.detach().float()
            self.counts[key] = self.counts.get(key, 0) + 1
        self.steps += 1

    def elapsed(self) -> float:
        """Seconds since the window opened (never 0)."""
        return max(time.perf_counter() - self._start, 1e-9)


class MetricsLog:
    """Appends one JSON object per line to ``path`` (``{"step": ..., "epoch": ..., <metrics>}``)
    and mirrors scalars to TensorBoard when asked and installed.

    On resume, ``truncate_after(step)`` rewrites the file (atomically) without the lines of the
    steps after the checkpoint, so a resumed run's log reads like an uninterrupted one.
    """

    def __init__(self, path: str | os.PathLike[str], *, tensorboard_dir: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("tensorboard is not installed; logging to the JSONL file only", stacklevel=2)
            else:
                self._writer = SummaryWriter(str(tensorboard_dir))

    def truncate_after(self, step: int) -> None:
        if not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            if isinstance(record, dict) and record.get("step", 0) <= step:
                kept.append(line)
        atomic_write_text(self.path, "".join(f"{line}\n" for line in kept))

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        record = {"step": step, **{k: _plain(v) for k, v in metrics.items()}}
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
        if self._writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._writer.add_scalar(key, value, step)
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf
    return value


def save_image_grid(images: torch.Tensor, path: str | os.PathLike[str], *, columns: int, padding: int = 2) -> None:
    """Write images (N, 3, H, W) float (clipped to [0, 1]) as one PNG grid, row-major with
    ``columns`` per row and a black ``padding``. Written atomically."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
    count, _, height, width = images.shape
    rows = max(1, math.ceil(count / columns))
    grid = torch.zeros(3, rows * (height + padding) + padding, columns * (width + padding) + padding)
    for i, image in enumerate(images.detach().float().cpu().clamp(0, 1)):
        row, column = divmod(i, columns)
        top, left = padding + row * (height + padding), padding + column * (width + padding)
        grid[:, top : top + height, left : left + width] = image
    array = (grid.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    with atomic_path(path) as temp:
        Image.fromarray(array).save(temp, format="PNG")


class RunDisplay:
    """One progress bar for a run of several stages: the stage, its step, its loss, and the time
    left for the whole run.

    ``estimates`` are the planned seconds of every stage, in order. The bar counts planned seconds
    done: a training step of a stage planned at E seconds for S steps advances it by E / S, and a
    stage without steps advances it by E when it ends. The time left is the planned time still to
    do at the pace measured so far, so it corrects itself on a slower or faster machine. Work done
    before this process started (``stages_done``, and the steps a resumed stage starts from) counts
    as done but not towards that pace, so a resumed run does not promise to end at once. ``done`` is the
    planned seconds done so far, ``description`` the text in front of the bar.
    """

    def __init__(self, estimates: dict[str, float], *, stages_done: tuple[str, ...] = (), enabled: bool = True) -> None:
        from tqdm import tqdm

        self.estimates = dict(estimates)
        self.order = list(estimates)
        self.done = sum(self.estimates[name] for name in stages_done if name in self.estimates)
        self.description = ""
        self._bar = tqdm(
            total=max(sum(self.estimates.values()), 1e-9), initial=self.done, disable=not enabled, dynamic_ncols=True,
            smoothing=0,  # the pace is this process's work over its elapsed time (tqdm leaves ``initial`` out)
            bar_format="{desc} |{bar}| {percentage:3.0f}% [{elapsed} elapsed, {remaining} left]",
        )
        self._stage = ""
        self._unit = 0.0
        self._step = self._total = 0
        self._loss = ""

    def stage_bar(self, stage: str, *, total: int, initial: int = 0) -> RunDisplay:
        """The bar a ``Trainer`` updates for ``stage`` (``Trainer(progress=display.stage_bar)``)."""
        self._stage, self._total, self._step, self._loss = stage, total, initial, ""
        self._unit = self.estimates.get(stage, 0.0) / max(total, 1)
        self._already_done(self._unit * initial)
        self._describe()
        return self

    def begin(self, stage: str) -> None:
        """A stage without steps starts (token extraction, the end of the run)."""
        self._stage, self._total, self._step, self._loss, self._unit = stage, 0, 0, "", 0.0
        self._describe()

    def end(self, stage: str) -> None:
        """A stage without steps ends: its planned time is done."""
        self._advance(self.estimates.get(stage, 0.0))

    # the tqdm interface a Trainer uses
    def update(self, steps: int = 1) -> None:
        self._step += steps
        self._advance(self._unit * steps)
        self._describe()

    def set_postfix(self, **values: Any) -> None:
        if "loss" in values:
            self._loss = f" loss {values['loss']}"
        self._describe()

    def close(self) -> None:
        """End of a stage's steps (the bar itself stays until ``finish``)."""

    def write(self, line: str) -> None:
        """Print a line above the bar."""
        self._bar.write(line)

    def finish(self) -> None:
        self._bar.close()

    def _advance(self, seconds: float) -> None:
        self.done += seconds
        if not self._bar.disable:  # a disabled tqdm keeps no counts
            # A stage's steps add up its planned seconds in float steps, which can overshoot the
            # total by a rounding error; tqdm warns on a bar past 100 %.
            self._bar.update(min(seconds, max(self._bar.total - self._bar.n, 0.0)))

    def _already_done(self, seconds: float) -> None:
        self.done += seconds
        if not self._bar.disable:  # a disabled tqdm keeps no counts
            self._bar.initial += seconds
            self._bar.n += seconds

    def _describe(self) -> None:
        position = f"[{self.order.index(self._stage) + 1}/{len(self.order)}] " if self._stage in self.order else ""
        steps = f" step {self._step}/{self._total}" if self._total else ""
        self.description = f"{position}{self._stage}{steps}{self._loss}"
        self._bar.set_description_str(self.description, refresh=True)
