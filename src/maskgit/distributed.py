"""Processes: one alone, or one of N under ``torchrun``; and averaging gradients over them.

Gradients are averaged with one flattened all-reduce after the last micro-step instead of
wrapping models in ``DistributedDataParallel``: the tokenizer's GAN step back-propagates through
a frozen discriminator and takes a double backward for R1, which DDP's reducer does not support,
and one mechanism for both stages keeps them identical. Every rank holds the full model and
optimizer (plain data parallelism).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

# torch.distributed.nn's functions take `group=group.WORLD` as a default, evaluated when the module
# is first imported (torch._dynamo imports it, and the optimizers import torch._dynamo lazily).
# Imported after the group exists, they hold the group for good: destroy_process_group cannot free
# it and its gloo threads live on into interpreter shutdown. One that releases a finished
# collective's tensors there needs the GIL, and a finalizing Python ends such a thread inside C++,
# which aborts the process ("terminate called without an active exception") after a run that had
# finished. Imported here, before any group exists, the defaults are None.
if dist.is_available():
    import torch.distributed.nn  # noqa: F401

from maskgit.devices import resolve_device

__all__ = ["Distributed", "setup_distributed", "all_reduce_gradients"]


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

    def close(self, wait: bool = False) -> None:
        """Leave the process group if this process created it. ``wait``: first wait until every
        rank gets here, so that the ranks leave together, once rank 0 has done what only it does
        (writing, packing, reporting). A run that ends with an error does not wait, since the
        others may never come.
        """
        if self.owns_group and dist.is_initialized():
            if wait:
                dist.barrier()
            dist.destroy_process_group()

    def __enter__(self) -> Distributed:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: Any) -> None:
        """Leave the group, waiting for the other ranks unless an exception is on its way out."""
        self.close(wait=exc_type is None)


def setup_distributed(device: str | torch.device | None = None) -> Distributed:
    """Join the ``torchrun`` job if there is one (``WORLD_SIZE`` > 1), else run alone.

    ``device``: None/"auto" picks ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU.
    The backend is nccl for CUDA and gloo for the CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device)  # ValueError for an unknown or missing device
    if resolved.type == "cuda" and resolved.index is None:
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
