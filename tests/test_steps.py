"""sampling/steps.py: the pure functions a decoding step is made of, on hand-built inputs."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskgit.sampling.steps import (
    filter_top_k,
    gumbel_from_uniform,
    gumbel_noise,
    mask_by_random_topk,
    remask_lowest,
    sample_ids,
    sample_ids_from_uniform,
    selected_probs,
)


def test_gumbel_from_uniform_is_minus_log_minus_log_and_finite_at_zero():
    uniform = torch.tensor([0.5, 0.9, 1e-3])
    expected = torch.tensor([-math.log(-math.log(u)) for u in uniform.tolist()])
    torch.testing.assert_close(gumbel_from_uniform(uniform), expected)
    tiny = torch.finfo(torch.float32).tiny
    at_zero = gumbel_from_uniform(torch.zeros(1))
    assert torch.isfinite(at_zero).all() and at_zero.item() == pytest.approx(-math.log(-math.log(tiny)))
    assert gumbel_from_uniform(torch.tensor([0.5], dtype=torch.float64)).dtype == torch.float32


def test_gumbel_from_uniform_is_finite_at_one_so_a_zero_temperature_gives_no_nan():
    # -log(-log(1)) is +inf, and a choice temperature of 0 (the last step) turned it into NaN.
    gumbel = gumbel_from_uniform(torch.tensor([1.0, 0.0, 1 - 2**-24]))
    assert bool(torch.isfinite(gumbel).all())
    assert gumbel[0] == gumbel[2] == pytest.approx(-math.log(-math.log1p(-(2**-24))))
    probs = torch.tensor([[0.9, 0.2, 0.5, 0.05]])
    at_zero = mask_by_random_topk(torch.tensor([2]), probs, torch.tensor(0.0), gumbel_from_uniform(torch.ones(1, 4)))
    assert at_zero.tolist() == [[False, True, False, True]]


# Any float32 in [0, 1], the ends and their neighbours included.
unit_floats = st.one_of(st.sampled_from([0.0, 2.0**-149, 2.0**-24, 0.5, 1 - 2**-24, 1.0]),
                        st.floats(0, 1, width=32))


@settings(max_examples=200, deadline=None)
@given(st.lists(unit_floats, min_size=1, max_size=12), st.one_of(st.just(1e36), st.floats(0, 1e36)),
       st.integers(1, 6))
def test_choice_noise_is_finite_for_any_uniform_and_temperature(uniforms, temperature, masked):
    gumbel = gumbel_from_uniform(torch.tensor([uniforms]))
    scale = torch.tensor(temperature, dtype=torch.float32)
    assert bool(torch.isfinite(gumbel).all()) and bool(torch.isfinite(scale * gumbel).all())
    # At temperature 0 the noise vanishes, whatever its values: the noiseless choice.
    probs = torch.linspace(0.1, 0.9, len(uniforms)).flip(0)[None]
    mask_len = torch.tensor([min(masked, len(uniforms) - 1)])
    assert torch.equal(mask_by_random_topk(mask_len, probs, torch.tensor(0.0), gumbel),
                       mask_by_random_topk(mask_len, probs, torch.tensor(0.0), torch.zeros_like(gumbel)))


def test_gumbel_noise_is_seeded_standard_gumbel():
    a = gumbel_noise((20_000,), torch.Generator().manual_seed(3))
    b = gumbel_noise((20_000,), torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == torch.float32
    # Gumbel(0, 1): mean is Euler's constant, variance pi^2 / 6.
    assert a.mean().item() == pytest.approx(0.5772, abs=0.03)
    assert a.var().item() == pytest.approx(math.pi**2 / 6, abs=0.06)


def test_sample_ids_is_the_argmax_of_logits_plus_noise():
    logits = torch.tensor([[0.0, 1.0, 0.5], [2.0, 0.0, 0.0]])
    assert sample_ids(logits, torch.zeros_like(logits)).tolist() == [1, 0]
    noise = torch.tensor([[0.0, 0.0, 0.6], [0.0, 2.5, 0.0]])  # tips both rows
    assert sample_ids(logits, noise).tolist() == [2, 1]


def test_sample_ids_from_uniform_is_the_inverse_cdf():
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3])  # cdf 0.1, 0.1, 0.7, 1.0
    uniform = torch.tensor([0.0, 0.05, 0.0999, 0.1001, 0.5, 0.6999, 0.7001, 0.99])
    ids = sample_ids_from_uniform(probs.expand(len(uniform), 4), uniform)
    assert ids.tolist() == [0, 0, 0, 2, 2, 2, 3, 3]  # id 1 has no mass and is never drawn
    # Unnormalised rows scale the uniform by their total; the result stays in range at U -> 1.
    assert sample_ids_from_uniform(torch.tensor([[2.0, 6.0]]), torch.tensor([0.3])).tolist() == [1]
    assert sample_ids_from_uniform(torch.tensor([[1.0, 0.0]]), torch.tensor([1.0 - 2**-24])).tolist() == [0]


def test_sample_ids_from_uniform_never_draws_outside_the_top_k_even_at_one():
    # Top-k = 2 leaves the last tokens with no mass; U = 1 used to run past them to the last id.
    probs = torch.softmax(filter_top_k(torch.tensor([[1.0, 3.0, 2.0, 0.5, -1.0]]), 2), dim=-1)
    assert sample_ids_from_uniform(probs, torch.tensor([1.0])).tolist() == [2]
    assert sample_ids_from_uniform(probs, torch.tensor([0.0])).tolist() == [1]
    # Rounding: U * total can round up to the total for an unnormalised row.
    assert sample_ids_from_uniform(torch.tensor([[1.5, 1.5, 0.0]]), torch.tensor([1 - 2**-24])).tolist() == [1]
    # A row with no mass at all gives the last id, not an index past the end.
    assert sample_ids_from_uniform(torch.zeros(1, 3), torch.tensor([0.7])).tolist() == [2]


def test_sample_ids_from_uniform_never_draws_a_zero_even_from_a_rounded_cdf(monkeypatch):
    # A parallel cumsum (as on CUDA) can add a rounding step at a zero: cdf[2] > cdf[1] although
    # probs[2] is 0. Simulated here by nudging the CPU's exact cumsum.
    exact = torch.Tensor.cumsum

    def rounded(self, dim):
        cdf = exact(self, dim)
        cdf[..., 2] = torch.nextafter(cdf[..., 2], torch.tensor(2.0))
        return cdf

    monkeypatch.setattr(torch.Tensor, "cumsum", rounded)
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.25]])
    ids = sample_ids_from_uniform(probs.expand(3, 4), torch.tensor([0.5, 2 / 3, 0.9]))
    # The middle U falls on the step at id 2: the first id of positive probability instead.
    assert ids.tolist() == [1, 1, 3]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.just(0.0), st.floats(0, 2.0**100, width=32)), min_size=1, max_size=10), unit_floats)
def test_inverse_cdf_never_draws_a_token_of_zero_probability(probs, uniform):
    row = torch.tensor([probs])
    drawn = int(sample_ids_from_uniform(row, torch.tensor([uniform]))[0])
    assert 0 <= drawn < len(probs)
    assert probs[drawn] > 0 or not any(p > 0 for p in probs)


def test_filter_top_k_keeps_exactly_k_per_row():
    logits = torch.randn(4, 7, 50, generator=torch.Generator().manual_seed(0))
    for k in (1, 5, 49):
        filtered = filter_top_k(logits, k)
        kept = torch.isfinite(filtered)
        assert (kept.sum(-1) == k).all()
        assert torch.equal(filtered[kept], logits[kept])  # kept logits are unchanged
        # Every kept logit is at least every dropped one.
        dropped_max = logits.masked_fill(kept, float("-inf")).amax(-1)
        kept_min = logits.masked_fill(~kept, float("inf")).amin(-1)
        assert (kept_min > dropped_max).all()
    assert filter_top_k(logits, None) is logits and filter_top_k(logits, 50) is logits


def test_selected_probs_picks_softmax_at_unknown_positions_and_inf_at_known():
    logits = torch.log(torch.tensor([[[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]]]))
    ids = torch.tensor([[1, 7, 0]])  # 7: a known class token, beyond the codebook
    unknown = torch.tensor([[True, False, True]])
    probs = selected_probs(logits, ids, unknown)
    assert probs[0, 1] == float("inf")
    torch.testing.assert_close(probs[0, [0, 2]], torch.tensor([0.8, 0.9]))


def test_remask_lowest_masks_the_requested_count_of_lowest_scores():
    scores = torch.tensor([[0.5, 0.1, 0.9, 0.3, 0.7], [5.0, 4.0, 3.0, 2.0, 1.0]])
    chosen = remask_lowest(scores, torch.tensor([2, 4]))
    assert chosen.tolist() == [[False, True, False, True, False], [False, True, True, True, True]]
    assert chosen.sum(1).tolist() == [2, 4]
    assert not remask_lowest(scores, torch.tensor([0, 0])).any()


def test_known_tokens_are_never_remasked():
    generator = torch.Generator().manual_seed(1)
    for _ in range(20):
        probs = torch.rand(3, 16, generator=generator)
        known = torch.rand(3, 16, generator=generator) < 0.4
        probs[known] = float("inf")
        unknown_count = (~known).sum(1)
        mask_len = (unknown_count - 1).clamp(min=0)
        gumbel = gumbel_noise((3, 16), generator)
        chosen = mask_by_random_topk(mask_len, probs, torch.tensor(4.5), gumbel)
        assert not (chosen & known).any()
        assert torch.equal(chosen.sum(1), mask_len)


def test_mask_by_random_topk_without_noise_masks_the_least_probable():
    probs = torch.tensor([[0.9, 0.2, 0.5, 0.05]])
    chosen = mask_by_random_topk(torch.tensor([2]), probs, torch.tensor(0.0), torch.randn(1, 4))
    assert chosen.tolist() == [[False, True, False, True]]
    # A large temperature lets the noise decide: a strong enough draw saves the least likely token.
    gumbel = torch.tensor([[0.0, 0.0, 0.0, 10.0]])
    chosen = mask_by_random_topk(torch.tensor([2]), probs, torch.tensor(1.0), gumbel)
    assert chosen.tolist() == [[False, True, True, False]]
