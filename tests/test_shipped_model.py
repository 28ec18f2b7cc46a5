"""The Fashion-MNIST model that ships in the package."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from maskgit import MaskGIT
from maskgit.cli import main
from maskgit.data import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, build_dataset
from maskgit.evaluation.reconstruction import psnr
from maskgit.registry import SHIPPED_MODELS, shipped_model_dir
from maskgit.sampling import ConfidenceSampler

ROOT = Path(__file__).parents[1]


def _comparison_module():
    """benchmarks/sampler_comparison.py, which is a script, not part of the package."""
    spec = importlib.util.spec_from_file_location("sampler_comparison", ROOT / "benchmarks" / "sampler_comparison.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shipped():
    return MaskGIT.from_pretrained("fashion-mnist")


def test_shipped_model_is_in_the_package():
    assert SHIPPED_MODELS == ("fashion-mnist",)
    folder = shipped_model_dir("fashion-mnist")
    assert (folder / "model_index.json").is_file()
    assert (folder / "tokenizer" / "model.safetensors").is_file()
    assert (folder / "transformer" / "model.safetensors").is_file()


def test_shipped_model_generates_fashion_mnist_images(shipped):
    assert shipped.class_names == FASHION_MNIST_CLASSES and shipped.image_size == 32
    images = shipped.generate(list(range(10)), sampler=ConfidenceSampler(num_steps=8), seed=0)
    assert images.shape == (10, 3, 32, 32)
    # Fashion-MNIST is a light garment on a black background, zero-padded from 28 to 32 px: the
    # generated padding must be black and the centre must hold a garment. Random tokens fail both.
    border = torch.cat([images[..., :2, :].flatten(1), images[..., -2:, :].flatten(1)], 1)
    assert border.mean() < 0.05
    assert images[..., 8:24, 8:24].mean(dim=(1, 2, 3)).min() > 0.1
    # Grey images: the three channels agree.
    assert (images - images.mean(1, keepdim=True)).abs().max() < 0.1


def test_the_shipped_model_samples_with_the_sampler_its_comparison_picked(shipped, tmp_path):
    # benchmarks/sampler_comparison.py --save-default wrote its best setting into model_index.json:
    # the latest comparison to choose, the one under a time budget.
    comparison = json.loads((ROOT / "benchmarks/results/sampler-comparison-int8.json").read_text())
    assert shipped.sampler.to_dict() == comparison["best"]["sampler"]
    # ... and it ran on the weights that ship (a sweep resumed on stale weights would not match).
    assert comparison["config"]["weights_sha256"] == _comparison_module().weights_digest(shipped)
    assert shipped.transformer.config.null_class_id is not None  # trained with class dropout: guidance works
    # `maskgit generate` without sampler flags samples with it, and records it.
    assert main(["generate", "--class", "Sneaker", "--num", "2", "--seed", "3", "--device", "cpu", "--quiet",
                 "--out", str(tmp_path / "run")]) == 0
    settings = json.loads((tmp_path / "run" / "manifest.json").read_text())["settings"]
    assert settings["sampler"] == shipped.sampler.to_dict() and settings["model"] == "fashion-mnist"


def test_unknown_model_name_lists_the_known_ones():
    from maskgit import CheckpointError

    with pytest.raises(CheckpointError, match="fashion-mnist, imagenet256, imagenet512"):
        MaskGIT.from_pretrained("fashion-mnst")


@pytest.mark.skipif(not Path(FASHION_MNIST_ROOT).is_dir(), reason="Debian package dataset-fashion-mnist is not installed")
def test_shipped_tokenizer_reconstructs_the_test_set(shipped):
    dataset = build_dataset("fashion-mnist", split="test", image_size=32, train=False)
    images = torch.stack([dataset[i][0] for i in range(0, len(dataset), 20)])  # 500 test images
    reconstructions = shipped.reconstruct(images)
    assert psnr(reconstructions, images).mean().item() >= 24.0
