"""runs/npz.py: a written run packed as an ADM .npz, streamed and atomic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskgit.imageio import load_image, save_image
from maskgit.runs import RunPlan, pack_npz


def test_npz_is_the_adm_format(tmp_path):
    plan = RunPlan((4, 0), 2)
    for index in range(len(plan)):
        save_image(torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(index)), tmp_path / "set" / plan.path(index))
    path = pack_npz(plan, tmp_path / "set", tmp_path / "samples.npz")
    with np.load(path) as data:
        images, labels = data["arr_0"], data["arr_1"]
    assert images.dtype == np.uint8 and images.shape == (4, 8, 8, 3)
    assert labels.tolist() == [4, 4, 0, 0]
    for index in range(4):
        png = (load_image(tmp_path / "set" / plan.path(index)) * 255).round().byte().permute(1, 2, 0).numpy()
        assert np.array_equal(images[index], png)
    (tmp_path / "set" / plan.path(3)).unlink()
    with pytest.raises(FileNotFoundError, match="1 image\\(s\\) of the set are missing"):
        pack_npz(plan, tmp_path / "set", tmp_path / "other.npz")
    assert not (tmp_path / "other.npz").exists()


def test_packing_refuses_images_of_different_sizes(tmp_path):
    plan = RunPlan((1,), 2)
    save_image(torch.zeros(3, 8, 8), tmp_path / plan.path(0))
    save_image(torch.zeros(3, 8, 6), tmp_path / plan.path(1))
    with pytest.raises(ValueError, match=r"0001/0001.png: \(8, 6, 3\) differs from the set's \(8, 8, 3\)"):
        pack_npz(plan, tmp_path, tmp_path / "set.npz")
    assert not (tmp_path / "set.npz").exists()  # atomic: nothing half-written
