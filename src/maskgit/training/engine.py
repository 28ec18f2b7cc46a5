"""The training loop both trainers share: seeds, batches, learning-rate schedule, gradient sync,
checkpoints, logging, evaluation and export.

One process on CPU or GPU, or N processes under ``torchrun`` (``maskgit.distributed``); the data order and
all sample randomness depend on the seed only (``data_order.py``), so N processes match one and a
resumed run matches an uninterrupted one (``checkpoint.py``). The only per-rank randomness is inside
the models (dropout): each rank seeds its own stream, and the checkpoint saves each rank's state.
"""

from __future__ import annotations

import abc
import contextlib
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from maskgit.checkpoints.errors import CheckpointError
from maskgit.config_base import ConfigError
from maskgit.devices import warn_if_bf16_is_emulated
from maskgit.distributed import all_reduce_gradients, setup_distributed
from maskgit.io import atomic_torch_save, atomic_write_text, remove_temp_files
from maskgit.training.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_PATTERN,
    CHECKPOINT_VERSION,
    capture_rng_state,
    find_readable_checkpoint,
    restore_rng_state,
    seed_everything,
)
from maskgit.training.config import TrainConfig
from maskgit.training.data_order import RANK_TAG, DataPosition, SeededDataset, StepBatchSampler, mix_seed
from maskgit.training.progress import MetricsLog, MetricWindow

__all__ = ["lr_factor", "set_learning_rate", "Trainer"]


def lr_factor(step: int, *, warmup_steps: int, total_steps: int, decay: str, min_ratio: float) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based): linear warmup
    over ``warmup_steps``, then ``constant``, ``cosine`` or ``linear`` decay to ``min_ratio`` at
    ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if decay == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif decay == "linear":
        shape = 1.0 - progress
    else:
        raise ValueError(f"unknown lr decay {decay!r}")
    return min_ratio + (1.0 - min_ratio) * shape


def set_learning_rate(optimizer: torch.optim.Optimizer, base_lr: float, step: int, config: TrainConfig) -> float:
    """Set every parameter group's learning rate for optimizer step ``step`` and return it. The
    schedule is a pure function of the step, so the step in a checkpoint restores it exactly."""
    lr = base_lr * lr_factor(
        step,
        warmup_steps=config.warmup_steps,
        total_steps=config.steps,
        decay=config.lr_decay,
        min_ratio=config.min_lr_ratio,
    )
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


