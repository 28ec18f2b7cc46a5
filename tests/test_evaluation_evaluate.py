"""``maskgit evaluate``: accuracy, FID beside its floor, diversity, reconstruction scores, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from maskgit.cli import main
from maskgit.data import FASHION_MNIST_ROOT
from maskgit.evaluation import evaluate as evaluate_module
from maskgit.evaluation.classifier import fashion_mnist_images
from maskgit.evaluation.evaluate import (
    GenerationEvaluator,
    _frechet_distance,
    evaluate_folder,
    evaluate_images,
    load_generated,
)
from maskgit.imageio import save_image

pytestmark = pytest.mark.skipif(
    not Path(FASHION_MNIST_ROOT, "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not installed at {FASHION_MNIST_ROOT} (apt-get install dataset-fashion-mnist)",
)

NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def run(*args) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory):
    """4 real test images of every class, in class folders named by name (or by index for Bag)."""
    root = tmp_path_factory.mktemp("real")
    images, labels = fashion_mnist_images("test")
    for label, name in enumerate(NAMES):
        folder = root / ("0008" if name == "Bag" else name.replace("/", "_"))
        for k, index in enumerate(torch.nonzero(labels == label).flatten()[:4].tolist()):
            save_image(images[index].float() / 255, folder / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A `maskgit generate` run of the shipped model: 4 T-shirts and 4 sandals."""
    out = tmp_path_factory.mktemp("generated") / "run"
    assert run("generate", "--model", "fashion-mnist", "--class", "0,sandal", "--num", "4", "--seed", "0",
               "--device", "cpu", "--out", out) == 0
    return out


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    # b = 2a + 3: C_b = 4 C_a, so tr((C_a C_b)^½) = 2 tr(C_a), and the distance is
    # |mu_a + 3|² + tr(C_a) + 4 tr(C_a) - 4 tr(C_a).
    expected = ((a.mean(0) + 3) ** 2).sum() + np.trace(np.cov(a, rowvar=False))
    assert _frechet_distance(a, 2 * a + 3) == pytest.approx(expected, rel=1e-9)
    assert _frechet_distance(2 * a + 3, a) == pytest.approx(expected, rel=1e-9)
    assert abs(_frechet_distance(a, a)) < 1e-8


def test_real_test_images_score_like_real_images(real_folder):
    images, labels = load_generated(real_folder, NAMES, 32)
    assert images.shape == (40, 3, 32, 32) and sorted(labels.tolist()) == [c for c in range(10) for _ in range(4)]
    results = evaluate_folder(real_folder)
    assert results["images"] == 40 and [e["class"] for e in results["per_class"]] == list(range(10))
    assert results["accuracy"] >= 0.8 and results["real_accuracy"] >= 0.9
    assert results["fid_reference_images"] == 10_000
    # Real images sit at the floor (both are 40 real images against the test set), not far above.
    assert 0 < results["fid"] < 1.5 * results["fid_floor"]
    assert 0.6 < results["diversity"] < 1.4


def test_an_evaluator_scores_many_sets_with_the_real_features_computed_once(real_folder, monkeypatch):
    images, labels = load_generated(real_folder, NAMES, 32)
    evaluator = GenerationEvaluator()
    first = evaluator(images, labels)
    assert first == evaluate_images(images, labels)
    calls = []
    original = evaluate_module._features_and_predictions
    monkeypatch.setattr(evaluate_module, "_features_and_predictions",
                        lambda classifier, batch: calls.append(len(batch)) or original(classifier, batch))
    assert evaluator(images.flip(-1), labels)["fid"] != first["fid"]
    assert calls == [40]  # only the new images: the test set and the floor are reused
    sandals = labels == 5
    assert evaluator(images[sandals], labels[sandals])["fid_reference_images"] == 1000
    assert calls == [40, 4, 4]  # a new class mix draws its own floor (4 sandals), then the images


def test_evaluate_a_generation_run(generated, tmp_path, capsys):
    assert run("evaluate", generated, "--tokenizer", "fashion-mnist", "--tokenizer-images", "40",
               "--json", tmp_path / "scores.json") == 0
    printed = capsys.readouterr().out
    assert "0 T-shirt/top" in printed and "5 Sandal" in printed and "floor (8 training images)" in printed
    results = json.loads((tmp_path / "scores.json").read_text())
    assert [(e["class"], e["name"], e["images"]) for e in results["per_class"]] == [(0, "T-shirt/top", 4), (5, "Sandal", 4)]
    assert 0 <= results["accuracy"] <= 1 and results["fid_reference_images"] == 2000
    # The shipped model's samples are further from the test set than as many real images.
    assert results["fid"] > results["fid_floor"] > 0
    assert all(0 < e["diversity"] < 2 for e in results["per_class"])
    tokenizer = results["tokenizer"]
    assert tokenizer["images"] == 40 and tokenizer["psnr"] > 24 and 0.8 < tokenizer["ssim"] <= 1


def test_bad_input_is_a_one_line_error(generated, real_folder, tmp_path, capsys):
    def error(*args) -> str:
        assert run("evaluate", *args, "--json", tmp_path / "never.json") == 2
        return capsys.readouterr().err

    assert "no such folder" in error(tmp_path / "absent")
    loose = tmp_path / "loose"
    save_image(torch.zeros(3, 32, 32), loose / "a.png")
    assert "no class subfolders" in error(loose)
    save_image(torch.zeros(3, 32, 32), tmp_path / "named" / "socks" / "a.png")
    assert "socks: class folder is neither" in error(tmp_path / "named")
    save_image(torch.zeros(3, 64, 64), tmp_path / "big" / "0003" / "a.png")
    assert "a.png: is 64x64, the classifier takes 32x32" in error(tmp_path / "big")
    manifest = json.loads((generated / "manifest.json").read_text())
    edited = tmp_path / "edited"
    edited.mkdir()
    manifest["settings"]["command"] = "edit"
    (edited / "manifest.json").write_text(json.dumps(manifest))
    assert "not `maskgit generate`" in error(edited)
    manifest["settings"].update(command="generate", class_names=["goldfish", "ox"])
    (edited / "manifest.json").write_text(json.dumps(manifest))
    assert "are not the classifier's" in error(edited)
    manifest["settings"]["class_names"], manifest["complete"] = ["T-shirt/top", "Sandal"], False
    (edited / "manifest.json").write_text(json.dumps(manifest))
    assert "the run is incomplete" in error(edited)
    assert not (tmp_path / "never.json").exists()
