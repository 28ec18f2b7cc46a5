"""``maskgit extract-tokens``: an image folder encoded by a tokenizer (a bare one, or a pipeline's)
into a token file that holds what the library's ``extract_tokens`` writes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from maskgit.cli import main
from maskgit.data import TokenDataset, build_dataset, extract_tokens


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Two classes of three seeded random 40x36 images."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(4)
    for label in ("boots", "shirts"):
        (root / label).mkdir()
        for index in range(3):
            Image.fromarray(rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)).save(root / label / f"{index}.png")
    return root


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory, small_tokenizer):
    folder = tmp_path_factory.mktemp("tokenizer")
    small_tokenizer.save_pretrained(folder)
    return folder


def test_the_file_holds_what_the_library_writes(tmp_path, capsys, image_folder, tokenizer_dir, small_tokenizer):
    out = tmp_path / "tokens.bin"
    assert main(["extract-tokens", "--tokenizer", str(tokenizer_dir), "--data", str(image_folder), "--image-size", "32",
                 "--batch-size", "4", "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    tokens = TokenDataset(out)
    assert len(tokens) == 12 and tokens.grid == (2, 2) and tokens.class_names == ("boots", "shirts")
    np.testing.assert_array_equal(tokens.labels, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])  # each image and its mirror
    dataset = build_dataset(str(image_folder), image_size=32, train=False)
    expected = extract_tokens(small_tokenizer, dataset, tmp_path / "library.bin", batch_size=3, progress=False)
    np.testing.assert_array_equal(tokens.ids, expected.ids)
    used = int((tokens.code_usage() > 0).sum())
    assert capsys.readouterr().out.strip() == (
        f"wrote {out}: 12 token grids (6 images + mirrors), grid 2x2 from 32x32 images, "
        f"{used}/{small_tokenizer.config.codebook_size} codes used, 2 classes")


def test_a_pipeline_folder_gives_its_tokenizer_and_image_size(tmp_path, capsys, image_folder, model_dir, small_tokenizer,
                                                              small_transformer):
    out = tmp_path / "tokens.bin"
    assert main(["extract-tokens", "--tokenizer", str(model_dir), "--data", str(image_folder), "--no-flips",
                 "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    size = small_transformer.config.latent_size * small_tokenizer.config.downsample_factor
    tokens = TokenDataset(out)
    assert len(tokens) == 6 and tokens.grid == (small_transformer.config.latent_size,) * 2
    assert f"6 token grids, grid {tokens.grid[0]}x{tokens.grid[1]} from {size}x{size} images" in capsys.readouterr().out


def test_bad_numbers_are_exit_2_before_anything_is_written(tmp_path, capsys, image_folder, tokenizer_dir):
    out = tmp_path / "tokens.bin"
    common = ["extract-tokens", "--tokenizer", str(tokenizer_dir), "--data", str(image_folder), "--out", str(out)]
    assert main([*common, "--batch-size", "0"]) == 2
    assert "--batch-size must be positive, got 0" in capsys.readouterr().err
    assert main([*common, "--data", str(tmp_path / "absent")]) == 2
    assert "absent" in capsys.readouterr().err
    assert not out.exists()
