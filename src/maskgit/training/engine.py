"""The machinery both trainers share: processes, seeds, data order, schedules, gradient sync,
checkpoints and the training loop.

Processes. One process on CPU or GPU, or N processes under ``torchrun`` (``WORLD_SIZE`` > 1): the
process group uses nccl on CUDA and gloo on CPU. Gradients are averaged with one flattened
all-reduce after the last micro-step instead of wrapping models in ``DistributedDataParallel``:
the tokenizer's GAN step back-propagates through a frozen discriminator and takes a double
backward for R1, which DDP's reducer does not support, and one mechanism for both stages keeps
them identical. Every rank holds the full model and optimizer (data parallelism).

Determinism. Everything random about a *sample* (its augmentation, its mask, its class dropout)
is drawn from a generator seeded by ``(seed, epoch, index)``, never from a stream that depends on
the rank, the worker or the batch split. So N processes see the same global batch, with the same
randomness, as one process — the results agree within float tolerance — and a resumed run sees the
same data as an uninterrupted one. The data order is a seeded permutation per epoch; the position
in it (epoch, index) is saved in each checkpoint. The only per-rank randomness is inside the model
(dropout), seeded per rank; its RNG states are saved per rank.

Batches. ``batch_size`` is the global batch of one optimizer step: ``world_size ×
grad_accum_steps`` micro-batches of ``batch_size / (world_size · grad_accum_steps)`` samples. The
last incomplete batch of an epoch is dropped.
"""

from __future__ import annotations

import abc
import contextlib
import json
import math
import os
import random
import re
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from maskgit.checkpoints.errors import CheckpointError
from maskgit.io import atomic_path, atomic_write_text
from maskgit.training.config import TrainConfig, config_from_dict
from maskgit.training.progress import MetricsLog

__all__ = [
    "Distributed",
    "setup_distributed",
    "mix_seed",
    "DataPosition",
    "SeededDataset",
    "StepBatchSampler",
    "lr_factor",
    "set_learning_rate",
    "all_reduce_gradients",
    "capture_rng_state",
    "restore_rng_state",
    "find_latest_checkpoint",
    "read_checkpoint_config",
    "Trainer",
    "CHECKPOINT_FORMAT",
]

CHECKPOINT_FORMAT = "maskgit-training-checkpoint"
_CHECKPOINT_VERSION = 1
_CHECKPOINT_PATTERN = re.compile(r"step_(\d+)\.pt")


# -- processes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job. ``world_size == 1`` means no process group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks in place (a no-op in one process); returns the tensor."""
        if self.world_size > 1:
            dist.all_reduce(tensor)
        return tensor

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate equally shaped tensors of all ranks along dim 0, in rank order."""
        if self.world_size == 1:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    def gather_objects(self, obj: Any) -> list[Any]:
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def setup_distributed(device: str | torch.device | None = None) -> Distributed:
    """Join the ``torchrun`` job if there is one (``WORLD_SIZE`` > 1), else run alone.

    ``device``: None/"auto" picks ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU.
    The backend is nccl for CUDA and gloo for the CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None or str(device) == "auto":
        resolved = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    else:
        resolved = torch.device(device)
        if resolved.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(f"device {device!r} requested but CUDA is not available")
            if resolved.index is None:
                resolved = torch.device("cuda", local_rank)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    owns_group = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
        owns_group = True
    if world_size > 1:
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return Distributed(rank, world_size, local_rank, resolved, owns_group)


