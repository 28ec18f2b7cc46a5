"""``maskgit train-tokenizer`` / ``train-transformer`` through the module's own ``register``."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from maskgit.cli import CLIError
from maskgit.cli import train as train_cli
from maskgit.configs import ConfigError


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="maskgit")
    train_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return args.run(args)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (root / label).mkdir()
        for index in range(4):
            pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{index}.png")
    return root


@pytest.mark.slow
def test_train_both_stages_and_load_the_pipeline(tmp_path, image_folder, capsys):
    from maskgit.data import build_dataset, extract_tokens
    from maskgit.models import VQGAN
    from maskgit.pipeline import MaskGIT

    tokenizer_run = tmp_path / "tokenizer_run"
    assert _run("train-tokenizer", "--config", "tiny", "--data", image_folder, "--eval-data", image_folder,
                "--out", tokenizer_run, "--steps", 2, "--batch-size", 4, "--no-progress", "--set", "sample_every=2") == 0
    assert "exported" in capsys.readouterr().out
    evaluation = json.loads((tokenizer_run / "eval.json").read_text())
    assert evaluation["step"] == 2 and evaluation["images"] == 8 and evaluation["psnr"] > 0
    assert -1 <= evaluation["ssim"] <= 1 and 0 < evaluation["codebook_usage_percent"] <= 100
    assert (tokenizer_run / "samples" / "step_00000002.png").is_file()

    # Resume with more steps: continues from the checkpoint at step 2.
    with pytest.warns(UserWarning, match="changed config keys \\['steps'\\]"):
        assert _run("train-tokenizer", "--out", tokenizer_run, "--resume", "--steps", 3, "--no-progress") == 0
    assert (tokenizer_run / "checkpoints" / "step_00000003.pt").is_file()
    assert [r["step"] for r in map(json.loads, (tokenizer_run / "metrics.jsonl").read_text().splitlines()) if "loss" in r] == [1, 2, 3]

    # The transformer on images encoded on the fly ...
    assert _run("train-transformer", "--config", "tiny", "--data", image_folder, "--tokenizer", tokenizer_run / "tokenizer",
                "--out", tmp_path / "from_images", "--steps", 2, "--no-progress") == 0
    pipeline = MaskGIT.from_pretrained(tmp_path / "from_images" / "pipeline")
    assert pipeline.class_names == ("cats", "dogs") and pipeline.image_size == 16

    # ... and on a token file.
    tokenizer = VQGAN.from_pretrained(tokenizer_run / "tokenizer")
    images = build_dataset(str(image_folder), image_size=16, train=False)
    extract_tokens(tokenizer, images, tmp_path / "tokens.bin", batch_size=4, progress=False)
    assert _run("train-transformer", "--config", "tiny", "--data", tmp_path / "tokens.bin", "--tokenizer",
                tokenizer_run / "tokenizer", "--out", tmp_path / "from_tokens", "--steps", 2, "--no-progress") == 0
    pipeline = MaskGIT.from_pretrained(tmp_path / "from_tokens" / "pipeline")
    assert pipeline.transformer.config.num_classes == 2 and pipeline.transformer.config.latent_size == 4


def test_bad_input_gets_a_clear_error(tmp_path, image_folder):
    common = ("--out", tmp_path / "run", "--no-progress")
    with pytest.raises(ConfigError, match="unknown key 'learning_rat'.*'learning_rate'"):
        _run("train-tokenizer", "--config", "tiny", "--data", image_folder, "--set", "learning_rat=1e-3", *common)
    with pytest.raises(ConfigError, match="perceptual_weight is 0.1 but perceptual_weights is not set"):
        _run("train-tokenizer", "--config", "tiny", "--data", image_folder, "--set", "perceptual_weight=0.1", *common)
    with pytest.raises(FileNotFoundError, match="no/such/folder"):
        _run("train-tokenizer", "--config", "tiny", "--data", tmp_path / "no" / "such" / "folder", *common)
    (tmp_path / "empty" / "class").mkdir(parents=True)
    with pytest.raises(ValueError, match="empty"):
        _run("train-tokenizer", "--config", "tiny", "--data", tmp_path / "empty", *common)
    with pytest.raises(CLIError, match="--config is required"):
        _run("train-tokenizer", "--data", image_folder, *common)
    with pytest.raises(CLIError, match="no training data"):
        _run("train-tokenizer", "--config", "tiny", *common)
    with pytest.raises(CLIError, match="pass --tokenizer"):
        _run("train-transformer", "--config", "tiny", "--data", image_folder, *common)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        (tmp_path / "run").mkdir()
        _run("train-tokenizer", "--resume", *common)
    assert not any((tmp_path / "run").iterdir())  # nothing half-written
