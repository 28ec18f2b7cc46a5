"""`maskgit evaluate`: the report, the JSON, the tokenizer's scores and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from maskgit.cli import main
from maskgit.data import FASHION_MNIST_ROOT
from maskgit.imageio import save_image

pytestmark = pytest.mark.skipif(
    not Path(FASHION_MNIST_ROOT, "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not installed at {FASHION_MNIST_ROOT} (apt-get install dataset-fashion-mnist)",
)


def run(*args) -> int:
    return main([str(a) for a in args])


def test_evaluate_a_generation_run(generated, tmp_path, capsys):
    assert run("evaluate", generated, "--tokenizer", "fashion-mnist", "--tokenizer-images", "40",
               "--json", tmp_path / "scores.json") == 0
    printed = capsys.readouterr().out
    assert "0 T-shirt/top" in printed and "5 Sandal" in printed and "floor (8 training images)" in printed
    results = json.loads((tmp_path / "scores.json").read_text())
    assert [(e["class"], e["name"], e["images"]) for e in results["per_class"]] == [(0, "T-shirt/top", 4), (5, "Sandal", 4)]
    assert 0 <= results["accuracy"] <= 1 and results["fid_reference_images"] == 2000
    assert results["fid"] > 0 and results["fid_floor"] > 0  # at 8 images either may be the larger
    assert all(0 < e["diversity"] < 2 for e in results["per_class"])
    tokenizer = results["tokenizer"]
    assert tokenizer["images"] == 40 and tokenizer["psnr"] > 23 and 0.8 < tokenizer["ssim"] <= 1
    # The reconstructed floor: the same 8 training images as the floor, so the same floor beside it.
    reconstruction = tokenizer["reconstruction"]
    assert reconstruction["images"] == 8 and reconstruction["fid_floor"] == results["fid_floor"]
    assert reconstruction["fid"] > 0 and 0 <= reconstruction["accuracy"] <= 1
    assert "its reconstructions of the floor's 8 training images: FID" in printed
    # Per-class FIDs: in the JSON, their mean as the intra-FID, and a column each in the table.
    assert results["intra_fid"] == pytest.approx(sum(e["fid"] for e in results["per_class"]) / 2)
    assert reconstruction["intra_fid"] == pytest.approx(sum(e["fid"] for e in reconstruction["per_class"]) / 2)
    assert f"intra-FID (the mean of the classes' FIDs, each against its test images): {results['intra_fid']:.2f}" in printed
    sandal_row = next(line for line in printed.splitlines() if line.startswith("5 Sandal"))
    sandal, recon = results["per_class"][1], reconstruction["per_class"][1]
    assert sandal_row.split()[-3:] == [f"{sandal['fid']:.2f}", f"{sandal['fid_floor']:.2f}", f"{recon['fid']:.2f}"]


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
    settings = dict(manifest["settings"])
    manifest["settings"].update(command="edit", per_class=8, classes=[0], class_names=["T-shirt/top"], image="in.png",
                                box=[0, 0, 16, 16], start_step=2)
    (edited / "manifest.json").write_text(json.dumps(manifest))
    assert "written by `maskgit edit`, not `maskgit generate` or `maskgit sample`" in error(edited)
    manifest["settings"] = {**settings, "class_names": ["goldfish", "ox"]}
    (edited / "manifest.json").write_text(json.dumps(manifest))
    assert "are not the classifier's" in error(edited)
    manifest["settings"]["class_names"], manifest["complete"] = ["T-shirt/top", "Sandal"], False
    (edited / "manifest.json").write_text(json.dumps(manifest))
    assert "the run is incomplete" in error(edited)
    assert not (tmp_path / "never.json").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--channels", "16,32"], "--channels must be three widths"),
        (["--channels", "16,x,64"], "--channels must be three widths"),
        (["--channels", "16,32,0"], "--channels must be three widths"),
        (["--feature-size", "5000"], "--feature-size must be in [1, 1024]"),
    ],
)
def test_train_classifier_refuses_a_bad_shape_before_training(tmp_path, capsys, flags, message):
    assert run("train-classifier", "--out", tmp_path / "clf", *flags) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "clf").exists()
