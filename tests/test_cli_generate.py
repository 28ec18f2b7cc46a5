"""`maskgit generate | reconstruct | edit | inpaint | outpaint` end to end on the fixture model."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit import MaskGIT
from maskgit.cli import main
from maskgit.imageio import load_image
from maskgit.sampling import ConfidenceSampler


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)).save(path)
    return path


def run(*args) -> int:
    return main([str(a) for a in args])


def test_generate_writes_images_grid_and_manifest(tmp_path, model_dir):
    out = tmp_path / "out"
    assert run("generate", "--model", model_dir, "--class", "1", "--class", "sneaker", "--num", "2",
               "--steps", "3", "--batch-size", "3", "--device", "cpu", "--out", out) == 0
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert files == ["0001/0000.png", "0001/0001.png", "0007/0000.png", "0007/0001.png", "grid.png"]
    assert Image.open(out / "0007" / "0001.png").size == (128, 128)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["classes"] == [1, 7] and manifest["settings"]["sampler"] == ConfidenceSampler(num_steps=3).to_dict()
    assert manifest["settings"]["class_names"] == ["Trouser", "Sneaker"]
    assert manifest["outputs"][2] == "0007/0000.png"
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


def test_reconstruct_walks_a_tree(tmp_path, model_dir, photo):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    (images / ".hidden").mkdir()
    Image.open(photo).save(images / "a.jpg")
    Image.open(photo).save(images / "sub" / "b.png")
    Image.open(photo).save(images / ".hidden" / "c.png")
    out = tmp_path / "out"
    assert run("reconstruct", "--model", model_dir, "--images", images, "--image-size", "64",
               "--write-inputs", "--device", "cpu", "--out", out) == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == [
        "inputs/a.png", "inputs/sub/b.png", "reconstructions/a.png", "reconstructions/sub/b.png"]
    assert Image.open(out / "reconstructions" / "sub" / "b.png").size == (64, 64)


def test_edit(tmp_path, model_dir, photo):
    out = tmp_path / "out"
    assert run("edit", "--model", model_dir, "--image", photo, "--box", "32,16,48,72", "--class", "Bag",
               "--num", "2", "--steps", "4", "--device", "cpu", "--out", out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["edit_0000.png", "edit_0001.png", "grid.png", "input.png",
                                                    "manifest.json"]
    assert Image.open(out / "edit_0000.png").size == (128, 128)


@pytest.mark.parametrize("args, message", [
    (["--box", "100,0,40,20"], "outside the 128x128 image (--box is in pixels of the image resized"),
    (["--box", "1,2,3"], "4 numbers"),
    (["--box", "0,0,16,16", "--start-step", "4"], "--start-step"),
])
def test_edit_errors_write_nothing(tmp_path, model_dir, photo, capsys, args, message):
    out = tmp_path / "out"
    assert run("edit", "--model", model_dir, "--image", photo, "--class", "0", "--steps", "4",
               "--device", "cpu", "--out", out, *args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_inpaint_and_its_errors(tmp_path, model_dir, photo, capsys):
    mask = np.zeros((150, 200), np.uint8)
    mask[40:80, 90:120] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out"
    assert run("inpaint", "--model", model_dir, "--image", photo, "--mask", tmp_path / "mask.png",
               "--class", "5", "--num", "1", "--steps", "3", "--device", "cpu", "--out", out) == 0
    result = np.asarray(Image.open(out / "inpaint_0000.png"))
    source = np.asarray(Image.open(out / "input.png"))
    assert result.shape == (128, 128, 3)
    assert (result[:10] == source[:10]).all()  # far from the mask, pixels are kept

    Image.fromarray(np.zeros((150, 200), np.uint8)).save(tmp_path / "empty.png")
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(tmp_path / "small.png")
    for mask_file, message in (("empty.png", "empty"), ("small.png", "10x10")):
        bad_out = tmp_path / f"bad-{mask_file}"
        assert run("inpaint", "--model", model_dir, "--image", photo, "--mask", tmp_path / mask_file,
                   "--class", "5", "--device", "cpu", "--out", bad_out) == 2
        assert message in capsys.readouterr().err
        assert not bad_out.exists()


def test_outpaint(tmp_path, model_dir, photo):
    out = tmp_path / "out"
    assert run("outpaint", "--model", model_dir, "--image", photo, "--extend", "0,20,0,0", "--class", "2",
               "--num", "1", "--steps", "3", "--device", "cpu", "--out", out) == 0
    assert Image.open(out / "outpaint_0000.png").size == (160, 128)  # 20 px → two 16-px tokens


def test_unreadable_image_is_an_error(tmp_path, model_dir, capsys):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    assert run("outpaint", "--model", model_dir, "--image", tmp_path / "broken.png", "--extend", "16,0,0,0",
               "--class", "2", "--device", "cpu", "--out", out) == 2
    assert "broken.png: cannot read image" in capsys.readouterr().err
    assert not out.exists()


@pytest.fixture(scope="module")
def guided_model_dir(tmp_path_factory):
    """A tiny pipeline trained with class dropout (so it has a null class), on 16 px images."""
    from maskgit.models import VQGAN
    from maskgit.training import TransformerTrainer, load_train_config
    from training_helpers import RandomImages

    out = tmp_path_factory.mktemp("guided")
    torch.manual_seed(0)
    tokenizer = VQGAN(load_train_config("tokenizer", "tiny").model)
    config = load_train_config("transformer", "tiny", {"steps": 3, "class_dropout": 0.3, "sample_every": 0})
    TransformerTrainer(config, out, dataset=RandomImages(8), tokenizer=tokenizer, progress=False).train()
    return out / "pipeline"


@pytest.mark.parametrize("flags", [
    ("--sampler", "halton"),
    ("--sampler", "random", "--softmax-temperature", "1.5,0.7", "--top-k", "8"),
    ("--guidance", "2", "--guidance-schedule", "linear"),
    ("--sampler", "halton", "--guidance", "1.5", "--guidance-schedule", "cosine"),
])
def test_generate_with_every_sampler_and_guidance(tmp_path, guided_model_dir, flags):
    from maskgit.sampling import sampler_from_dict

    pipeline = MaskGIT.from_pretrained(guided_model_dir)
    assert pipeline.transformer.config.null_class_id is not None
    out = tmp_path / "out"
    assert run("generate", "--model", guided_model_dir, "--device", "cpu", "--class", "0,2", "--num", "2",
               "--steps", "4", "--seed", "3", "--out", out, *flags) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    sampler = sampler_from_dict(manifest["settings"]["sampler"])
    assert sampler.num_steps == 4 and sampler.name == (flags[1] if flags[0] == "--sampler" else "confidence")
    if "--guidance" in flags:
        assert sampler.guidance == float(flags[flags.index("--guidance") + 1])
    # The files are exactly what the API makes with the recorded sampler and seed.
    expected = pipeline.generate([0, 0, 2, 2], sampler=sampler, seed=3)
    written = torch.stack([load_image(out / p) for p in manifest["outputs"]])
    torch.testing.assert_close(written, (expected * 255).round() / 255, atol=1e-6, rtol=0)


@pytest.mark.parametrize("flags, message", [
    (("--sampler", "halton", "--temperature", "2"), "--temperature is not an option of the halton sampler"),
    (("--softmax-temperature", "0"), "--softmax-temperature must be"),
    (("--softmax-temperature", "1,2,3"), "--softmax-temperature must be T or T0,T1"),
    (("--top-k", "0"), "--top-k must be"),
    (("--guidance", "-1"), "--guidance must be a number >= 0"),
    (("--temperature", "-1"), "--temperature must be a number >= 0"),
    (("--guidance", "1e39"), "--guidance must be a number >= 0 and at most 3.4e+38 (float32)"),
    (("--softmax-temperature", "1e-46"), "--softmax-temperature must be a number > 0"),
])
def test_bad_sampler_flags_name_the_flag(tmp_path, guided_model_dir, capsys, flags, message):
    out = tmp_path / "out"
    assert run("generate", "--model", guided_model_dir, "--device", "cpu", "--class", "0", "--out", out, *flags) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_guidance_that_overflows_the_logits_is_one_line_and_writes_nothing(tmp_path, capsys):
    # A scale float32 holds, but cond + w * (cond - uncond) does not: the library refuses the run.
    out = tmp_path / "out"
    assert run("generate", "--model", "fashion-mnist", "--device", "cpu", "--class", "1", "--num", "1",
               "--steps", "2", "--guidance", "1e38", "--guidance-schedule", "constant", "--seed", "0", "--quiet",
               "--out", out) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert errors == ["maskgit generate: error: guidance 1e+38 overflowed the logits to inf or NaN at step 0 "
                      "(float32); use a smaller guidance scale"]
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
    assert "give the --seed that run printed" in capsys.readouterr().err
    assert run(*common, "--seed", "-1", "--out", tmp_path / "negative") == 2
    assert "--seed must be >= 0" in capsys.readouterr().err


def test_keep_size_uses_the_library_rule(tmp_path, model_dir, photo, capsys):
    # The 200x150 photo is not a whole number of 16-px tokens, so it cannot be kept at its size.
    out = tmp_path / "out"
    assert run("outpaint", "--model", model_dir, "--image", photo, "--extend", "16,0,0,0", "--class", "2",
               "--keep-size", "--device", "cpu", "--out", out) == 2
    assert "multiples of the token size 16 (drop --keep-size" in capsys.readouterr().err
    assert not out.exists()
    square = tmp_path / "square.png"
    Image.open(photo).crop((0, 0, 64, 48)).save(square)
    assert run("outpaint", "--model", model_dir, "--image", square, "--extend", "16,0,0,0", "--class", "2",
               "--keep-size", "--num", "1", "--steps", "2", "--seed", "0", "--device", "cpu", "--out", out) == 0
    assert Image.open(out / "outpaint_0000.png").size == (64, 64)


def test_quiet_silences_progress_and_is_not_a_setting(tmp_path, model_dir, capsys):
    out = tmp_path / "out"
    assert run("generate", "--model", model_dir, "--class", "1", "--num", "2", "--steps", "2", "--seed", "0",
               "--out", out, "--quiet") == 0
    assert "img/s" not in capsys.readouterr().err
    # Resuming without --quiet is the same run: --quiet changes no output, so it is not compared.
    assert run("generate", "--model", model_dir, "--class", "1", "--num", "2", "--steps", "2", "--seed", "0",
               "--out", out, "--resume") == 0
