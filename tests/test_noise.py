"""Per-image noise: counter-based uniforms on the model's device, inverse-CDF draws, and the
sources the engine reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskgit.sampling import (
    GeneratorNoise,
    InjectedNoise,
    SeededNoise,
    counter_uniform,
    image_seeds,
    sample_ids_from_uniform,
)


def test_counter_uniforms_are_uniform_and_independent():
    seeds = torch.tensor(image_seeds(0, range(64)))
    u = counter_uniform(seeds, (0, 3, 1), 4096)
    assert u.shape == (64, 4096) and u.dtype == torch.float32
    assert 0 < float(u.min()) and float(u.max()) < 1
    flat = u.double().flatten()
    assert float(flat.mean()) == pytest.approx(0.5, abs=0.003)
    assert float(flat.var()) == pytest.approx(1 / 12, abs=0.001)
    # Kolmogorov-Smirnov distance to U(0, 1) on 262k draws: ~0.003 for a good generator.
    sorted_u = np.sort(flat.numpy())
    grid = np.arange(1, sorted_u.size + 1) / sorted_u.size
    assert np.abs(sorted_u - grid).max() < 0.01
    # Neighbouring positions, rows, steps and kinds are uncorrelated.
    other_step = counter_uniform(seeds, (0, 4, 1), 4096)
    other_kind = counter_uniform(seeds, (0, 3, 0), 4096)
    for a, b in [(u[:, 1:], u[:, :-1]), (u[1:], u[:-1]), (u, other_step), (u, other_kind)]:
        corr = np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1]
        assert abs(corr) < 0.01
    # Each row depends only on its own seed.
    assert torch.equal(counter_uniform(seeds[5:7], (0, 3, 1), 4096), u[5:7])


def test_counter_uniforms_do_not_depend_on_the_device_they_are_computed_on():
    # Integer arithmetic only: the meta device proves the whole computation stays on the seeds'
    # device (no CPU tensor is mixed in), and CPU results are exact odd integers / 2**24.
    seeds = torch.tensor(image_seeds(1, range(4)))
    meta = counter_uniform(seeds.to("meta"), (0, 0, 0), 10)
    assert meta.device.type == "meta" and meta.shape == (4, 10)
    scaled = counter_uniform(seeds, (0, 0, 0), 10).double() * 2**24
    assert torch.equal(scaled, scaled.round()) and bool((scaled.long() % 2 == 1).all())


# A plain-Python model of the hash: unbounded ints, no tensors. Matching it bit for bit shows that
# the int64 tensor arithmetic never overflows and never loses a bit.
def _python_mix32(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & 0xFFFFFFFF
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & 0xFFFFFFFF
    return x ^ (x >> 16)


def _python_uniforms(seed: int, counter: tuple[int, ...], length: int) -> list[float]:
    keys = (0x9E3779B9, 0x243F6A88, 0xB7E15162, 0x6A09E667)

    def rounds(left, right, round_keys):
        for key in round_keys:
            left, right = right, left ^ _python_mix32(right ^ key)
        return left, right

    seed &= 2**64 - 1  # two's complement of a negative int64
    left, right = rounds(seed & 0xFFFFFFFF, seed >> 32, keys[:2])
    for value in counter:
        left, right = rounds(left, right ^ value, keys[2:])
    bits = [_python_mix32(_python_mix32(left ^ p) ^ right ^ 0x5BD1E995) for p in range(length)]
    return [((b >> 9) * 2 + 1) / 2**24 for b in bits]


def test_counter_uniforms_match_a_plain_python_model_of_the_hash():
    seeds = [0, 1, 2**32, 2**32 + 1, 2**63 - 1, -1, -(2**63), *image_seeds(7, range(5))]
    counters = [(0, 0, 0), (3, 15, 1), (2**32 - 1, 2**32 - 1, 2**32 - 1)]
    for counter in counters:
        uniform = counter_uniform(torch.tensor(seeds), counter, 70)
        expected = torch.tensor([_python_uniforms(seed, counter, 70) for seed in seeds], dtype=torch.float64)
        assert torch.equal(uniform.double(), expected), counter


def test_counter_uniforms_never_reach_0_or_1_whatever_the_hash_bits(monkeypatch):
    # Force the mixer's output to its extremes: all ones used to give (2**24 - 0.5) / 2**24,
    # which float32 rounds to exactly 1.0.
    from maskgit.sampling import noise

    seeds = torch.tensor([5, 6])
    for extreme, expected in [(0xFFFFFFFF, 1 - 2**-24), (0, 2**-24)]:
        monkeypatch.setattr(noise, "_mix32", lambda x, extreme=extreme: torch.full_like(x, extreme))
        uniform = noise.counter_uniform(seeds, (0, 1, 0), 3)
        assert bool((uniform > 0).all() and (uniform < 1).all()), uniform
        assert uniform.unique().tolist() == [expected]


def test_every_hash_value_maps_strictly_inside_the_unit_interval():
    # Exhaustive: the float depends only on the top 23 of the 32 bits, so 2**23 values cover all.
    from maskgit.sampling.noise import _unit_interval

    top = torch.arange(2**23, dtype=torch.int64)
    for low in (0, 0x1FF):
        uniform = _unit_interval((top << 9) | low)
        assert float(uniform[0]) == 2**-24 and float(uniform[-1]) == 1 - 2**-24
        assert bool((uniform[1:] > uniform[:-1]).all())  # distinct and ordered: no rounding collapses two
        assert torch.equal(uniform + uniform.flip(0), torch.ones_like(uniform))  # symmetric about 1/2


# An old 32-bit state kept fmix32(seed_low) ^ seed_high, so these two seeds shared one stream.
_FMIX32_OF_1 = 0x514E28B7


def test_seeds_that_differ_only_in_the_high_32_bits_get_different_streams():
    assert _python_mix32(1) == _FMIX32_OF_1
    colliding = torch.tensor([0, (_FMIX32_OF_1 << 32) | 1])
    uniform = counter_uniform(colliding, (0, 0, 0), 16)
    assert not bool((uniform[0] == uniform[1]).any())
    # Same low half, every high half from 0 to 4095 (and the sign bit): all streams differ.
    high = torch.cat([torch.arange(4096), torch.tensor([2**31, 2**32 - 1])])
    seeds = (high << 32) | 12345
    streams = counter_uniform(seeds, (0, 2, 1), 8)
    assert torch.unique(streams, dim=0).shape[0] == seeds.numel()


int64s = st.integers(-(2**63), 2**63 - 1)
counters = st.tuples(*[st.integers(0, 2**32 - 1)] * 3)


@settings(max_examples=200, deadline=None)
@given(int64s, st.integers(0, 63), counters)
def test_every_bit_of_the_seed_changes_the_whole_stream(seed, bit, counter):
    flipped = (seed % 2**64) ^ (1 << bit)  # on the two's complement bits
    flipped -= 2**64 if flipped >= 2**63 else 0  # back into int64
    uniform = counter_uniform(torch.tensor([seed, flipped]), counter, 16)
    assert bool((uniform > 0).all() and (uniform < 1).all())
    # 23 bits a position: two unrelated streams agree at a position once in 8 million.
    assert not bool((uniform[0] == uniform[1]).any())
    # ... and each is the exact value of the hash, whichever bits the seed has.
    assert uniform[0].double().tolist() == _python_uniforms(seed, counter, 16)


def test_many_seeds_give_distinct_streams():
    # 2**18 random 63-bit seeds: a 32-bit state would put about 8 pairs into one stream (birthday
    # bound n**2 / 2**33); with 64 bits, and 4 x 23 bits of output, none.
    seeds = torch.from_numpy(np.random.default_rng(0).integers(0, 2**63, size=2**18, dtype=np.int64))
    streams = counter_uniform(seeds, (0, 3, 1), 4)
    assert torch.unique(streams, dim=0).shape[0] == seeds.numel()


def test_seeded_noise_draws_nothing_from_torch_random_generators(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("noise must not come from torch's RNG")

    for name in ("rand", "randn", "randint", "multinomial", "Generator"):
        monkeypatch.setattr(torch, name, refuse)
    noise = SeededNoise([1, 2, 3], device="cpu")
    logits = torch.zeros(3, 5, 7)
    assert noise.sample(0, logits).shape == (3, 5)
    assert noise.choice(0, (3, 5), torch.device("cpu")).shape == (3, 5)
    assert noise.seeds.device.type == "cpu"


def test_seeded_noise_puts_everything_on_the_model_device():
    noise = SeededNoise([4, 5], device="meta")
    choice = noise.choice(2, (2, 9), torch.device("meta"))
    assert choice.device.type == "meta"


def test_inverse_cdf_draws_follow_the_distribution():
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3])
    seeds = torch.tensor(image_seeds(3, range(8)))
    uniform = counter_uniform(seeds, (0, 0, 0), 20_000)
    ids = sample_ids_from_uniform(probs.expand(8, 20_000, 4), uniform)
    counts = torch.bincount(ids.flatten(), minlength=4).double() / ids.numel()
    assert counts[1] == 0  # zero-probability ids are never drawn
    torch.testing.assert_close(counts, probs.double(), atol=0.005, rtol=0)
    # Unnormalised rows work too, and the extremes of U stay in range.
    edge = sample_ids_from_uniform(torch.tensor([[2.0, 0.0, 2.0]]), torch.tensor([1 - 2**-25]))
    assert edge.tolist() == [2]


def test_seeded_draws_stay_inside_the_top_k_at_extreme_uniforms(monkeypatch):
    # Uniforms of exactly 0 and 1 (which the hash never gives, but a source could) still draw
    # only among the two tokens top-k keeps, and the choice noise stays finite.
    from maskgit.sampling import ConfidenceSampler, noise

    logits = ConfidenceSampler(top_k=2).shape_logits(torch.tensor([[[3.0, 1.0, 2.0, 0.5, -1.0]]]), 0)
    for value in (0.0, 1.0):
        monkeypatch.setattr(noise, "counter_uniform", lambda seeds, counter, length, value=value:
                            torch.full((seeds.shape[0], length), value))
        source = SeededNoise([9])
        assert source.sample(0, logits).item() in (0, 2)
        assert bool(torch.isfinite(source.choice(0, (1, 1), torch.device("cpu"))).all())


def test_seeded_rows_are_independent_of_the_batch():
    logits = torch.randn(4, 6, 10, generator=torch.Generator().manual_seed(0))
    full = SeededNoise([11, 12, 13, 14])
    part = SeededNoise([13, 14])
    assert torch.equal(full.sample(1, logits)[2:], part.sample(1, logits[2:]))
    assert torch.equal(full.choice(1, (4, 6), torch.device("cpu"))[2:], part.choice(1, (2, 6), torch.device("cpu")))
    assert not torch.equal(full.window(1).choice(1, (4, 6), torch.device("cpu")), full.choice(1, (4, 6), torch.device("cpu")))
    with pytest.raises(ValueError, match="2 image seeds for a batch of 4"):
        part.sample(0, logits)


def test_injected_and_generator_noise_use_gumbel_max():
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(1))
    calls = []

    def noise(step, kind, shape):
        calls.append((step, kind, shape))
        return torch.zeros(shape)

    injected = InjectedNoise(noise)
    assert torch.equal(injected.sample(4, logits), logits.argmax(-1))
    assert injected.choice(4, (2, 3), torch.device("cpu")).shape == (2, 3)
    assert calls == [(4, "sample", (2, 3, 5)), (4, "choice", (2, 3))]
    a = GeneratorNoise(torch.Generator().manual_seed(2)).sample(0, logits)
    b = GeneratorNoise(torch.Generator().manual_seed(2)).sample(0, logits)
    assert torch.equal(a, b)
