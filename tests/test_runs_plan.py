"""runs/plan.py: which image goes where, the shards, and the cost of one image known before any
decoding (windows, steps, guided passes) with its limit."""

from __future__ import annotations

import pytest
import torch

from maskgit.runs import Run, RunCost, RunPlan
from maskgit.sampling import ConfidenceSampler, HaltonSampler
from maskgit.validation import MAX_TOKEN_PASSES


def test_plan_order_paths_and_shards():
    plan = RunPlan((7, 2), 3)
    assert len(plan) == 6 and plan.labels == [7, 7, 7, 2, 2, 2]
    assert plan.path(4) == "0002/0001.png"
    shards = [plan.shard(rank, 4) for rank in range(4)]
    assert sorted(sum(shards, [])) == list(range(6)) and shards[1] == [1, 5]
    assert RunPlan((5,), 2, prefix="edit").paths == ["edit_0000.png", "edit_0001.png"]


def test_a_class_given_twice_gets_distinct_files_and_one_grid_row():
    plan = RunPlan((8, 3, 8), 2)  # --class 8 --class 3 --class bag
    assert plan.paths == ["0008/0000.png", "0008/0001.png", "0003/0000.png", "0003/0001.png", "0008/0002.png",
                          "0008/0003.png"]
    assert plan.rows() == [(8, [0, 1, 4, 5]), (3, [2, 3])]


def test_plans_and_shards_refuse_impossible_requests():
    with pytest.raises(ValueError, match="a run needs at least one class"):
        RunPlan((), 2)
    with pytest.raises(ValueError, match="images per class must be at least 1"):
        RunPlan((0,), 0)
    plan = RunPlan((5,), 2)
    assert plan.shard(0, 1) == [0, 1] and plan.shard(2, 3) == []
    for rank, world_size in ((3, 3), (-1, 2)):
        with pytest.raises(ValueError, match=rf"rank {rank} is not in \[0, {world_size}\)"):
            plan.shard(rank, world_size)


def test_a_generation_run_costs_one_window_of_its_steps(shipped_pipeline):
    # The shipped model: an 8x8-token window, so 65 tokens a pass; linear guidance from 0 to 2.
    sampler = ConfidenceSampler(num_steps=16, guidance=2.0, guidance_schedule="linear")
    cost = Run(RunPlan((0,), 4), sampler, seed=0).cost(shipped_pipeline)
    assert cost == RunCost(windows=1, steps=16, passes=31, sequence=65)  # step 0 is unguided: 1 + 15 x 2
    assert cost.token_passes == 31 * 65
    assert cost.decoding_steps(images=10, batch_size=4) == 3 * 16
    cost.check()


def test_an_outpainting_run_counts_its_windows_up_front(shipped_pipeline):
    # A 32x32 image (8x8 tokens) extended by 4 tokens on the left and right: 8x16 tokens, three
    # half-overlapping windows, the middle one already known.
    unknown = torch.ones(8, 16, dtype=torch.bool)
    unknown[:, 4:12] = False
    run = Run(RunPlan((3,), 2, prefix="outpaint"), HaltonSampler(num_steps=12), 0, unknown, start_step=2)
    cost = run.cost(shipped_pipeline)
    assert cost == RunCost(windows=2, steps=10, passes=10, sequence=65)
    assert cost.decoding_steps(images=2, batch_size=1) == 2 * 2 * 10
    with pytest.raises(ValueError, match=r"start_step must be in \[0, num_steps=12\), got 12"):
        Run(run.plan, run.sampler, 0, unknown, start_step=12).cost(shipped_pipeline)


def test_the_work_of_one_image_is_bounded_with_the_flag_that_raises_it():
    # An 8-token image extended by 25,000 tokens: 6,250 windows of 23 passes (12 guided steps).
    cost = RunCost(windows=6250, steps=12, passes=23, sequence=65)
    with pytest.raises(ValueError) as error:
        cost.check()
    assert str(error.value) == (
        f"one image takes 6,250 window(s) x 23 transformer passes x 65 tokens = 9,343,750 token passes, over the "
        f"limit of {MAX_TOKEN_PASSES:,}; raise it with --max-token-passes if you have the time")
    cost.check(10_000_000)
    # The largest canvas the pixel limit allows on ImageNet 256 (225 windows of 257 tokens), guided: within it.
    RunCost(windows=225, steps=12, passes=24, sequence=257).check()
