"""cli/options.py: the sampler flags become the sampler the library makes (every kind, guidance on a
model trained with class dropout), and a bad flag is named in its error."""

from __future__ import annotations

import json

import pytest
import torch

from maskgit import MaskGIT
from maskgit.cli import main
from maskgit.imageio import load_image


def run(*args) -> int:
    return main([str(a) for a in args])


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
    ("--guidance", "2", "--guidance-schedule", "linear", "--context-reuse", "2"),
    ("--sampler", "random", "--context-reuse", "1"),
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
    reuse = int(flags[flags.index("--context-reuse") + 1]) if "--context-reuse" in flags else 0
    assert sampler.context_reuse == reuse
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
    (("--context-reuse", "-1"), "--context-reuse must be an integer from 0 to 64, got -1"),
    (("--context-reuse", "65"), "--context-reuse must be an integer from 0 to 64, got 65"),
    (("--sampler", "halton", "--reuse-group"), "--reuse-group is not an option of the halton sampler"),
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