# -- seeds and data order -------------------------------------------------------------------------

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
_RANK_TAG = 0x5EED_0002


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

    The item is produced with torch's global RNG seeded by ``sample_seed = mix_seed(seed, epoch,
    index)`` (inside ``fork_rng``, so the caller's RNG is untouched): random augmentations drawn from
    torch's RNG become a function of the sample and the epoch only. The trainer draws the
    sample's other randomness (mask, class dropout) from ``sample_seed`` too.
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
            torch.manual_seed(sample_seed)
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


# -- optimisation ---------------------------------------------------------------------------------


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


def all_reduce_gradients(parameters: Iterable[nn.Parameter], distributed: Distributed) -> None:
    """Average the gradients of ``parameters`` over all ranks with one flattened all-reduce.

    A parameter without a gradient gets zeros, so every rank sends the same layout.
    """
    if distributed.world_size == 1:
        return
    params = [p for p in parameters if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    flat = torch._utils._flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= distributed.world_size
    for grad, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
        grad.copy_(synced)


# -- RNG state ------------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU and CUDA RNG states, in types ``torch.load(weights_only=True)`` reads."""
    numpy_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["key"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- checkpoints ----------------------------------------------------------------------------------


def find_latest_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file itself, or the highest ``step_*.pt`` in a run folder (or its
    ``checkpoints/`` folder). Raises FileNotFoundError naming the folder if there is none."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint file or run folder")
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    found = sorted(
        (int(match.group(1)), item)
        for item in folder.iterdir()
        if (match := _CHECKPOINT_PATTERN.fullmatch(item.name))
    )
    if not found:
        raise FileNotFoundError(f"{folder}: no checkpoint (step_*.pt) to resume from")
    return found[-1][1]


def load_checkpoint_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a training checkpoint safely (``weights_only=True``: no code is unpickled)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: checkpoint not found") from None
    except Exception as error:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"{path}: not a readable training checkpoint ({error})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a maskgit training checkpoint (format is not {CHECKPOINT_FORMAT!r})")
    if state.get("version") != _CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')!r}, expected {_CHECKPOINT_VERSION}")
    return state


def read_checkpoint_config(path: str | os.PathLike[str]) -> Any:
    """The training config stored in a checkpoint (file or run folder → its latest checkpoint)."""
    file = find_latest_checkpoint(path)
    state = load_checkpoint_file(file)
    return config_from_dict(state["stage"], json.loads(state["config"]), source=str(file))


# -- the loop -------------------------------------------------------------------------------------


class Trainer(abc.ABC):
    """The training loop shared by both stages; a subclass supplies the models and one step.

    Subclasses implement ``build()`` (models, optimizers, EMA), ``train_step(micro_batches)``
    (one optimizer step; returns detached scalar tensors to log), ``state_dict()`` /
    ``load_state_dict()`` (everything stage-specific a checkpoint needs), ``write_samples(path)``,
    ``evaluate()`` and ``export()``. Optional: ``window_metrics()`` for metrics over a log window.

    Output folder: ``checkpoints/step_XXXXXXXX.pt``, ``metrics.jsonl``, ``samples/*.png``,
    ``config.json`` and, at the end, ``eval.json`` and the exported models.
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
        progress: bool = True,
    ) -> None:
        if config.stage != self.stage:
            raise ValueError(f"{type(self).__name__} needs a {self.stage} config, got a {config.stage} config")
        self.config = config
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.dist = setup_distributed(device)
        self.device = self.dist.device
        self.dataset = dataset
        self.eval_dataset = eval_dataset
        self._check_dataset()
        span = self.dist.world_size * config.grad_accum_steps
        if config.batch_size % span:
            raise ValueError(
                f"batch_size {config.batch_size} must be divisible by world_size × grad_accum_steps = {span}"
            )
        self.micro_batch_size = config.batch_size // span
        use_bf16 = config.precision == "bf16" or (config.precision == "auto" and self.device.type == "cuda")
        self.autocast_dtype = torch.bfloat16 if use_bf16 else None
        self.step = 0
        self.position = DataPosition()
        # Same seed on every rank while building, so every rank starts from the same weights.
        seed_everything(config.seed)
        self.build()
        seed_everything(mix_seed(config.seed, self.dist.rank, _RANK_TAG))
        if resume is not None:
            self.load_checkpoint(resume)
        self.metrics_log: MetricsLog | None = None

    # -- hooks for the stages -------------------------------------------------------------------

    @abc.abstractmethod
    def build(self) -> None:
        ...

    @abc.abstractmethod
    def train_step(self, micro_batches: Sequence[tuple[Any, torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        ...

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        ...

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        ...

    @abc.abstractmethod
    def write_samples(self, path: Path) -> None:
        ...

    @abc.abstractmethod
    def evaluate(self) -> dict[str, float]:
        ...

    @abc.abstractmethod
    def export(self) -> None:
        ...

    def window_metrics(self) -> dict[str, float]:
        return {}

    # -- shared helpers -------------------------------------------------------------------------

    def _check_dataset(self) -> None:
        try:
            size = len(self.dataset)  # type: ignore[arg-type]
        except TypeError:
            raise ValueError("the training dataset must have a length (a map-style Dataset)") from None
        if size == 0:
            raise ValueError("the training dataset is empty")
        if size < self.config.batch_size:
            raise ValueError(
                f"the training dataset has {size} samples, fewer than one global batch ({self.config.batch_size})"
            )

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
                "version": _CHECKPOINT_VERSION,
                "stage": self.stage,
                "config": self.config.to_json(),
                "step": self.step,
                "position": {"epoch": self.position.epoch, "index": self.position.index},
                "world_size": self.dist.world_size,
                "rng": rng_states,
                "trainer": self.state_dict(),
            }
            with atomic_path(path) as temp:
                torch.save(state, temp)
            old = sorted(
                item for item in self.checkpoint_dir.iterdir() if _CHECKPOINT_PATTERN.fullmatch(item.name)
            )
            for item in old[: -self.config.keep_checkpoints]:
                item.unlink(missing_ok=True)
        self.dist.barrier()
        return path if self.dist.is_main else None

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        file = find_latest_checkpoint(path)
        state = load_checkpoint_file(file)
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
            seed_everything(mix_seed(self.config.seed, self.dist.rank, self.step, _RANK_TAG))
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
        main = self.dist.is_main
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out_dir / "config.json", config.to_json() + "\n")
            self.metrics_log = MetricsLog(
                self.out_dir / "metrics.jsonl",
                tensorboard_dir=self.out_dir / "tensorboard" if config.tensorboard else None,
            )
            self.metrics_log.truncate_after(self.step)
        batches = self._loader()
        bar = None
        if main and self.progress:
            from tqdm import tqdm

            bar = tqdm(total=config.steps, initial=self.step, desc=f"train {self.stage}", unit="step", dynamic_ncols=True)
        window: dict[str, torch.Tensor] = {}
        window_steps, window_start = 0, time.perf_counter()
        last_eval: dict[str, float] = {}
        dataset_size = len(self.dataset)  # type: ignore[arg-type]
        try:
            while self.step < config.steps:
                if stop_at is not None and self.step >= stop_at:
                    return last_eval
                micro_batches = [next(batches) for _ in range(config.grad_accum_steps)]
                metrics = self.train_step(micro_batches)
                self.step += 1
                self.position = self.position.advanced(config.batch_size, dataset_size)
                for key, value in metrics.items():
                    window[key] = window.get(key, 0.0) + value.detach().float()
                window_steps += 1
                if bar is not None:
                    bar.update(1)
                last = self.step == config.steps
                if self.step % config.log_every == 0 or last:
                    elapsed = max(time.perf_counter() - window_start, 1e-9)
                    logged = self._reduce_window(window, window_steps)
                    logged.update(self.window_metrics())
                    logged["lr"] = self.current_lr()
                    logged["epoch"] = self.position.epoch
                    logged["images_per_second"] = window_steps * config.batch_size / elapsed
                    if main and self.metrics_log is not None:
                        self.metrics_log.write(self.step, logged)
                    if bar is not None:
                        bar.set_postfix(loss=f"{logged.get('loss', float('nan')):.4f}", img_s=f"{logged['images_per_second']:.0f}")
                    window, window_steps, window_start = {}, 0, time.perf_counter()
                if config.sample_every and self.step % config.sample_every == 0 and main:
                    self.write_samples(self.out_dir / "samples" / f"step_{self.step:08d}.png")
                if config.eval_every and self.step % config.eval_every == 0 and not last:
                    last_eval = self._evaluate_and_log()
                if (config.checkpoint_every and self.step % config.checkpoint_every == 0) or last:
                    self.save_checkpoint()
            last_eval = self._evaluate_and_log(final=True)
            if main:
                self.export()
            self.dist.barrier()
            return last_eval
        finally:
            if bar is not None:
                bar.close()
            if self.metrics_log is not None:
                self.metrics_log.close()
            del batches

    def _reduce_window(self, window: dict[str, torch.Tensor], steps: int) -> dict[str, float]:
        if not window:
            return {}
        keys = sorted(window)
        values = torch.stack([window[k].to(self.device) for k in keys]) / max(steps, 1)
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
        ...

    def close(self) -> None:
        """Leave the process group if this trainer created it."""
        self.dist.close()
