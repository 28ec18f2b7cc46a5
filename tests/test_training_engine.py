"""training/engine.py: the learning-rate schedule, RNG state, checkpoints, runs that must not be
overwritten, bf16 autocast, a killed run that resumes exactly, and two processes under torchrun that
match one; clear errors."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from maskgit.checkpoints.errors import CheckpointError
from maskgit.training.engine import lr_factor
from training_helpers import WORKER, RandomImages, flat_tensors, make_trainer, metrics_log, worker_env


def test_lr_schedule_warms_up_then_decays():
    factors = [lr_factor(s, warmup_steps=4, total_steps=14, decay="cosine", min_ratio=0.1) for s in range(15)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0 and factors[9] == pytest.approx(0.55) and factors[14] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[3:], factors[4:]))
    assert lr_factor(100, warmup_steps=0, total_steps=10, decay="constant", min_ratio=0) == 1.0
    assert lr_factor(5, warmup_steps=0, total_steps=10, decay="linear", min_ratio=0) == 0.5


def test_dataset_problems_are_clear_errors(tmp_path):
    from maskgit.training import TokenizerTrainer, TransformerTrainer, load_train_config

    config = load_train_config("tokenizer", "tiny")
    with pytest.raises(ValueError, match="empty"):
        TokenizerTrainer(config, tmp_path, dataset=RandomImages(0), progress=False)
    with pytest.raises(ValueError, match="3 samples, fewer than one global batch \\(4\\)"):
        TokenizerTrainer(config, tmp_path, dataset=RandomImages(3), progress=False)
    with pytest.raises(ValueError, match="shape \\(3, 8, 8\\).*\\(3, 16, 16\\)"):
        TokenizerTrainer(config, tmp_path, dataset=RandomImages(8, size=8), progress=False)
    transformer = load_train_config("transformer", "tiny")
    with pytest.raises(ValueError, match="tokenizer is needed"):
        TransformerTrainer(transformer, tmp_path, dataset=RandomImages(8), progress=False)
    with pytest.raises(ValueError, match="batch_size 6 is not divisible by grad_accum_steps 4"):
        transformer.updated({"grad_accum_steps": 4, "batch_size": 6})


def test_a_checkpoint_of_the_other_stage_is_refused(tmp_path):
    tokenizer = make_trainer("tokenizer", tmp_path / "tok", {"steps": 1})
    tokenizer.train()
    transformer = make_trainer("transformer", tmp_path / "tf", {})
    with pytest.raises(CheckpointError, match="is a tokenizer checkpoint"):
        transformer.load_checkpoint(tmp_path / "tok")


def test_a_new_run_does_not_overwrite_an_existing_one(tmp_path):
    make_trainer("transformer", tmp_path, {"steps": 1}).train()
    with pytest.raises(ValueError, match="already holds a run with checkpoints; resume it"):
        make_trainer("transformer", tmp_path, {"steps": 2})
    with pytest.warns(UserWarning, match="changed config keys"):
        assert make_trainer("transformer", tmp_path, {"steps": 2}, resume=tmp_path).step == 1


@pytest.mark.parametrize(
    "stage,overrides",
    [("tokenizer", {"steps": 2, "discriminator_start": 1}), ("transformer", {"steps": 2})],
)
def test_bf16_autocast_keeps_float32_weights_and_finite_losses(tmp_path, stage, overrides):
    # On CUDA "auto" means bf16; the same code path runs on the CPU when asked.
    trainer = make_trainer(stage, tmp_path, {**overrides, "precision": "bf16"})
    assert trainer.autocast_dtype == torch.bfloat16
    trainer.train()
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    for record in metrics_log(tmp_path):
        assert all(v == v and abs(v) != float("inf") for v in record.values() if isinstance(v, float))
    assert "r1" in metrics_log(tmp_path)[-1] or stage == "transformer"


RESUME_CASES = {
    "tokenizer": {"steps": 7, "checkpoint_every": 3, "grad_accum_steps": 2, "lecam_weight": 0.1, "dead_code_reinit_every": 2},
    "transformer": {"steps": 7, "checkpoint_every": 3, "class_dropout": 0.3},
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", sorted(RESUME_CASES))
def test_killed_and_resumed_run_ends_with_identical_weights(tmp_path, stage):
    overrides = RESUME_CASES[stage]
    full = make_trainer(stage, tmp_path / "full", overrides)
    full.train()

    killed_dir = tmp_path / "killed"
    process = subprocess.run(
        [sys.executable, str(WORKER), stage, str(killed_dir), json.dumps(overrides), "5"],
        env=worker_env(torch.get_num_threads()), capture_output=True, text=True, timeout=120,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert sorted(p.name for p in (killed_dir / "checkpoints").iterdir()) == ["step_00000003.pt"]
    assert not (killed_dir / stage).exists()  # killed before the export

    resumed = make_trainer(stage, killed_dir, overrides, resume=killed_dir)
    assert resumed.step == 3
    resumed.train()

    expected, actual = flat_tensors(full.state_dict()), flat_tensors(resumed.state_dict())
    assert expected.keys() == actual.keys()
    different = [name for name in expected if not torch.equal(expected[name], actual[name])]
    assert not different, f"{len(different)} tensors differ after resume, e.g. {different[:5]}"
    # The log reads like an uninterrupted run's: every step once, the same losses.
    full_log = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    resumed_log = [json.loads(line) for line in (killed_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in resumed_log] == [r["step"] for r in full_log] == list(range(1, 8))
    assert [r["loss"] for r in resumed_log] == [r["loss"] for r in full_log]


def _final_state(out: Path) -> dict[str, torch.Tensor]:
    from maskgit.training.checkpoint import find_latest_checkpoint, load_checkpoint_file

    return flat_tensors(load_checkpoint_file(find_latest_checkpoint(out))["trainer"])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Same global batch (4) either way. The tokenizer's single process uses two micro-batches of 2 so
# that its per-micro-batch entropy term sees the same samples as each of the two ranks. Few steps:
# Adam with β1 = 0 turns rounding-level gradient differences into ±lr updates wherever a gradient
# is ~0, so runs of different reduction order drift apart after a few steps whatever the code.
DISTRIBUTED_CASES = {
    "tokenizer": (
        {"steps": 3, "batch_size": 4, "discriminator_start": 1, "lecam_weight": 0.1, "dead_code_reinit_every": 2},
        {"grad_accum_steps": 2},
    ),
    # No clipping: clipping to a norm would hide a wrongly scaled gradient average.
    "transformer": ({"steps": 4, "batch_size": 4, "model.dropout": 0.0, "class_dropout": 0.25, "grad_clip": None}, {}),
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", sorted(DISTRIBUTED_CASES))
def test_two_processes_under_torchrun_match_one_process(tmp_path, stage):
    shared, single_only = DISTRIBUTED_CASES[stage]
    single = make_trainer(stage, tmp_path / "single", {**shared, **single_only})
    single.train()

    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        str(WORKER), stage, str(tmp_path / "ddp"), json.dumps(shared),
    ]
    process = subprocess.run(command, env=worker_env(1), capture_output=True, text=True, timeout=180)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]

    expected, actual = flat_tensors(single.state_dict()), _final_state(tmp_path / "ddp")
    assert expected.keys() == actual.keys()
    for name in expected:
        if name.endswith("step") or not expected[name].is_floating_point():
            assert torch.equal(expected[name].cpu(), actual[name]), name
        else:
            # Relative to the tensor's scale: the optimizer moments hold raw gradients, which
            # differ by rounding (reduction order) at up to ~1e-4 of their magnitude; a wrong average
            # (a sum, a missing all-reduce) is off by ~100%. The floor covers weights whose exact
            # gradient is 0 (the key biases), which Adam moves by rounding noise alone.
            reference = expected[name].cpu().float()
            error = (actual[name].float() - reference).abs().max().item()
            assert error <= 1e-3 * reference.abs().max().item() + 1e-6, f"{name}: max error {error:.3g}"
    # And training did move the weights: the comparison is not between two initialisations.
    initial = make_trainer(stage, tmp_path / "initial", {**shared, **single_only})
    moved = flat_tensors(initial.state_dict())
    assert any(not torch.allclose(moved[n], expected[n]) for n in expected if n.startswith("model."))
