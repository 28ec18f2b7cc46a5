"""``maskgit fid`` and ``maskgit eval-tokenizer`` end to end on tiny inputs (no real weights offline:
a TorchScript feature network, and the FID Inception with random weights in the standard format)."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from evaluation_helpers import random_inception_state_dict
from maskgit.cli import main
from maskgit.evaluation.statistics import FeatureStatistics, frechet_distance, load_statistics


class _TinyFeatures(torch.nn.Module):
    """Per-channel means and a fixed random projection of an 4x4 average pool: 8-d features."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("projection", torch.randn(48, 5, generator=torch.Generator().manual_seed(0)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(images, 4).flatten(1)
        return torch.cat([images.mean(dim=(2, 3)), pooled @ self.projection], dim=1)


@pytest.fixture
def feature_module(tmp_path):
    path = tmp_path / "features.pt"
    torch.jit.save(torch.jit.script(_TinyFeatures()), str(path))
    return path


def _write_images(folder, seed: int, count: int = 12, size: int = 16, brightness: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = np.clip(rng.normal(128 + brightness, 40, size=(count, size, size, 3)), 0, 255).astype(np.uint8)
    for index, image in enumerate(images):
        path = folder / f"{index % 3:04d}" / f"{index:04d}.png"  # class folders, as `maskgit sample` writes
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
    return images


def _order(images: np.ndarray) -> np.ndarray:
    # The folder is read class folder by class folder, then by name.
    return images[sorted(range(len(images)), key=lambda i: (i % 3, i))]


def _fid_line(capsys) -> float:
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("FID: ")
    return float(lines[-1].split()[1])


def _direct_fid(first: np.ndarray, second: np.ndarray) -> float:
    module = _TinyFeatures()
    features = [module(torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255) for a in (first, second)]
    return frechet_distance(*(FeatureStatistics.from_features(f) for f in features))


def test_fid_between_folders_npz_and_saved_statistics(tmp_path, feature_module, capsys):
    a = _order(_write_images(tmp_path / "a", seed=0))
    b = _order(_write_images(tmp_path / "b", seed=1, brightness=30))
    common = ["--features", str(feature_module), "--quiet"]

    assert main(["fid", str(tmp_path / "a"), str(tmp_path / "b"), *common]) == 0
    folder_fid = _fid_line(capsys)
    assert folder_fid == pytest.approx(_direct_fid(a, b), rel=1e-4) and folder_fid > 1

    np.savez(tmp_path / "b.npz", arr_0=b)  # ADM layout: uint8 NHWC
    assert main(["fid", str(tmp_path / "a"), str(tmp_path / "b.npz"), *common]) == 0
    assert _fid_line(capsys) == pytest.approx(folder_fid, rel=1e-6)
    assert main(["fid", str(tmp_path / "b"), str(tmp_path / "b.npz"), *common]) == 0
    assert abs(_fid_line(capsys)) < 1e-6

    stats = tmp_path / "ref" / "b_stats.npz"
    assert main(["fid", str(tmp_path / "b"), "--save-stats", str(stats), *common]) == 0
    assert "saved 8-d statistics of 12 images" in capsys.readouterr().out
    assert load_statistics(stats).features.startswith("torchscript:features.pt:")
    assert main(["fid", str(tmp_path / "a"), str(stats), *common]) == 0
    assert _fid_line(capsys) == pytest.approx(folder_fid, rel=1e-6)

    assert main(["fid", str(tmp_path / "a"), str(tmp_path / "b"), "--kid", "--kid-subset-size", "6",
                 "--kid-subsets", "5", "--precision-recall", *common]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["features", "KID", "precision", "recall", "FID"]
    assert float(lines[-1].split()[1]) == pytest.approx(folder_fid, rel=1e-6)


def test_fid_refuses_bad_combinations_with_one_line_errors(tmp_path, feature_module, capsys):
    _write_images(tmp_path / "a", seed=0)
    common = ["--features", str(feature_module), "--quiet"]
    np.savez(tmp_path / "stats.npz", mu=np.zeros(8), sigma=np.eye(8))
    np.savez(tmp_path / "other.npz", mu=np.zeros(8), sigma=np.eye(8), features=np.asarray("inception-2015-12-05/clean"))
    np.savez(tmp_path / "float.npz", arr_0=np.zeros((4, 8, 8, 3), np.float32))
    (tmp_path / "notes.txt").write_text("x")
    cases = [
        (["fid", str(tmp_path / "a"), str(tmp_path / "stats.npz"), "--kid"], "KID need images, and this input only has statistics"),
        (["fid", str(tmp_path / "a"), str(tmp_path / "stats.npz"), "--is"], "needs class logits"),
        (["fid", str(tmp_path / "a"), str(tmp_path / "other.npz")], "statistics were made with 'inception-2015-12-05/clean'"),
        (["fid", str(tmp_path / "a"), str(tmp_path / "float.npz")], "arr_0 must be uint8 images"),
        (["fid", str(tmp_path / "a"), str(tmp_path / "missing")], "no such folder or file"),
        (["fid", str(tmp_path / "a"), str(tmp_path / "notes.txt")], "expected an image folder or an .npz"),
        (["fid", str(tmp_path / "a")], "give two inputs to compare"),
        (["fid", str(tmp_path / "a"), str(tmp_path / "a"), "--batch-size", "0"], "--batch-size must be between 1 and 1024"),
        (["fid", str(tmp_path / "stats.npz"), "--save-stats", str(tmp_path / "x.npz")], "holds statistics already"),
        (["fid", str(tmp_path / "a"), str(tmp_path / "a"), "--features", str(tmp_path / "nothing.pt")], "no such TorchScript file"),
    ]
    for argv, message in cases:
        arguments = argv if "--features" in argv else [*argv, *common]
        assert main(arguments) == 2, argv
        error = capsys.readouterr().err
        assert message in error, (argv, error)
        assert error.startswith("maskgit fid: error: ")
    assert not (tmp_path / "x.npz").exists()


def test_offline_inception_says_where_to_put_the_weights(tmp_path, capsys, monkeypatch):
    _write_images(tmp_path / "a", seed=0)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MASKGIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MASKGIT_INCEPTION_URL", f"http://127.0.0.1:{port}/weights.pth")
    assert main(["fid", str(tmp_path / "a"), str(tmp_path / "a"), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "FID Inception weights are not in the cache" in error
    assert str(tmp_path / "home" / "downloads" / "fid-inception" / "pt_inception-2015-12-05-6726825d.pth") in error


@pytest.mark.slow
def test_inception_features_with_is_and_kid(tmp_path, capsys):
    weights = tmp_path / "inception.pth"
    torch.save(random_inception_state_dict(), weights)
    _write_images(tmp_path / "a", seed=0, count=2, size=24)
    _write_images(tmp_path / "b", seed=1, count=2, size=24, brightness=40)
    argv = ["fid", str(tmp_path / "a"), str(tmp_path / "b"), "--inception-weights", str(weights), "--resize", "legacy",
            "--is", "--splits", "1", "--kid", "--batch-size", "2", "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "features: inception-2015-12-05/legacy"
    assert lines[1].startswith("IS: ") and 1.0 <= float(lines[1].split()[1]) <= 1008
    assert lines[2].startswith("KID: ") and float(lines[-1].split()[1]) > 0


@pytest.mark.slow
def test_eval_tokenizer_on_the_shipped_model(tmp_path, feature_module, capsys):
    _write_images(tmp_path / "images", seed=2, count=6, size=40)
    out = tmp_path / "eval.json"
    assert main(["eval-tokenizer", "--model", "fashion-mnist", "--images", str(tmp_path / "images"), "--features",
                 str(feature_module), "--batch-size", "4", "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "images: 6 at 32x32" and lines[-1].startswith("rFID: ")
    numbers = json.loads(out.read_text())
    assert numbers["count"] == 6 and 5 < numbers["psnr"] < 60 and -1 <= numbers["ssim"] <= 1
    assert float(lines[-1].split()[1]) == pytest.approx(numbers["fid"], rel=1e-3)
    assert lines[-2] == (f"codebook: {numbers['codebook_usage_percent']:.1f} % of codes used, "
                         f"perplexity {numbers['codebook_perplexity']:.1f}")
    assert 0 < numbers["codebook_usage_percent"] <= 100 * 6 * 64 / 512  # 6 images of 8x8 tokens, 512 codes


@pytest.mark.slow
def test_the_offline_path_end_to_end_on_the_shipped_model(tmp_path, capsys):
    """Sample with the shipped model, score with the shipped classifier's features: no download."""
    from maskgit.evaluation.classifier import load_classifier

    common = ["--model", "fashion-mnist", "--steps", "4", "--num-per-class", "3", "--device", "cpu"]
    assert main(["sample", *common, "--seed", "0", "--out", str(tmp_path / "a"), "--npz", str(tmp_path / "a.npz")]) == 0
    assert main(["sample", *common, "--seed", "1", "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert main(["fid", str(tmp_path / "a.npz"), str(tmp_path / "b"), "--features", "fashion-mnist", "--is", "--splits", "3",
                 "--kid", "--kid-subset-size", "10", "--precision-recall", "--quiet"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["features", "IS", "KID", "precision", "recall", "FID"]
    assert lines[0] == "features: fashion-mnist-classifier" and 1 <= float(lines[1].split()[1]) <= 10

    classifier = load_classifier()
    with np.load(tmp_path / "a.npz") as data:
        a = torch.from_numpy(data["arr_0"]).permute(0, 3, 1, 2).float() / 255
    b = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB"))).permute(2, 0, 1).float() / 255
                     for p in sorted((tmp_path / "b").rglob("*.png"))])
    with torch.no_grad():
        expected = frechet_distance(*(FeatureStatistics.from_features(classifier.features(x)) for x in (a, b)))
    assert float(lines[-1].split()[1]) == pytest.approx(expected, rel=1e-4, abs=1e-6)
