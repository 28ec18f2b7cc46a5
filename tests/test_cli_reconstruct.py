"""`maskgit reconstruct` end to end on the fixture model: a folder tree in, the same tree out, and the
manifest that records it."""

from __future__ import annotations

import numpy as np
from PIL import Image

from maskgit.cli import main
from maskgit.runs import read_manifest


def test_reconstruct_walks_a_tree(tmp_path, model_dir, capsys):
    images = tmp_path / "images"
    pixels = np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    for name in ("a.jpg", "sub/b.png", ".hidden/c.png"):
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(images / name)
    out = tmp_path / "out"
    command = ["reconstruct", "--model", str(model_dir), "--images", str(images), "--image-size", "64",
               "--write-inputs", "--device", "cpu", "--out", str(out)]
    assert main(command) == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == [
        "inputs/a.png", "inputs/sub/b.png", "reconstructions/a.png", "reconstructions/sub/b.png"]
    assert Image.open(out / "reconstructions" / "sub" / "b.png").size == (64, 64)
    manifest = read_manifest(out)
    assert manifest.complete and manifest.settings.command == "reconstruct" and manifest.settings.image_size == 64
    assert list(manifest.outputs) == ["reconstructions/a.png", "reconstructions/sub/b.png"]
    # Resumed: only what is missing is made again.
    (out / "reconstructions" / "a.png").unlink()
    assert main([*command, "--resume"]) == 0
    assert "reconstructed 1 image(s) (1 kept)" in capsys.readouterr().out
    assert (out / "reconstructions" / "a.png").is_file()
