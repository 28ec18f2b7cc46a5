"""Per-image noise: counter-based uniforms on the model's device, inverse-CDF draws, and the
sources the engine reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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
    # device (no CPU tensor is mixed in), and CPU results are exact integers / 2**24.
    seeds = torch.tensor(image_seeds(1, range(4)))
    meta = counter_uniform(seeds.to("meta"), (0, 0, 0), 10)
    assert meta.device.type == "meta" and meta.shape == (4, 10)
    u = counter_uniform(seeds, (0, 0, 0), 10)
    assert torch.equal(u * 2**24 - 0.5, (u * 2**24 - 0.5).round())


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
