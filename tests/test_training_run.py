"""training/run.py: a run killed in any stage and resumed ends with the same weights as one never
stopped; N processes under torchrun train like one; --init fine-tunes the official weights."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train_run_helpers import assert_same_weights, pipeline_weights, tiny_flags
from training_helpers import worker_env

WORKER = Path(__file__).resolve().parent / "_train_run_worker.py"


def _train(kill_in: str, data: Path, run: Path, *flags: str, resume: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, str(WORKER), kill_in, "--", "train", str(data), "--out", str(run), "--quiet",
               *tiny_flags(*flags), *(["--resume"] if resume else [])]
    return subprocess.run(command, env=worker_env(1), capture_output=True, text=True, timeout=300)



# The tokenizer fine-tunes its decoder after training (the shipped model's recipe has this stage), so
# that a kill inside every training stage is tested.
WITH_DECODER = ("tokenizer.then_decoder=true", "decoder.steps=4", "decoder.batch_size=4", "decoder.checkpoint_every=2",
                "decoder.discriminator_start=2", "decoder.discriminator_max_channels=8")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, shapes):
    run = tmp_path_factory.mktemp("reference") / "run"
    process = _train("none", shapes, run, *WITH_DECODER)
    assert process.returncode == 0, process.stderr[-3000:]
    return run


@pytest.mark.slow
def test_a_run_killed_in_every_stage_resumes_to_the_same_weights(tmp_path, shapes, reference):
    """One run, killed with SIGKILL in each stage in turn and resumed each time with the same command."""
    run = tmp_path / "run"
    resume = False
    stages = ("tokenizer", "decoder", "tokens", "transformer", "finish")
    for stage in stages:
        killed = _train(stage, shapes, run, *WITH_DECODER, resume=resume)
        assert killed.returncode == -9, killed.stderr[-3000:]
        done = json.loads((run / "stages.json").read_text())["stages"] if (run / "stages.json").is_file() else {}
        assert stage not in done and all(earlier in done for earlier in stages[: stages.index(stage)])
        if stage in ("tokenizer", "decoder", "transformer"):  # killed between two checkpoints
            assert sorted(path.name for path in (run / stage / "checkpoints").iterdir()) == ["step_00000002.pt"]
        resume = True
    resumed = _train("none", shapes, run, *WITH_DECODER, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(reference, run)
    assert (run / "samples.png").is_file() and (run / "report.json").is_file()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_under_torchrun_train_like_one(tmp_path, shapes):
    """The same stages under torchrun, with the same global batches: the same tokens and weights
    up to the rounding of the gradient average. (One process takes the tokenizer's batch in two
    micro-batches, so that its per-micro-batch entropy term sees what each of the two ranks sees;
    no dropout, whose random streams are the ranks' own; float32, as bf16 rounds each batch split
    its own way.)"""
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    same = ("transformer.model.dropout=0", "tokenizer.precision=fp32", "transformer.precision=fp32")
    process = _train("none", shapes, single, "tokenizer.grad_accum_steps=2", *same)
    assert process.returncode == 0, process.stderr[-3000:]
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
               "-m", "maskgit.cli", "train", str(shapes), "--out", str(ddp), "--quiet", *tiny_flags(*same)]
    process = subprocess.run(command, env=worker_env(1), capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    recipe = json.loads((ddp / "recipe.json").read_text())
    assert "x 2 processes" in recipe["machine"]
    from maskgit.data.tokens import TokenDataset

    assert (TokenDataset(single / "tokens" / "train.tokens").ids == TokenDataset(ddp / "tokens" / "train.tokens").ids).all()
    expected, actual = pipeline_weights(single), pipeline_weights(ddp)
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        # Relative to the tensor's scale: a wrong gradient average is off by ~100 %. The floor is for
        # weights whose exact gradient is 0 (the attention key biases), which Adam moves by rounding
        # noise alone.
        error = (actual[name] - tensor).abs().max().item()
        assert error <= 1e-3 * tensor.abs().max().item() + 1e-5, f"{name}: max error {error:.3g}"
    # And training moved the weights: the comparison is not between two initialisations.
    start = torch.load(next((single / "transformer" / "checkpoints").iterdir()), weights_only=True)
    assert start["step"] == 4


def test_the_run_display_names_each_training_stage_by_its_own_name(tmp_path, shapes, capsys):
    """The decoder's trainer is a tokenizer trainer; the bar still shows the decoder stage's steps
    under its own name and position."""
    from maskgit.cli import main

    assert main(["train", str(shapes), "--out", str(tmp_path / "run"), *tiny_flags(*WITH_DECODER)]) == 0
    shown = capsys.readouterr().err
    assert "[1/5] tokenizer step 4/4" in shown and "[2/5] decoder step 4/4" in shown and "[4/5] transformer step 4/4" in shown
