"""`maskgit generate` end to end on the fixture model: the images, the grid and the manifest, resume,
errors that write nothing, the seed it draws and reports, and --quiet."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from maskgit.cli import main
from maskgit.runs import read_manifest
from maskgit.runs.manifest import GenerateSettings
from maskgit.sampling import ConfidenceSampler


def run(*args) -> int:
    return main([str(a) for a in args])


def test_generate_writes_images_grid_and_manifest(tmp_path, model_dir, capsys):
    out = tmp_path / "out"
    assert run("generate", "--model", model_dir, "--class", "1", "--class", "sneaker", "--num", "2",
               "--steps", "3", "--batch-size", "3", "--seed", "4", "--device", "cpu", "--out", out) == 0
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert files == ["0001/0000.png", "0001/0001.png", "0007/0000.png", "0007/0001.png", "grid.png"]
    assert Image.open(out / "0007" / "0001.png").size == (128, 128)
    manifest = read_manifest(out)
    assert manifest.complete and manifest.settings == GenerateSettings(
        model=str(model_dir), device="cpu", batch_size=3, seed=4, sampler=ConfidenceSampler(num_steps=3).to_dict(),
        classes=(1, 7), per_class=2, class_names=("Trouser", "Sneaker"))
    assert manifest.outputs[2] == "0007/0000.png"
    # One bar over the whole run's decoding steps (2 batches of 3 steps), its total known from the start.
    bar = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if line.startswith("generate:")]
    assert " 0/6 " in bar[0] and " 6/6 " in bar[-1] and all("/6 " in line for line in bar)
    # One labelled row per class: 2 rows of 128 px tiles (large enough to stay at scale 1).
    width, height = Image.open(out / "grid.png").size
    assert height == 2 * (128 + 2) + 2 and width > 2 * (128 + 2) + 2

    # --resume: only the missing image is made, and it is the same image as before.
    original = np.asarray(Image.open(out / "0007" / "0000.png"), dtype=int)
    (out / "0007" / "0000.png").unlink()
    kept = out / "0001" / "0000.png"
    os.utime(kept, (0, 0))
    assert run("generate", "--model", model_dir, "--class", "1,7", "--num", "2", "--steps", "3",
               "--batch-size", "3", "--device", "cpu", "--out", out, "--resume") == 0
    # Same seed, same tokens; a batch of one rounds a few pixels differently by one level.
    assert np.abs(np.asarray(Image.open(out / "0007" / "0000.png"), dtype=int) - original).max() <= 1
    assert kept.stat().st_mtime == 0


@pytest.mark.parametrize("args, message", [
    (["--class", "dress-shoe"], "dress-shoe"),
    (["--class", "3", "--steps", "0"], "--steps must be at least 1"),
    (["--class", "3", "--schedule", "zigzag"], "zigzag"),
])
def test_generate_errors_write_nothing(tmp_path, model_dir, capsys, args, message):
    out = tmp_path / "out"
    assert run("generate", "--model", model_dir, "--device", "cpu", "--out", out, *args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_without_a_seed_a_run_draws_one_prints_and_records_it(tmp_path, model_dir, capsys):
    common = ("generate", "--model", model_dir, "--class", "3", "--num", "2", "--steps", "2", "--device", "cpu")
    out = tmp_path / "out"
    assert run(*common, "--out", out) == 0
    seed = json.loads((out / "manifest.json").read_text())["settings"]["seed"]
    assert isinstance(seed, int) and f"seed {seed} (drawn at random" in capsys.readouterr().err
    assert run(*common, "--seed", seed, "--out", tmp_path / "again") == 0
    for name in ("0003/0000.png", "0003/0001.png"):
        assert np.array_equal(np.asarray(Image.open(out / name)), np.asarray(Image.open(tmp_path / "again" / name)))
    # --resume without --seed takes the recorded seed; with no manifest to read it from, it is refused.
    (out / "0003" / "0001.png").unlink()
    assert run(*common, "--resume", "--out", out) == 0
    assert json.loads((out / "manifest.json").read_text())["settings"]["seed"] == seed
    (tmp_path / "fresh").mkdir()
    assert run(*common, "--resume", "--out", tmp_path / "fresh") == 2
    assert "records none; give the seed that run printed" in capsys.readouterr().err
    assert run(*common, "--seed", "-1", "--out", tmp_path / "negative") == 2
    assert "seed must be a non-negative integer, got -1" in capsys.readouterr().err


def test_quiet_silences_progress_and_is_not_a_setting(tmp_path, model_dir, capsys):
    out = tmp_path / "out"
    assert run("generate", "--model", model_dir, "--class", "1", "--num", "2", "--steps", "2", "--seed", "0",
               "--out", out, "--quiet") == 0
    assert "step/s" not in capsys.readouterr().err
    # Resuming without --quiet is the same run: --quiet changes no output, so it is not compared.
    assert run("generate", "--model", model_dir, "--class", "1", "--num", "2", "--steps", "2", "--seed", "0",
               "--out", out, "--resume") == 0
