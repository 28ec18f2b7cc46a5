"""training/engine.py: the learning-rate schedule, RNG state, checkpoints, runs that must not be
overwritten, bf16 autocast, and a killed run that resumes exactly; clear errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

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
