"""evaluation/samples.py: class-balanced sample sets whose images depend on their index only,
resumable, and packed as ADM .npz files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation_helpers import png_contents
from maskgit.evaluation.samples import SamplePlan, pack_npz, write_samples
from maskgit.imageio import load_image, save_image


@pytest.fixture(scope="module")
def sampler():
    from maskgit.sampling import build_sampler

    return build_sampler("confidence", num_steps=2)


def test_plan_order_paths_and_shards():
    plan = SamplePlan((7, 2), 3)
    assert [plan.label(i) for i in range(6)] == [7, 7, 7, 2, 2, 2]
    assert plan.path(Path("o"), 4) == Path("o/0002/0001.png")
    shards = [plan.shard(rank, 4) for rank in range(4)]
    assert sorted(sum(shards, [])) == list(range(6)) and shards[1] == [1, 5]
    with pytest.raises(ValueError, match="images per class must be at least 1"):
        SamplePlan((0,), 0)
    with pytest.raises(ValueError, match=r"class\(es\) 3 listed more than once"):
        SamplePlan((3, 1, 3), 2)


def test_images_depend_on_the_index_only_whatever_the_sharding(tmp_path, shipped_pipeline, sampler):
    plan = SamplePlan((0, 3, 9), 3)
    assert write_samples(shipped_pipeline, plan, tmp_path / "one", sampler=sampler, seed=5, batch_size=4, progress=False) == list(range(9))
    for rank in range(3):  # three "processes", one after another, with another batch size
        write_samples(shipped_pipeline, plan, tmp_path / "three", sampler=sampler, seed=5, batch_size=2, rank=rank, world_size=3,
                      progress=False)
    one = png_contents(tmp_path / "one")
    assert len(one) == 9 and one == png_contents(tmp_path / "three")
    # The images are the ones generate() makes for those indices, and differ from one another.
    expected = shipped_pipeline.generate([9], sampler=sampler, seed=5, image_indices=[7])[0]
    assert torch.allclose(load_image(tmp_path / "one" / "0009" / "0001.png"), expected, atol=0.5 / 255 + 1e-6)
    assert len(set(one.values())) == 9


def test_a_resumed_run_writes_only_what_is_missing(tmp_path, shipped_pipeline, sampler):
    plan = SamplePlan((1, 2), 3)
    write_samples(shipped_pipeline, plan, tmp_path, sampler=sampler, seed=0, progress=False)
    before = png_contents(tmp_path)
    for index in (1, 4):
        plan.path(tmp_path, index).unlink()
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.png")}
    assert write_samples(shipped_pipeline, plan, tmp_path, sampler=sampler, seed=0, progress=False) == [1, 4]
    assert png_contents(tmp_path) == before
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())  # nothing written twice
    assert write_samples(shipped_pipeline, plan, tmp_path, sampler=sampler, seed=0, progress=False) == []


def test_npz_is_the_adm_format(tmp_path, shipped_pipeline, sampler):
    plan = SamplePlan((4, 0), 2)
    write_samples(shipped_pipeline, plan, tmp_path / "set", sampler=sampler, seed=1, progress=False)
    path = pack_npz(plan, tmp_path / "set", tmp_path / "samples.npz")
    with np.load(path) as data:
        images, labels = data["arr_0"], data["arr_1"]
    assert images.dtype == np.uint8 and images.shape == (4, 32, 32, 3)
    assert labels.tolist() == [4, 4, 0, 0]
    for index in range(4):
        png = (load_image(plan.path(tmp_path / "set", index)) * 255).round().byte().permute(1, 2, 0).numpy()
        assert np.array_equal(images[index], png)
    plan.path(tmp_path / "set", 3).unlink()
    with pytest.raises(FileNotFoundError, match="1 image\\(s\\) of the set are missing"):
        pack_npz(plan, tmp_path / "set", tmp_path / "other.npz")
    assert not (tmp_path / "other.npz").exists()


def test_plans_and_shards_refuse_impossible_requests():
    with pytest.raises(ValueError, match="a sample set needs at least one class"):
        SamplePlan((), 2)
    plan = SamplePlan((5,), 2)
    assert len(plan) == 2 and plan.shard(0, 1) == [0, 1] and plan.shard(2, 3) == []
    for rank, world_size in ((3, 3), (-1, 2)):
        with pytest.raises(ValueError, match=rf"rank {rank} is not in \[0, {world_size}\)"):
            plan.shard(rank, world_size)


def test_packing_refuses_images_of_different_sizes(tmp_path):
    plan = SamplePlan((1,), 2)
    save_image(torch.zeros(3, 8, 8), plan.path(tmp_path, 0))
    save_image(torch.zeros(3, 8, 6), plan.path(tmp_path, 1))
    with pytest.raises(ValueError, match=r"0001/0001.png: \(8, 6, 3\) differs from the set's \(8, 8, 3\)"):
        pack_npz(plan, tmp_path, tmp_path / "set.npz")
    assert not (tmp_path / "set.npz").exists()  # atomic: nothing half-written
