"""Filling a token canvas of any size with the fixed-size transformer, window by window, and the
plan of those windows made before any decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskgit.sampling import ConfidenceSampler
from maskgit.sampling.decode import decode
from maskgit.sampling.fill import _origins, fill_tokens, plan_windows
from maskgit.sampling.noise import GeneratorNoise
from maskgit.sampling.steps import MASK_ID

STEPS = 3
SAMPLER = ConfidenceSampler(num_steps=STEPS)


def _noise(seed: int = 0) -> GeneratorNoise:
    return GeneratorNoise(torch.Generator().manual_seed(seed))


class Recording:
    """The transformer, recording every input it is called with."""

    def __init__(self, model) -> None:
        self.model = model
        self.config = model.config
        self.inputs: list[torch.Tensor] = []

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        self.inputs.append(ids.clone())
        return self.model(ids)

    def window_inputs(self) -> list[torch.Tensor]:
        """The first input of each decode call: the window as it was before decoding."""
        return self.inputs[::STEPS]


def _class_tokens(model, labels):
    return torch.tensor(labels) + model.config.codebook_size


def _random_ids(model, shape, seed=0):
    return torch.randint(0, model.config.codebook_size, shape, generator=torch.Generator().manual_seed(seed))


def test_a_canvas_of_the_model_size_is_one_official_decode(small_transformer):
    size = small_transformer.config.latent_size
    canvas = _random_ids(small_transformer, (2, size, size))
    canvas[:, 2:6, 1:7] = MASK_ID
    classes = _class_tokens(small_transformer, [3, 7])
    filled = fill_tokens(small_transformer, canvas, classes, latent_size=size, sampler=SAMPLER, noise=_noise(5))
    sequence = torch.cat([classes[:, None], canvas.reshape(2, -1)], dim=1)
    expected = decode(small_transformer, sequence, num_steps=STEPS, generator=torch.Generator().manual_seed(5))
    assert torch.equal(filled, expected[:, -1, 1:].reshape(2, size, size))


def test_a_wider_canvas_is_filled_window_by_window_with_the_most_context_first(small_transformer):
    size = small_transformer.config.latent_size  # 8: windows start at columns 0 and 4 of 12
    canvas = torch.full((1, size, 12), MASK_ID)
    canvas[:, :, :4] = _random_ids(small_transformer, (1, size, 4))
    model = Recording(small_transformer)
    filled = fill_tokens(model, canvas, _class_tokens(small_transformer, [1]), latent_size=size, sampler=SAMPLER,
                         noise=_noise())
    assert filled.shape == (1, size, 12)
    assert bool(((filled >= 0) & (filled < small_transformer.config.codebook_size)).all())
    assert torch.equal(filled[:, :, :4], canvas[:, :, :4])  # given tokens never change
    first, second = model.window_inputs()
    assert len(model.inputs) == 2 * STEPS
    # The window at column 0 holds 32 known tokens, the one at column 4 none: it goes first.
    assert torch.equal(first[0, 1:].reshape(size, size), canvas[0, :, :size])
    # The second window sees the first one's result as context and generates the rest.
    window = second[0, 1:].reshape(size, size)
    assert torch.equal(window[:, :4], filled[0, :, 4:8])
    assert bool((window[:, 4:] == MASK_ID).all())


def test_a_smaller_canvas_is_padded_to_the_window_and_cropped(small_transformer):
    size = small_transformer.config.latent_size
    canvas = torch.full((2, 4, 5), MASK_ID)
    canvas[:, 0, 0] = 9
    model = Recording(small_transformer)
    filled = fill_tokens(model, canvas, _class_tokens(small_transformer, [0, 2]), latent_size=size, sampler=SAMPLER,
                         noise=_noise())
    assert filled.shape == (2, 4, 5)
    assert bool((filled[:, 0, 0] == 9).all()) and bool((filled >= 0).all())
    assert [tuple(x.shape) for x in model.window_inputs()] == [(2, 1 + size * size)]


def test_bad_canvases_are_rejected(small_transformer):
    size = small_transformer.config.latent_size
    classes = _class_tokens(small_transformer, [0, 1])
    with pytest.raises(ValueError, match=r"canvas must be \(B, h, w\)"):
        fill_tokens(small_transformer, torch.full((size, size), MASK_ID), classes[:1], latent_size=size, sampler=SAMPLER, noise=_noise())
    rows = torch.full((2, size, size), MASK_ID)
    rows[1, 0, 0] = 3
    with pytest.raises(ValueError, match="same positions"):
        fill_tokens(small_transformer, rows, classes, latent_size=size, sampler=SAMPLER, noise=_noise())
    with pytest.raises(ValueError, match="nothing to generate"):
        fill_tokens(small_transformer, torch.zeros(2, size, size, dtype=torch.long), classes, latent_size=size, sampler=SAMPLER, noise=_noise())


def _scanned_windows(unknown: torch.Tensor, size: int) -> list[tuple[int, int]]:
    """The window order by the plain rule: scan every window for the one with the most known
    tokens among those holding unknown ones (the first on a tie), decode it (all known), repeat."""
    height, width = unknown.shape
    grid = np.pad(unknown.numpy(), ((0, max(0, size - height)), (0, max(0, size - width))), constant_values=True)
    windows = [(top, left) for top in _origins(grid.shape[0], size) for left in _origins(grid.shape[1], size)]
    order = []
    while True:
        best, best_known = None, -1
        for top, left in windows:
            cell = grid[top : top + size, left : left + size]
            if cell.any() and int((~cell).sum()) > best_known:
                best, best_known = (top, left), int((~cell).sum())
        if best is None:
            return order
        order.append(best)
        grid[best[0] : best[0] + size, best[1] : best[1] + size] = False


def test_the_window_plan_is_the_scan_of_the_most_known_context():
    generator = torch.Generator().manual_seed(0)
    for trial in range(60):
        size = int(torch.randint(1, 9, (1,), generator=generator))
        height, width = (int(side) for side in torch.randint(1, 21, (2,), generator=generator))
        if trial % 2:  # scattered unknowns
            unknown = torch.rand(height, width, generator=generator) < float(torch.rand(1, generator=generator))
        else:  # a known block in a corner, as outpainting leaves it
            unknown = torch.ones(height, width, dtype=torch.bool)
            unknown[: int(torch.randint(0, height + 1, (1,), generator=generator)),
                    : int(torch.randint(0, width + 1, (1,), generator=generator))] = False
        assert plan_windows(unknown, size) == _scanned_windows(unknown, size), (size, height, width)


def test_the_plan_of_a_long_canvas_counts_its_windows_up_front():
    # An 8-token-wide image extended by 25,000 tokens: half-overlapping windows, one every 4 columns.
    unknown = torch.ones(8, 25_008, dtype=torch.bool)
    unknown[:, :8] = False
    windows = plan_windows(unknown, 8)
    assert len(windows) == 6250 and windows[:2] == [(0, 4), (0, 8)] and windows[-1] == (0, 25_000)


class RecordingReuse:
    """The transformer with context reuse, recording each evaluation: (window of the call, cache,
    full or cheap)."""

    def __init__(self, model) -> None:
        self.model, self.config = model, model.config
        self.calls: list[tuple[torch.Tensor, object, bool]] = []

    def context_cache(self):
        return self.model.context_cache()

    def codebook_logits(self, ids, *, cache=None, positions=None):
        self.calls.append((ids.clone(), cache, positions is None))
        return self.model.codebook_logits(ids, cache=cache, positions=positions)


def test_with_context_reuse_each_window_keeps_its_own_context(small_transformer):
    size = small_transformer.config.latent_size
    canvas = torch.full((2, size, 12), MASK_ID)
    canvas[:, :, :4] = _random_ids(small_transformer, (2, size, 4))
    model = RecordingReuse(small_transformer)
    sampler = ConfidenceSampler(num_steps=4, context_reuse=1)  # full, cheap, full, cheap in each window
    filled = fill_tokens(model, canvas, _class_tokens(small_transformer, [1, 5]), latent_size=size, sampler=sampler,
                         noise=_noise())
    assert bool(((filled >= 0) & (filled < small_transformer.config.codebook_size)).all())
    assert torch.equal(filled[:, :, :4], canvas[:, :, :4])
    assert [full for _, _, full in model.calls] == [True, False, True, False] * 2
    caches = [cache for _, cache, _ in model.calls]
    assert len({id(cache) for cache in caches}) == 4  # a fresh cache at every full evaluation
    assert all(caches[i] is caches[i - 1] for i in (1, 3, 5, 7))  # a cheap step reuses the one before
    # The second window's context is the first window's result, not what the first window cached.
    second = model.calls[4][0][0, 1:].reshape(size, size)
    assert torch.equal(second[:, :4], filled[0, :, 4:8])
