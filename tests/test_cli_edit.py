"""`maskgit edit | inpaint | outpaint` end to end on the fixture model: the files of each, the
errors that write nothing, and --keep-size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from maskgit.cli import main
from maskgit.runs import read_manifest


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)).save(path)
    return path


def run(*args) -> int:
    return main([str(a) for a in args])


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


def test_outpaint(tmp_path, model_dir, photo, capsys):
    out = tmp_path / "out"
    assert run("outpaint", "--model", model_dir, "--image", photo, "--extend", "0,20,0,0", "--class", "2",
               "--num", "1", "--steps", "3", "--device", "cpu", "--out", out) == 0
    assert Image.open(out / "outpaint_0000.png").size == (160, 128)  # 20 px → two 16-px tokens
    # 64 px on both sides: 16 tokens across, two windows (the middle one is the image); one bar over
    # both windows' steps of both samples, its total known from the start.
    wide = ("outpaint", "--model", model_dir, "--image", photo, "--extend", "0,64,0,64", "--class", "2", "--num", "2",
            "--steps", "3", "--seed", "1", "--device", "cpu", "--out", tmp_path / "wide")
    capsys.readouterr()
    assert run(*wide) == 0
    bar = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if line.startswith("outpaint:")]
    assert " 0/6 " in bar[0] and " 6/6 " in bar[-1] and all("/6 " in line for line in bar)
    settings = read_manifest(tmp_path / "wide").settings
    assert settings.command == "outpaint" and settings.extend == (0, 64, 0, 64) and settings.per_class == 2
    # Resumed, one sample at a time: only the missing one is made again, the same as before.
    second = np.asarray(Image.open(tmp_path / "wide" / "outpaint_0001.png"), dtype=int)
    (tmp_path / "wide" / "outpaint_0001.png").unlink()
    assert run(*wide, "--resume") == 0
    assert "wrote 1 image(s) (1 kept)" in capsys.readouterr().out
    assert np.abs(np.asarray(Image.open(tmp_path / "wide" / "outpaint_0001.png"), dtype=int) - second).max() <= 1


def test_unreadable_image_is_an_error(tmp_path, model_dir, capsys):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    assert run("outpaint", "--model", model_dir, "--image", tmp_path / "broken.png", "--extend", "16,0,0,0",
               "--class", "2", "--device", "cpu", "--out", out) == 2
    assert "broken.png: cannot read image" in capsys.readouterr().err
    assert not out.exists()


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


