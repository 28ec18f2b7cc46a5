"""Tiny ``maskgit train`` runs for the tests: a recipe small enough to train in seconds, and the
comparison of two runs' exported weights."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

# Models of a few thousand weights and a handful of steps; one thread, so that two runs compute
# the same bits whatever the calibration would choose.
TINY_SETTINGS = (
    "threads=1", "eval_images=4", "grid_per_class=2",
    "tokenizer.model.filters=8", "tokenizer.model.embedding_dim=8", "tokenizer.model.codebook_size=32",
    "tokenizer.model.norm_groups=4", "tokenizer.model.channel_multipliers=[1,2]",
    "tokenizer.steps=4", "tokenizer.batch_size=4", "tokenizer.discriminator_start=2",
    "tokenizer.discriminator_max_channels=8", "tokenizer.checkpoint_every=2", "tokenizer.dead_code_reinit_every=2",
    "transformer.model.hidden_size=16", "transformer.model.num_layers=1", "transformer.model.num_heads=2",
    "transformer.model.intermediate_size=32", "transformer.steps=4", "transformer.batch_size=4",
    "transformer.checkpoint_every=2", "tokens.batch_size=8", "sampler.num_steps=4",
)


def set_flags(settings) -> list[str]:
    """``--set`` flags for ``settings``."""
    return [flag for setting in settings for flag in ("--set", setting)]


def tiny_flags(*extra: str) -> list[str]:
    """``--set`` flags for the tiny recipe, then ``extra`` settings."""
    return set_flags((*TINY_SETTINGS, *extra))


def pipeline_weights(run: Path) -> dict[str, torch.Tensor]:
    """Every tensor of RUN/pipeline, keyed ``tokenizer/NAME`` and ``transformer/NAME``."""
    weights = {}
    for part in ("tokenizer", "transformer"):
        weights.update({f"{part}/{name}": tensor for name, tensor in load_file(run / "pipeline" / part / "model.safetensors").items()})
    return weights


def assert_same_weights(first: Path, second: Path) -> None:
    a, b = pipeline_weights(first), pipeline_weights(second)
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"weights differ: {different[:5]}"


def assert_refused(capsys, data: Path, run: Path, cases: list[tuple[list[str], str]]) -> None:
    """``maskgit train DATA --out RUN FLAGS`` exits 2 with a message containing MESSAGE for every
    (FLAGS, MESSAGE) case, and RUN is never created."""
    from maskgit.cli import main

    for flags, message in cases:
        assert main(["train", str(data), "--out", str(run), "--quiet", *flags]) == 2
        err = capsys.readouterr().err
        assert message in err, (flags, err)
    assert not run.exists()
