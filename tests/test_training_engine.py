"""The engine's pieces: data order, masks, schedules, RNG state, checkpoints, clear errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit.checkpoints.errors import CheckpointError
from maskgit.data.transforms import PadTransform
from maskgit.training.checkpoint import capture_rng_state, find_latest_checkpoint, restore_rng_state
from maskgit.training.data_order import DataPosition, SeededDataset, StepBatchSampler
from maskgit.training.engine import lr_factor
from maskgit.training.ema import EMA
from maskgit.training.masking import masked_inputs, sample_masks
from training_helpers import RandomImages, make_trainer



def _take(sampler: StepBatchSampler, count: int) -> list[list[tuple[int, int]]]:
    iterator = iter(sampler)
    return [next(iterator) for _ in range(count)]


def test_ranks_and_micro_steps_partition_the_single_process_batches():
    common = dict(seed=5, start=DataPosition())
    single = _take(StepBatchSampler(10, 4, world_size=1, rank=0, grad_accum_steps=1, **common), 6)
    ranks = [_take(StepBatchSampler(10, 4, world_size=2, rank=r, grad_accum_steps=2, **common), 12) for r in range(2)]
    for step in range(6):
        # Micro-step a of rank r holds global positions a*W*m + r*m ... in order.
        pieces = [ranks[r][2 * step + a] for a in range(2) for r in range(2)]
        assert sum(pieces, []) == single[step]
    # 10 samples, batch 4: two batches per epoch, the last 2 samples of each epoch dropped.
    epochs = [batch[0][0] for batch in single]
    assert epochs == [0, 0, 1, 1, 2, 2]
    first_epoch = sorted(index for batch in single[:2] for _, index in batch)
    assert len(set(first_epoch)) == 8
    assert [i for _, i in single[2]] != [i for _, i in single[0]]  # a new permutation each epoch


def test_a_sampler_started_at_a_saved_position_continues_the_sequence():
    full = _take(StepBatchSampler(10, 4, world_size=1, rank=0, grad_accum_steps=1, seed=1, start=DataPosition()), 5)
    position = DataPosition()
    for _ in range(3):
        position = position.advanced(4, 10)
    assert position == DataPosition(1, 4)
    resumed = _take(StepBatchSampler(10, 4, world_size=1, rank=0, grad_accum_steps=1, seed=1, start=position), 2)
    assert resumed == full[3:5]


def test_sample_randomness_depends_on_seed_epoch_and_index_only():
    dataset = SeededDataset(RandomImages(4, size=8), seed=3)
    a = dataset[(0, 2)]
    torch.rand(100)  # the caller's RNG state does not matter ...
    b = dataset[(0, 2)]
    assert torch.equal(a[0], b[0]) and a[2] == b[2]
    # ... and is not disturbed.
    state = torch.get_rng_state()
    dataset[(1, 2)]
    assert torch.equal(state, torch.get_rng_state())
    assert len({dataset[(epoch, 2)][2] for epoch in range(5)}) == 5


class _AsymmetricImage(torch.utils.data.Dataset):
    """One left-right asymmetric image through the real Fashion-MNIST training transform (a flip)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.image = Image.fromarray(np.arange(36, dtype=np.uint8).reshape(6, 6) * 7)
        self.transform = PadTransform(8, flip=True)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.image), 0


def test_a_samples_flip_and_its_mask_ratio_are_independent():
    # Both used to come from the first uniform of one seed: flipped exactly when the mask ratio
    # was above cos(pi/4), so a model never saw a mirrored image with few tokens masked.
    dataset = SeededDataset(_AsymmetricImage(600), seed=11)
    unflipped = PadTransform(8)(dataset.dataset.image)
    items = [dataset[(0, index)] for index in range(len(dataset))]
    flipped = torch.tensor([not torch.equal(image, unflipped) for image, _, _ in items])
    mask, _ = sample_masks(torch.tensor([seed for _, _, seed in items]), 64)
    high_ratio = mask.sum(1) > 64 * np.cos(np.pi / 4)
    assert 0.4 < flipped.float().mean() < 0.6
    # Every combination occurs about as often as independence predicts (a quarter each; the old
    # coupling gave exactly 0 for two of them).
    for flip in (True, False):
        for high in (True, False):
            share = ((flipped == flip) & (high_ratio == high)).float().mean().item()
            assert 0.18 < share < 0.32, (flip, high, share)


def test_masks_follow_the_cosine_schedule_and_the_sample_seed():
    seeds = torch.arange(2000) * 7919
    mask, drop = sample_masks(seeds, 16, class_dropout=0.25)
    counts = mask.sum(1)
    assert counts.min() >= 1 and counts.max() <= 16
    # E[cos(pi/2 r)] = 2/pi for r ~ U[0, 1): the masked fraction averages about 0.64 (+ ceil).
    assert 0.62 < counts.float().mean().item() / 16 < 0.72
    assert 0.2 < drop.float().mean().item() < 0.3
    # Each row depends on its own seed only, not on the batch it is in.
    again, _ = sample_masks(seeds[5:8], 16, class_dropout=0.25)
    assert torch.equal(again, mask[5:8])
    ids = torch.tensor([[3, 4, 5]])
    tokens = masked_inputs(ids, torch.tensor([1]), torch.tensor([[True, False, True]]), torch.tensor([False]),
                           codebook_size=8, mask_token_id=11)
    assert tokens.tolist() == [[9, 11, 4, 11]]
    # A dropped label becomes the null class (id 10 = 8 codes + 2 classes), never the mask token.
    dropped = masked_inputs(ids, torch.tensor([1]), torch.tensor([[False] * 3]), torch.tensor([True]),
                            codebook_size=8, mask_token_id=11, null_class_id=10)
    assert dropped.tolist() == [[10, 3, 4, 5]]
    with pytest.raises(ValueError, match="null class"):
        masked_inputs(ids, torch.tensor([1]), torch.tensor([[False] * 3]), torch.tensor([True]),
                      codebook_size=8, mask_token_id=11)


def test_lr_schedule_warms_up_then_decays():
    factors = [lr_factor(s, warmup_steps=4, total_steps=14, decay="cosine", min_ratio=0.1) for s in range(15)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0 and factors[9] == pytest.approx(0.55) and factors[14] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[3:], factors[4:]))
    assert lr_factor(100, warmup_steps=0, total_steps=10, decay="constant", min_ratio=0) == 1.0
    assert lr_factor(5, warmup_steps=0, total_steps=10, decay="linear", min_ratio=0) == 0.5


def test_rng_state_round_trip_covers_python_numpy_and_torch():
    state = capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.random(), np.random.rand(), torch.rand(3)
    restore_rng_state(state)
    assert (random.random(), np.random.rand()) == expected[:2]
    assert torch.equal(torch.rand(3), expected[2])


def test_ema_warms_up_and_tracks_the_weights():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.99)
    initial = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # the first decay is min(0.99, 1/10) = 0.1
    torch.testing.assert_close(ema.model.weight, 0.1 * initial + 0.9)
    assert ema.num_updates == 1 and ema.current_decay() == pytest.approx(2 / 11)
    for _ in range(2000):
        ema.update(model)
    assert ema.current_decay() == 0.99
    torch.testing.assert_close(ema.model.weight, torch.ones(2, 2))
    restored = EMA(torch.nn.Linear(2, 2), decay=0.99)
    restored.load_state_dict(ema.state_dict())
    assert restored.num_updates == 2001 and torch.equal(restored.model.weight, ema.model.weight)


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
