"""``maskgit sample``: per-index determinism whatever the sharding, torchrun on CPU, resume, ADM .npz."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from maskgit.cli import main
from maskgit.evaluation.samples import SamplePlan, pack_npz, write_samples
from maskgit.imageio import load_image

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--model", "fashion-mnist", "--steps", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def pipeline():
    from maskgit.pipeline import MaskGIT

    return MaskGIT.from_pretrained("fashion-mnist", device="cpu")


@pytest.fixture(scope="module")
def sampler():
    from maskgit.sampling import build_sampler

    return build_sampler("confidence", num_steps=2)


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


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


def test_images_depend_on_the_index_only_whatever_the_sharding(tmp_path, pipeline, sampler):
    plan = SamplePlan((0, 3, 9), 3)
    assert write_samples(pipeline, plan, tmp_path / "one", sampler=sampler, seed=5, batch_size=4, progress=False) == list(range(9))
    for rank in range(3):  # three "processes", one after another, with another batch size
        write_samples(pipeline, plan, tmp_path / "three", sampler=sampler, seed=5, batch_size=2, rank=rank, world_size=3,
                      progress=False)
    one = _contents(tmp_path / "one")
    assert len(one) == 9 and one == _contents(tmp_path / "three")
    # The images are the ones generate() makes for those indices, and differ from one another.
    expected = pipeline.generate([9], sampler=sampler, seed=5, image_indices=[7])[0]
    assert torch.allclose(load_image(tmp_path / "one" / "0009" / "0001.png"), expected, atol=0.5 / 255 + 1e-6)
    assert len(set(one.values())) == 9


def test_a_resumed_run_writes_only_what_is_missing(tmp_path, pipeline, sampler):
    plan = SamplePlan((1, 2), 3)
    write_samples(pipeline, plan, tmp_path, sampler=sampler, seed=0, progress=False)
    before = _contents(tmp_path)
    for index in (1, 4):
        plan.path(tmp_path, index).unlink()
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.png")}
    assert write_samples(pipeline, plan, tmp_path, sampler=sampler, seed=0, progress=False) == [1, 4]
    assert _contents(tmp_path) == before
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())  # nothing written twice
    assert write_samples(pipeline, plan, tmp_path, sampler=sampler, seed=0, progress=False) == []


def test_npz_is_the_adm_format(tmp_path, pipeline, sampler):
    plan = SamplePlan((4, 0), 2)
    write_samples(pipeline, plan, tmp_path / "set", sampler=sampler, seed=1, progress=False)
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


def test_sample_command_records_the_sampler_and_refuses_to_mix_runs(tmp_path, capsys):
    out = tmp_path / "set"
    argv = ["sample", *FAST, "--class", "0,5", "--num-per-class", "2", "--seed", "3", "--out", str(out), "--npz",
            str(tmp_path / "set.npz"), "--guidance-schedule", "linear"]
    assert main(argv) == 0
    assert "wrote 4 image(s) (0 kept)" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["sampler"]["sampler"] == "confidence"
    assert manifest["settings"]["sampler"]["num_steps"] == 2 and manifest["complete"] is True
    assert manifest["outputs"] == ["0000/0000.png", "0000/0001.png", "0005/0000.png", "0005/0001.png"]
    with np.load(tmp_path / "set.npz") as data:
        assert data["arr_0"].shape == (4, 32, 32, 3)

    assert main(argv) == 2
    assert "is not empty; use --resume" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0
    assert "wrote 0 image(s) (4 kept)" in capsys.readouterr().out
    assert main([*argv[:-2], "--guidance-schedule", "cosine", "--resume"]) == 2
    assert "sampler.guidance_schedule: 'linear' -> 'cosine'" in capsys.readouterr().err
    assert main([*argv, "--resume", "--batch-size", "0"]) == 2
    assert "--batch-size must be between 1 and 4096" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_under_torchrun_write_exactly_what_one_process_writes(tmp_path, capsys):
    common = [*FAST, "--class", "1,2,3", "--num-per-class", "3", "--seed", "11", "--batch-size", "2"]
    assert main(["sample", *common, "--out", str(tmp_path / "one")]) == 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
               "-m", "maskgit.cli", "sample", *common, "--out", str(tmp_path / "two"), "--npz", str(tmp_path / "two.npz")]
    process = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    one, two = _contents(tmp_path / "one"), _contents(tmp_path / "two")
    assert len(one) == 9 and one == two
    assert "wrote 9 image(s) (0 kept)" in process.stdout  # the count summed over both ranks
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["complete"] is True and len(manifest["outputs"]) == 9
    with np.load(tmp_path / "two.npz") as data:
        assert data["arr_0"].shape == (9, 32, 32, 3)