class Trainer(abc.ABC):
    """The training loop shared by both stages; a subclass supplies the models and one step.

    Subclasses implement ``build()`` (models, optimizers, EMA), ``train_step(micro_batches)``
    (one optimizer step; returns detached scalar tensors to log), ``state_dict()`` /
    ``load_state_dict()`` (everything stage-specific a checkpoint needs), ``write_samples(path)``,
    ``evaluate()`` and ``export()``. Optional: ``fit_config()`` to fit the config to the data
    before ``build``, and ``window_metrics()`` for metrics over a log window.

    Output folder: ``checkpoints/step_XXXXXXXX.pt``, ``metrics.jsonl``, ``samples/*.png``,
    ``config.json`` and, at the end, ``eval.json`` and the exported models.

    ``progress``: True shows a progress bar of the steps, False none; a callable
    ``progress(stage, total=, initial=)`` returns the bar to use instead (an object with tqdm's
    ``update(n)``, ``set_postfix(**values)`` and ``close()``), so a caller can show several runs as one.
    """

    stage: str = ""

    def __init__(
        self,
        config: TrainConfig,
        out_dir: str | os.PathLike[str],
        *,
        dataset: Dataset,
        eval_dataset: Dataset | None = None,
        device: str | torch.device | None = None,
        resume: str | os.PathLike[str] | None = None,
        progress: bool | Callable[..., Any] = True,
    ) -> None:
        if config.stage != self.stage:
            raise ValueError(f"{type(self).__name__} needs a {self.stage} config, got a {config.stage} config")
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.dist = setup_distributed(device)
        self.device = self.dist.device
        self.dataset = dataset
        self.eval_dataset = eval_dataset
        self._check_dataset(config)
        span = self.dist.world_size * config.grad_accum_steps
        if config.batch_size % span:
            raise ValueError(
                f"batch_size {config.batch_size} must be divisible by world_size × grad_accum_steps = {span}"
            )
        self.micro_batch_size = config.batch_size // span
        use_bf16 = config.precision == "bf16" or (config.precision == "auto" and self.device.type == "cuda")
        self.autocast_dtype = torch.bfloat16 if use_bf16 else None
        if use_bf16:
            warn_if_bf16_is_emulated(self.device, "training precision bf16", "--set precision=fp32")
        self.step = 0
        self.position = DataPosition()
        # Same seed on every rank while building, so every rank starts from the same weights.
        seed_everything(config.seed)
        self.config = self.fit_config(config)
        self.build()
        seed_everything(mix_seed(self.config.seed, self.dist.rank, RANK_TAG))
        if self.dist.is_main:  # temporary files of writes cut short by a kill
            remove_temp_files(self.out_dir, recursive=True)
        if resume is not None:
            self.load_checkpoint(resume)
        elif self.checkpoint_dir.is_dir() and any(
            CHECKPOINT_PATTERN.fullmatch(item.name) for item in self.checkpoint_dir.iterdir()
        ):
            raise ValueError(
                f"{self.out_dir} already holds a run with checkpoints; resume it or choose another output folder"
            )
        self.metrics_log: MetricsLog | None = None

    # -- hooks for the stages -------------------------------------------------------------------

    def fit_config(self, config: TrainConfig) -> TrainConfig:
        """The config this run trains with, given the one passed in: a stage may fit its model
        config to the data here. Called once, after seeding and before ``build``; the default keeps
        the config as it is."""
        return config

    @abc.abstractmethod
    def build(self) -> None:
        """Create the models, EMA and optimizers (seeded identically on every rank)."""

    @abc.abstractmethod
    def train_step(self, micro_batches: Sequence[tuple[Any, torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """One optimizer step over ``grad_accum_steps`` micro-batches of ``(inputs, labels, sample_seeds)``; returns detached scalars to log."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything stage-specific that a checkpoint must hold to continue exactly."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    @abc.abstractmethod
    def write_samples(self, path: Path) -> None:
        """Write a PNG grid of samples or reconstructions to ``path``."""

    @abc.abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Metrics of the EMA model on ``eval_dataset``."""

    @abc.abstractmethod
    def export(self) -> None:
        """Save the final (EMA) models under ``out_dir``."""

    def window_metrics(self) -> dict[str, float]:
        return {}

    # -- shared helpers -------------------------------------------------------------------------

    def _check_dataset(self, config: TrainConfig) -> None:
        try:
            size = len(self.dataset)  # type: ignore[arg-type]
        except TypeError:
            raise ValueError("the training dataset must have a length (a map-style Dataset)") from None
        if size == 0:
            raise ValueError("the training dataset is empty")
        if size < config.batch_size:
            raise ValueError(
                f"the training dataset has {size} samples, fewer than one global batch ({config.batch_size})"
            )

    def load_initial_weights(self, model: nn.Module) -> None:
        """Copy the weights of the model saved in ``config.init_from`` into ``model`` (a freshly
        built ``VQGAN`` or ``MaskGITTransformer``); the saved config must equal ``config.model``."""
        folder = self.config.init_from
        initial = type(model).from_pretrained(folder)
        if initial.config != self.config.model:
            raise ConfigError(
                f"init_from {folder}: its {self.stage} config {initial.config.to_dict()} differs from the run's "
                f"model config {self.config.model.to_dict()}"
            )
        model.load_state_dict(initial.state_dict())

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def maybe_compile(self, module: nn.Module) -> nn.Module:
        return torch.compile(module) if self.config.compile else module  # type: ignore[return-value]

    def optimizer_step(
        self,
        parameters: Sequence[nn.Parameter],
        optimizer: torch.optim.Optimizer,
        base_lr: float,
        clip: float | None,
    ) -> torch.Tensor:
        """Average gradients over ranks, clip, set this step's learning rate and step the
        optimizer. Returns the gradient norm before clipping (a 0-dim tensor)."""
        all_reduce_gradients(parameters, self.dist)
        grads = [p.grad for p in parameters if p.grad is not None]
        if clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(parameters, clip)
        else:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
        set_learning_rate(optimizer, base_lr, self.step, self.config)
        optimizer.step()
        return norm.detach()

    def _loader(self) -> Iterator[tuple[Any, torch.Tensor, torch.Tensor]]:
        sampler = StepBatchSampler(
            len(self.dataset),  # type: ignore[arg-type]
            self.config.batch_size,
            world_size=self.dist.world_size,
            rank=self.dist.rank,
            grad_accum_steps=self.config.grad_accum_steps,
            seed=self.config.seed,
            start=self.position,
        )
        loader = DataLoader(
            SeededDataset(self.dataset, self.config.seed),
            batch_sampler=sampler,  # type: ignore[arg-type]
            num_workers=self.config.num_workers,
            pin_memory=self.device.type == "cuda",
            # Its own generator: creating the iterator must not draw from the global RNG, whose
            # stream (dropout) has to continue exactly across a resume.
            generator=torch.Generator().manual_seed(self.config.seed),
        )
        return iter(loader)

    # -- checkpoints ----------------------------------------------------------------------------

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoints/step_XXXXXXXX.pt`` atomically (main process) and keep the newest
        ``keep_checkpoints``. Every rank must call it (RNG states are gathered)."""
        rng_states = self.dist.gather_objects(capture_rng_state())
        path = self.checkpoint_dir / f"step_{self.step:08d}.pt"
        if self.dist.is_main:
            state = {
                "format": CHECKPOINT_FORMAT,
                "version": CHECKPOINT_VERSION,
                "stage": self.stage,
                "config": self.config.to_json(),
                "step": self.step,
                "position": {"epoch": self.position.epoch, "index": self.position.index},
                "world_size": self.dist.world_size,
                "rng": rng_states,
                "trainer": self.state_dict(),
            }
            atomic_torch_save(path, state)  # a full disk is an OSError naming the file
            old = sorted(
                item for item in self.checkpoint_dir.iterdir() if CHECKPOINT_PATTERN.fullmatch(item.name)
            )
            for item in old[: -self.config.keep_checkpoints]:
                item.unlink(missing_ok=True)
        self.dist.barrier()
        return path if self.dist.is_main else None

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        file, state, skipped = find_readable_checkpoint(path)
        if skipped and self.dist.is_main:
            warnings.warn(f"resuming from {file}; skipped unreadable checkpoint(s): {'; '.join(skipped)}", stacklevel=2)
        if state["stage"] != self.stage:
            raise CheckpointError(f"{file}: is a {state['stage']} checkpoint, this is a {self.stage} trainer")
        saved = json.loads(state["config"])
        changed = sorted(k for k, v in self.config.to_dict().items() if saved.get(k) != v)
        if changed and self.dist.is_main:
            warnings.warn(f"resuming {file} with changed config keys {changed}", stacklevel=2)
        self.load_state_dict(state["trainer"])
        self.step = int(state["step"])
        self.position = DataPosition(int(state["position"]["epoch"]), int(state["position"]["index"]))
        if int(state["world_size"]) == self.dist.world_size:
            restore_rng_state(state["rng"][self.dist.rank])
        else:
            # Sample randomness does not depend on the world size; only dropout streams do.
            seed_everything(mix_seed(self.config.seed, self.dist.rank, self.step, RANK_TAG))
            if self.dist.is_main:
                warnings.warn(
                    f"{file} was written by {state['world_size']} process(es), resuming with "
                    f"{self.dist.world_size}: dropout randomness is reseeded, the rest continues exactly",
                    stacklevel=2,
                )

    # -- the loop -------------------------------------------------------------------------------

    def train(self, *, stop_at: int | None = None) -> dict[str, float]:
        """Train until ``config.steps`` (or stop early, without exporting, at ``stop_at``).

        Saves checkpoints every ``checkpoint_every`` steps and at the end, logs every
        ``log_every`` steps, writes sample grids every ``sample_every`` steps, evaluates every
        ``eval_every`` steps; at the end evaluates (``eval.json``) and exports. Returns the last
        evaluation metrics (empty without an evaluation dataset).
        """
        config = self.config
        self._open_outputs()
        batches = self._loader()
        bar = self._progress_bar()
        window = MetricWindow()
        last_eval: dict[str, float] = {}
        try:
            while self.step < config.steps:
                if stop_at is not None and self.step >= stop_at:
                    return last_eval
                window.add(self._advance(batches))
                if bar is not None:
                    bar.update(1)
                last = self.step == config.steps
                if self._due(config.log_every) or last:
                    self._log(window, bar)
                    window = MetricWindow()
                if self._due(config.sample_every) and self.dist.is_main:
                    self.write_samples(self.out_dir / "samples" / f"step_{self.step:08d}.png")
                if self._due(config.eval_every) and not last:
                    last_eval = self._evaluate_and_log()
                if self._due(config.checkpoint_every) or last:
                    self.save_checkpoint()
            return self._finish()
        finally:
            if bar is not None:
                bar.close()
            if self.metrics_log is not None:
                self.metrics_log.close()
            del batches

    # -- the loop's steps -------------------------------------------------------------------------

    def _open_outputs(self) -> None:
        """Main process: the output folder, ``config.json`` and the metrics log, cut back to the
        current step when resuming."""
        if not self.dist.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out_dir / "config.json", self.config.to_json() + "\n")
        self.metrics_log = MetricsLog(
            self.out_dir / "metrics.jsonl",
            tensorboard_dir=self.out_dir / "tensorboard" if self.config.tensorboard else None,
        )
        self.metrics_log.truncate_after(self.step)

    def _progress_bar(self) -> Any:
        if not (self.dist.is_main and self.progress):
            return None
        if callable(self.progress):
            return self.progress(self.stage, total=self.config.steps, initial=self.step)
        from tqdm import tqdm

        return tqdm(total=self.config.steps, initial=self.step, desc=f"train {self.stage}", unit="step", dynamic_ncols=True)

    def _advance(self, batches: Iterator[tuple[Any, torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """One optimizer step over the next ``grad_accum_steps`` micro-batches; advances the step
        and the data position, and returns the step's metrics."""
        micro_batches = [next(batches) for _ in range(self.config.grad_accum_steps)]
        metrics = self.train_step(micro_batches)
        self.step += 1
        self.position = self.position.advanced(self.config.batch_size, len(self.dataset))  # type: ignore[arg-type]
        return metrics

    def _due(self, every: int) -> bool:
        """Whether a periodic action (every ``every`` steps; 0 = never) falls on this step."""
        return every > 0 and self.step % every == 0

    def _log(self, window: MetricWindow, bar: Any) -> None:
        """Write the window's metrics (averaged over ranks), the learning rate, the epoch and the
        throughput to the log, and show the loss on the progress bar."""
        logged = self._reduce_window(window)
        logged.update(self.window_metrics())
        logged["lr"] = self.current_lr()
        logged["epoch"] = self.position.epoch
        logged["images_per_second"] = window.steps * self.config.batch_size / window.elapsed()
        if self.dist.is_main and self.metrics_log is not None:
            self.metrics_log.write(self.step, logged)
        if bar is not None:
            bar.set_postfix(loss=f"{logged.get('loss', float('nan')):.4f}", img_s=f"{logged['images_per_second']:.0f}")

    def _finish(self) -> dict[str, float]:
        """The final evaluation (``eval.json``) and the export; returns the evaluation metrics."""
        results = self._evaluate_and_log(final=True)
        if self.dist.is_main:
            self.export()
        self.dist.barrier()
        return results

    def _reduce_window(self, window: MetricWindow) -> dict[str, float]:
        """Mean of each metric over the steps that reported it, averaged over ranks."""
        if not window.sums:
            return {}
        keys = sorted(window.sums)
        values = torch.stack([window.sums[k].to(self.device) / window.counts[k] for k in keys])
        values = self.dist.all_reduce_sum(values) / self.dist.world_size
        return dict(zip(keys, values.tolist()))

    def _evaluate_and_log(self, final: bool = False) -> dict[str, float]:
        results: dict[str, float] = {}
        if self.eval_dataset is not None and self.dist.is_main:
            results = self.evaluate()
            if self.metrics_log is not None:
                self.metrics_log.write(self.step, {f"eval/{k}": v for k, v in results.items()})
            if final:
                atomic_write_text(self.out_dir / "eval.json", json.dumps({"step": self.step, **results}, indent=2) + "\n")
            if self.progress:
                summary = ", ".join(f"{k} {v:.4g}" for k, v in results.items())
                print(f"step {self.step}: eval {summary}", file=sys.stderr)
        self.dist.barrier()
        return results

    @abc.abstractmethod
    def current_lr(self) -> float:
        """The learning rate of the last step, for the log."""

    def close(self, wait: bool = False) -> None:
        """Leave the process group if this trainer created it (``Distributed.close``)."""
        self.dist.close(wait)

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Leave the group as ``Distributed`` does on exit."""
        self.dist.__exit__(*exc_info)
