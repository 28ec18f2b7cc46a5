"""Mask schedules: values, aliases, the float32 quirk, and the clamped counts the decoder uses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import load_npz
from maskgit.sampling import (
    SCHEDULES,
    canonical_schedule,
    clamp_num_masked,
    mask_ratio,
    num_masked_after_step,
    scheduled_num_masked,
    step_ratio,
)


def _ratio(schedule: str, r: float, n0: int = 256) -> float:
    return float(mask_ratio(schedule, torch.tensor(r, dtype=torch.float32), torch.tensor(n0)))


@pytest.mark.parametrize(
    ("schedule", "r", "n0", "expected"),
    [
        ("cosine", 0.5, 256, math.cos(math.pi / 4)),
        ("cosine", 0.25, 64, math.cos(math.pi / 8)),
        ("uniform", 0.25, 256, 0.75),
        ("pow2", 0.5, 256, 0.75),
        ("pow3", 0.5, 256, 0.875),
        ("pow0.5", 0.25, 256, 0.5),
        ("pow1.5", 0.25, 256, 0.875),
        ("log", 0.5, 256, 1 / 8),  # -log2(1/2) / log2(256)
        ("log", 0.25, 16, 0.5),
        ("exp", 0.5, 256, 1 - 2**-4),  # 1 - 2^(-8 * 1/2)
        ("exp", 0.75, 16, 1 - 2**-1),
    ],
)
def test_values_at_known_points(schedule, r, n0, expected):
    assert _ratio(schedule, r, n0) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("schedule", ["cosine", "uniform", "pow2", "pow0.5", "log", "exp"])
def test_clipped_to_valid_range(schedule):
    r = torch.linspace(1e-4, 1.0, 101)
    values = mask_ratio(schedule, r, torch.tensor(256))
    assert values.dtype == torch.float32 and values.shape == (101,)
    assert float(values.min()) >= np.float32(1e-6) and float(values.max()) <= 1.0
    # Every schedule ends with (almost) nothing masked and is non-increasing in r.
    assert float(values[-1]) == pytest.approx(1e-6)
    assert bool((values[1:] <= values[:-1]).all())
    # log exceeds 1 for small r and must be clipped there.
    assert _ratio("log", 1e-3, 4) == 1.0


def test_aliases():
    r = torch.linspace(0.05, 1.0, 20)
    n0 = torch.tensor(100)
    aliases = {"linear": "uniform", "square": "pow2", "cubic": "pow3", "sqrt": "pow0.5"}
    for alias, name in aliases.items():
        assert canonical_schedule(alias) == name
        assert torch.equal(mask_ratio(alias, r, n0), mask_ratio(name, r, n0))
    assert canonical_schedule("pow1.25") == "pow1.25"
    assert set(SCHEDULES) == {"cosine", "uniform", "log", "exp", *aliases}


def test_vectorised_over_steps_and_rows():
    # A (steps, rows) table equals the scalar calls; this is how the decoder precomputes it.
    n0 = torch.tensor([7, 64, 256])
    steps = torch.arange(2, 12)
    for schedule in ("cosine", "log", "exp", "pow0.5"):
        table = scheduled_num_masked(schedule, steps[:, None], 12, n0)
        assert table.shape == (10, 3) and table.dtype == torch.int64
        for i, step in enumerate(steps.tolist()):
            for j, rows in enumerate(n0.tolist()):
                assert int(table[i, j]) == int(scheduled_num_masked(schedule, step, 12, rows))


def test_per_row_total_unknown_broadcasts():
    n0 = torch.tensor([16, 256])
    values = mask_ratio("log", torch.tensor(0.25), n0)
    assert values.shape == (2,)
    assert values.tolist() == pytest.approx([0.5, 0.25])
    # Schedules that ignore n0 still return one value per row.
    assert mask_ratio("cosine", torch.tensor(0.25), n0).shape == (2,)


def test_float32_two_thirds_quirk():
    ratio = step_ratio(7, 12)
    assert ratio.dtype == torch.float32
    value = mask_ratio("cosine", ratio, torch.tensor(256))
    assert value.item() == float(np.float32(0.49999997))  # float64 would give 0.5
    assert int(scheduled_num_masked("cosine", 7, 12, torch.tensor(256))) == 127
    assert int(scheduled_num_masked("cosine", 7, 12, torch.tensor(30))) == 14  # the edit fixture
    assert int(scheduled_num_masked("cosine", 11, 18, torch.tensor(1024))) == 511


@pytest.mark.parametrize(
    ("num_steps", "expected"),
    [
        # spec §3.3 for n0 = 256 (the last value 0 becomes 1 after the clamp)
        (8, [251, 236, 212, 181, 142, 97, 49, 1]),
        (12, [253, 247, 236, 221, 203, 181, 155, 127, 97, 66, 33, 1]),
        (16, [254, 251, 244, 236, 225, 212, 197, 181, 162, 142, 120, 97, 74, 49, 25, 1]),
    ],
)
def test_cosine_counts_for_256_tokens(num_steps, expected):
    counts = [num_masked_after_step("cosine", step, num_steps, 256) for step in range(num_steps)]
    assert counts == expected


@pytest.mark.parametrize("name", ["decode_small_generate.npz", "decode_small_edit.npz"])
def test_matches_fixture_trace(name):
    data = load_npz(name)
    num_steps, start_step = int(data["num_iter"]), int(data["start_iter"])
    n0 = torch.from_numpy((data["input_tokens"] == -1).sum(-1))
    for i, step in enumerate(data["trace_step"].tolist()):
        ratio = mask_ratio("cosine", step_ratio(step, num_steps), n0)
        # Bit for bit: a plain float32 torch.cos is one ulp off XLA at cos(pi/16).
        np.testing.assert_array_equal(ratio.numpy(), np.full(2, data["trace_mask_ratio"][i]))
        product = n0.float() * ratio
        np.testing.assert_array_equal(product.numpy(), data["trace_n0_times_mask_ratio"][i])
        expected_len = data["trace_mask_len"][i].astype(np.int64)
        counts = scheduled_num_masked("cosine", step, num_steps, n0)
        unknown = torch.from_numpy((data["trace_cur_ids"][i] == -1).sum(-1))
        assert clamp_num_masked(counts, unknown).tolist() == expected_len.tolist()
        for row in range(n0.shape[0]):
            assert num_masked_after_step(
                "cosine", step, num_steps, int(n0[row]), start_step=start_step
            ) == int(expected_len[row])


def test_clamp_keeps_progress():
    # At least one token is fixed (≤ unknown - 1) and at least one re-masked (≥ 1).
    counts = torch.tensor([0, 5, 9, 3])
    unknown = torch.tensor([4, 5, 9, 1])
    assert clamp_num_masked(counts, unknown).tolist() == [1, 4, 8, 1]


def test_small_n0_edge_cases():
    # n0 = 0: nothing to mask ever; n0 = 1: the single token stays masked until the end.
    assert [num_masked_after_step("cosine", s, 4, 0) for s in range(4)] == [0, 0, 0, 0]
    assert [num_masked_after_step("cosine", s, 4, 1) for s in range(4)] == [1, 1, 1, 1]
    # log/exp are 0/0 for n0 = 1 at r = 1: still a valid count.
    for schedule in ("log", "exp"):
        value = mask_ratio(schedule, torch.tensor(1.0), torch.tensor([0, 1, 2]))
        assert torch.isfinite(value).all()
        assert num_masked_after_step(schedule, 3, 4, 1) == 1


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown mask schedule 'bogus'") as info:
        mask_ratio("bogus", torch.tensor(0.5), torch.tensor(10))
    for name in SCHEDULES:
        assert name in str(info.value)
    assert "pow<X>" in str(info.value)
    for bad in ("pow", "powx", "Cosine", ""):
        with pytest.raises(ValueError, match="unknown mask schedule"):
            canonical_schedule(bad)
    for bad in ("pow0", "pow-1", "pownan", "powinf"):
        with pytest.raises(ValueError, match="exponent must be a finite number > 0"):
            canonical_schedule(bad)


def test_num_masked_after_step_validates():
    with pytest.raises(ValueError, match="start_step <= step < num_steps"):
        num_masked_after_step("cosine", 12, 12, 10)
    with pytest.raises(ValueError, match="start_step <= step < num_steps"):
        num_masked_after_step("cosine", 1, 12, 10, start_step=2)
    with pytest.raises(ValueError, match="n0 must be >= 0"):
        num_masked_after_step("cosine", 1, 12, -3)
