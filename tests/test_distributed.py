"""distributed.py: one process alone, and the collectives of two processes under gloo."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch

from maskgit.distributed import Distributed, all_reduce_gradients, setup_distributed


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_process_without_torchrun_runs_alone(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    alone = setup_distributed("cpu")
    assert alone == Distributed(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert alone.is_main and not alone.owns_group
    tensor = torch.arange(3.0)
    assert alone.all_reduce_sum(tensor) is tensor and tensor.tolist() == [0.0, 1.0, 2.0]
    assert alone.all_gather(tensor) is tensor
    assert alone.gather_objects({"a": 1}) == [{"a": 1}]
    parameter = torch.nn.Parameter(torch.ones(2))
    parameter.grad = torch.full((2,), 3.0)
    all_reduce_gradients([parameter], alone)  # one process: untouched
    assert parameter.grad.tolist() == [3.0, 3.0]
    alone.barrier()
    alone.close()
    with pytest.raises(ValueError, match="potato"):
        setup_distributed("potato")


def _join(rank: int, port: int) -> Distributed:
    """Join a group of two gloo processes on the loopback interface as ``rank``, with one thread."""
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    return setup_distributed("cpu")


def _two_rank_worker(rank: int, port: int, out: str) -> None:
    """One of two gloo processes: exercise every collective and save what this rank saw."""
    distributed = _join(rank, port)
    try:
        model = torch.nn.Linear(2, 1)
        frozen = torch.nn.Parameter(torch.zeros(1), requires_grad=False)
        model.weight.grad = torch.full_like(model.weight, float(rank + 1))
        model.bias.grad = None if rank == 0 else torch.tensor([4.0])  # no gradient on rank 0: zeros
        all_reduce_gradients([model.weight, frozen, model.bias], distributed)
        result = {
            "place": [distributed.rank, distributed.world_size, int(distributed.is_main), int(distributed.owns_group)],
            "weight_grad": model.weight.grad,
            "bias_grad": model.bias.grad,
            "frozen_grad": frozen.grad is None,
            "gathered": distributed.all_gather(torch.tensor([10 * rank, 10 * rank + 1])),
            "objects": distributed.gather_objects({"rank": rank}),
            "sum": distributed.all_reduce_sum(torch.tensor([rank + 1.0])),
        }
        distributed.barrier()
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        distributed.close()


@pytest.mark.slow
def test_collectives_average_gather_and_sum_over_two_processes(tmp_path):
    torch.multiprocessing.spawn(_two_rank_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        seen = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert seen["place"] == [rank, 2, int(rank == 0), 1]
        assert seen["weight_grad"].tolist() == [[1.5, 1.5]]  # the mean of 1 and 2, not the sum
        assert seen["bias_grad"].tolist() == [2.0]  # (0 + 4) / 2: the missing gradient counted as zeros
        assert seen["frozen_grad"]  # parameters that need no gradient are left alone
        assert seen["gathered"].tolist() == [0, 1, 10, 11]  # rank order
        assert seen["objects"] == [{"rank": 0}, {"rank": 1}]
        assert seen["sum"].tolist() == [3.0]


def _gloo_threads() -> list[str]:
    """Names of this process's threads that belong to gloo (Linux names them in /proc)."""
    tasks = Path("/proc/self/task")
    return [name for task in tasks.iterdir() if "gloo" in (name := (task / "comm").read_text().strip())]


def _leave_worker(rank: int, port: int, out: str) -> None:
    """One of two gloo processes: join, build an optimizer (which imports torch._dynamo and with
    it torch.distributed.nn), leave, and record the gloo threads alive before and after."""
    distributed = _join(rank, port)
    torch.optim.Adam(torch.nn.Linear(2, 1).parameters())
    distributed.all_reduce_sum(torch.ones(1))
    joined = _gloo_threads()
    distributed.close(wait=True)
    (Path(out) / f"rank{rank}.json").write_text(json.dumps({"joined": joined, "left": _gloo_threads()}))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc to list threads")
def test_leaving_the_group_stops_its_threads(tmp_path):
    # Why a gloo thread could outlive the group, and abort the process at exit: the comment at the
    # top of distributed.py. Without that import, both ranks kept all three of gloo's threads.
    torch.multiprocessing.spawn(_leave_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        seen = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert seen["joined"]  # the group's threads were there, and the names still say gloo
        assert seen["left"] == []


@pytest.mark.parametrize("failing", [False, True])
def test_leaving_the_group_waits_for_the_others_unless_an_error_is_on_its_way(tmp_path, monkeypatch, failing):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    waits = []
    real_barrier = dist.barrier
    monkeypatch.setattr(dist, "barrier", lambda *a, **k: waits.append(1) or real_barrier(*a, **k))
    process = Distributed(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), owns_group=True)
    try:
        with process:
            if failing:
                raise RuntimeError("this rank failed")
    except RuntimeError:
        assert failing
    # A normal end waits (the others may still be using the group); a failing one must not hang.
    assert waits == ([] if failing else [1])
    assert not dist.is_initialized()
