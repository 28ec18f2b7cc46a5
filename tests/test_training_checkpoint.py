"""Training checkpoints: RNG state, finding the newest readable file, safe loading."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from maskgit.checkpoints.errors import CheckpointError
from maskgit.training.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    capture_rng_state,
    find_latest_checkpoint,
    find_readable_checkpoint,
    load_checkpoint_file,
    read_checkpoint_config,
    restore_rng_state,
    seed_everything,
)
from training_helpers import make_trainer


def test_rng_state_round_trip_covers_python_numpy_and_torch():
    state = capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.random(), np.random.rand(), torch.rand(3)
    restore_rng_state(state)
    assert (random.random(), np.random.rand()) == expected[:2]
    assert torch.equal(torch.rand(3), expected[2])


def test_checkpoint_lookup_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        find_latest_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing"):
        find_latest_checkpoint(tmp_path / "missing")
    (tmp_path / "checkpoints").mkdir()
    for step in (2, 10, 9):
        (tmp_path / "checkpoints" / f"step_{step:08d}.pt").write_bytes(b"x")
    assert find_latest_checkpoint(tmp_path).name == "step_00000010.pt"
    trainer = make_trainer("transformer", tmp_path / "run", {})
    with pytest.raises(CheckpointError, match="step_00000010.pt: not a readable training checkpoint"):
        trainer.load_checkpoint(tmp_path)
    torch.save({"format": "something-else"}, tmp_path / "checkpoints" / "step_00000011.pt")
    with pytest.raises(CheckpointError, match="not a maskgit training checkpoint"):
        trainer.load_checkpoint(tmp_path)


def _write(path, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **extra}, path)


def test_seed_everything_seeds_python_numpy_and_torch():
    seed_everything(3)
    first = (random.random(), np.random.rand(), torch.rand(2))
    seed_everything(3)
    assert (random.random(), np.random.rand()) == first[:2] and torch.equal(torch.rand(2), first[2])


def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
    folder = tmp_path / "checkpoints"
    _write(folder / "step_00000004.pt", step=4)
    (folder / "step_00000008.pt").write_bytes(b"truncated by a crash")
    file, state, skipped = find_readable_checkpoint(tmp_path)
    assert file.name == "step_00000004.pt" and state["step"] == 4
    assert len(skipped) == 1 and "step_00000008.pt: not a readable training checkpoint" in skipped[0]
    # A file named on its own is read as it is: no fallback.
    with pytest.raises(CheckpointError, match="step_00000008.pt"):
        find_readable_checkpoint(folder / "step_00000008.pt")
    (folder / "step_00000004.pt").write_bytes(b"also broken")
    with pytest.raises(CheckpointError, match="no readable checkpoint"):
        find_readable_checkpoint(tmp_path)


def test_loading_checks_format_and_version_and_unpickles_no_code(tmp_path):
    _write(tmp_path / "old.pt", step=1)
    assert load_checkpoint_file(tmp_path / "old.pt")["step"] == 1
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION + 1}, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match=f"version {CHECKPOINT_VERSION + 1}"):
        load_checkpoint_file(tmp_path / "new.pt")
    # A pickled object (code would run on load) is refused by weights_only loading.
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "x": Exception("boom")}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a readable training checkpoint"):
        load_checkpoint_file(tmp_path / "evil.pt")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint_file(tmp_path / "gone.pt")


def test_the_stored_config_is_read_back(tmp_path):
    trainer = make_trainer("transformer", tmp_path / "run", {"steps": 1})
    trainer.train()
    config = read_checkpoint_config(tmp_path / "run")
    assert config == trainer.config
