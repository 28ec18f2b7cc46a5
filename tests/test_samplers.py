"""Samplers: the Halton order, the per-step invariants every sampler keeps, temperatures, top-k,
guidance schedules and the JSON round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskgit.sampling import (
    MASK_ID,
    SAMPLERS,
    ConfidenceSampler,
    HaltonSampler,
    RandomSampler,
    SeededNoise,
    build_sampler,
    halton_order,
    num_masked_per_step,
    run_sampler,
    sampler_from_dict,
    sampler_from_options,
    sampler_options,
)

CODEBOOK = 16


class RandomLogits:
    """A stand-in transformer: logits that depend on the input ids (so steps differ)."""

    class config:  # noqa: N801 - mimics MaskGITTransformer.config
        codebook_size = CODEBOOK
        mask_token_id = CODEBOOK + 3
        null_class_id = None

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(int((ids + 2).sum()) % 10_000)
        return torch.randn(*ids.shape, CODEBOOK + 4, generator=generator) * 3


def _reference_halton_order(size: int, points: int = 10_000) -> list[int]:
    """The Halton-MaskGIT construction, transcribed: an incremental van der Corput generator in
    floats, points scaled by the grid size and floored, duplicates dropped in first-seen order."""

    def van_der_corput(base: int, count: int) -> list[float]:
        n, d, values = 0, 1, []
        for _ in range(count):
            x = d - n
            if x == 1:
                n, d = 1, d * base
            else:
                y = d // base
                while x <= y:
                    y //= base
                n = (base + 1) * y - x
            values.append(n / d)
        return values

    rows = np.floor(np.array(van_der_corput(2, points)) * size).astype(int)
    cols = np.floor(np.array(van_der_corput(3, points)) * size).astype(int)
    seen: dict[int, None] = {}
    for row, col in zip(rows, cols):
        seen.setdefault(int(row * size + col))
    return list(seen)


@pytest.mark.parametrize("size", [1, 2, 4, 7, 8, 16, 32])
def test_halton_order_covers_the_grid_once_and_matches_the_reference(size):
    order = halton_order(size)
    assert order.dtype == torch.int64 and order.shape == (size * size,)
    assert sorted(order.tolist()) == list(range(size * size))
    assert order.tolist() == _reference_halton_order(size)


def test_halton_order_starts_spread_out():
    # The first five cells of a 16x16 grid already touch all four quadrants (raster order: one).
    first = halton_order(16)[:5]
    quadrants = {(int(i) // 16 >= 8, int(i) % 16 >= 8) for i in first}
    assert len(quadrants) == 4
    with pytest.raises(ValueError, match="size"):
        halton_order(0)


def _input(batch=3, side=4, given=None):
    ids = torch.full((batch, 1 + side * side), MASK_ID, dtype=torch.long)
    ids[:, 0] = CODEBOOK + 1  # class token
    if given is not None:
        ids[:, 1 : 1 + given] = torch.arange(given) % CODEBOOK
    return ids


ALL_SAMPLERS = [
    ConfidenceSampler(num_steps=6),
    ConfidenceSampler(num_steps=6, softmax_temperature=(2.0, 0.5), top_k=3, schedule="linear"),
    HaltonSampler(num_steps=6),
    HaltonSampler(num_steps=6, roll=True, softmax_temperature=0.7),
    RandomSampler(num_steps=6, top_k=5),
]


@pytest.mark.parametrize("sampler", ALL_SAMPLERS, ids=lambda s: f"{s.name}")
@pytest.mark.parametrize("start_step", [0, 2])
def test_every_sampler_fixes_exactly_the_scheduled_tokens(sampler, start_step):
    ids = _input(given=5)
    records = []
    final = run_sampler(RandomLogits(), ids, sampler, SeededNoise([1, 2, 3]), start_step=start_step,
                        callback=records.append)
    unknown0 = int((ids[0] == MASK_ID).sum())
    expected = num_masked_per_step(sampler.schedule, sampler.num_steps, unknown0, start_step=start_step)
    assert len(records) == len(expected) == sampler.num_steps - start_step
    previous = ids
    for record, remaining in zip(records, expected):
        # Masked count after the step = the schedule's, in every row.
        assert ((record.next_ids == MASK_ID).sum(-1) == remaining).all()
        # Known tokens (given ones, the class slot, earlier fixed ones) never change.
        known = previous != MASK_ID
        assert torch.equal(record.sampled_ids[known], previous[known])
        assert not record.masking[known].any()
        assert (record.next_ids[:, 0] == CODEBOOK + 1).all()
        previous = record.next_ids
    result = final[:, -1]
    assert (result[:, 1:] >= 0).all() and (result[:, 1:] < CODEBOOK).all()
    assert torch.equal(result[:, :6], ids[:, :6])


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_masked_counts_follow_the_schedule_table(name):
    sampler = build_sampler(name, num_steps=8)
    records = []
    run_sampler(RandomLogits(), _input(batch=2), sampler, SeededNoise([5, 6]), callback=records.append)
    for row in range(2):
        counts = [int((r.next_ids[row] == MASK_ID).sum()) for r in records]
        assert counts == num_masked_per_step("cosine", 8, 16)


def test_halton_fixes_positions_in_halton_order():
    records = []
    run_sampler(RandomLogits(), _input(batch=2), HaltonSampler(num_steps=4), SeededNoise([0, 1]),
                callback=records.append)
    order = halton_order(4)
    for record in records[:-1]:
        fixed = (record.next_ids[:, 1:] != MASK_ID).sum(-1)
        for row in range(2):
            count = int(fixed[row])
            expected = torch.zeros(16, dtype=torch.bool)
            expected[order[:count]] = True
            assert torch.equal(record.next_ids[row, 1:] != MASK_ID, expected)


def test_halton_roll_gives_each_image_its_own_start():
    records = []
    run_sampler(RandomLogits(), _input(batch=4), HaltonSampler(num_steps=4, roll=True), SeededNoise([0, 1, 2, 3]),
                callback=records.append)
    first = records[0].next_ids[:, 1:] != MASK_ID
    assert len({tuple(row.tolist()) for row in first}) > 1


def test_random_order_differs_by_seed_and_ignores_confidence():
    def fixed_after_first_step(seed):
        records = []
        run_sampler(RandomLogits(), _input(batch=1), RandomSampler(num_steps=8), SeededNoise([seed]),
                    callback=records.append)
        return records[0].next_ids[0] != MASK_ID

    assert not torch.equal(fixed_after_first_step(0), fixed_after_first_step(1))


def test_softmax_temperature_and_top_k_shape_the_logits():
    logits = torch.tensor([[[0.0, 1.0, 2.0, 3.0]]])
    sampler = ConfidenceSampler(num_steps=5, softmax_temperature=(2.0, 1.0), top_k=2)
    assert sampler.softmax_temperature_at(0) == 2.0 and sampler.softmax_temperature_at(4) == 1.0
    assert sampler.softmax_temperature_at(2) == pytest.approx(1.5)
    shaped = sampler.shape_logits(logits, 0)
    # (logits - max) / 2: the same softmax as logits / 2, with the maximum at 0.
    assert shaped[0, 0, :2].tolist() == [-math.inf, -math.inf] and shaped[0, 0, 2:].tolist() == [-0.5, 0.0]
    plain = ConfidenceSampler()
    assert plain.shape_logits(logits, 3) is logits  # the official path is untouched


@pytest.mark.parametrize("temperature", [1e-45, 1e-30, 1e-6])
def test_a_tiny_softmax_temperature_samples_the_argmax_and_keeps_the_schedule(temperature):
    # logits / 1e-45 used to overflow to inf and softmax to NaN: tokens off the argmax, and NaN
    # confidences that fixed every token at the first step.
    model, ids, records = RandomLogits(), _input(batch=2), []
    run_sampler(model, ids, ConfidenceSampler(num_steps=5, softmax_temperature=temperature), SeededNoise([7, 8]),
                callback=records.append)
    previous = ids
    for record, remaining in zip(records, num_masked_per_step("cosine", 5, 16)):
        raw = model(previous)[..., :CODEBOOK]
        unknown = record.unknown
        assert torch.equal(record.sampled_ids[unknown], raw.argmax(-1)[unknown])
        assert not record.logits.isnan().any() and bool((record.logits.amax(-1) == 0).all())
        # Every probability is 1, so the last step (choice temperature 0) ties all confidences
        # and re-masks none: its count is the one the schedule table leaves to ties.
        if record.step < 4:
            assert ((record.next_ids == MASK_ID).sum(-1) == remaining).all()
        previous = record.next_ids


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=2, max_size=8),
       st.one_of(st.sampled_from([2.0**-149, 1e-45, 1e-38, 1.0, 3.4028234663852886e38]),
                 st.floats(2.0**-149, 3.4028234663852886e38)))
def test_any_softmax_temperature_gives_a_proper_distribution(logits, temperature):
    raw = torch.tensor([[logits]])
    shaped = ConfidenceSampler(softmax_temperature=temperature).shape_logits(raw, 0)
    assert not shaped.isnan().any()
    if temperature != 1:  # shifted to a maximum of 0 (at 1, the official path: unchanged)
        assert bool((shaped <= 0).all()) and float(shaped.max()) == 0
    probs = torch.softmax(shaped, dim=-1)
    assert bool(torch.isfinite(probs).all()) and float(probs.sum()) == pytest.approx(1.0, abs=1e-5)
    if temperature <= 1:  # dividing cannot round a gap to the maximum down to 0
        assert int(shaped.argmax()) == int(raw.argmax()) and float(probs.max()) == float(probs[0, 0, raw.argmax()])


def test_top_k_one_is_greedy():
    records = []
    run_sampler(RandomLogits(), _input(batch=2), RandomSampler(num_steps=4, top_k=1), SeededNoise([3, 4]),
                callback=records.append)
    first = records[0]
    unknown = _input(batch=2) == MASK_ID
    assert torch.equal(first.sampled_ids[unknown], first.logits.argmax(-1)[unknown])


def test_guidance_schedules():
    constant = ConfidenceSampler(num_steps=5, guidance=2.0)
    linear = constant.replace(guidance_schedule="linear")
    cosine = constant.replace(guidance_schedule="cosine")
    assert [constant.guidance_at(t) for t in range(5)] == [2.0] * 5
    assert [linear.guidance_at(t) for t in range(5)] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert cosine.guidance_at(0) == 0.0 and cosine.guidance_at(4) == pytest.approx(2.0)
    assert cosine.guidance_at(2) == pytest.approx(1.0) and cosine.guidance_at(1) < linear.guidance_at(1)
    assert ConfidenceSampler(num_steps=1, guidance=3.0, guidance_schedule="linear").guidance_at(0) == 3.0


class CountingPasses(torch.nn.Module):
    """A transformer with a null class that counts the sequences it is run on, and records which
    evaluations were full (context reuse)."""

    def __init__(self) -> None:
        from maskgit import MaskGITTransformer, TransformerConfig

        super().__init__()
        config = TransformerConfig(codebook_size=16, num_classes=3, hidden_size=32, num_layers=1, num_heads=2,
                                   intermediate_size=64, latent_size=2, dropout=0.0, null_class=True)
        torch.manual_seed(0)
        self.model, self.config, self.sequences, self.full = MaskGITTransformer(config).eval(), config, 0, []

    def context_cache(self):
        return self.model.context_cache()

    def codebook_logits(self, ids, *, cache=None, positions=None):
        self.sequences += ids.shape[0]
        self.full.append(positions is None)
        return self.model.codebook_logits(ids, cache=cache, positions=positions)


@pytest.mark.parametrize("sampler", [
    ConfidenceSampler(num_steps=8),
    ConfidenceSampler(num_steps=8, guidance=2.0),
    HaltonSampler(num_steps=12, guidance=1.0, guidance_schedule="linear"),
    RandomSampler(num_steps=4, guidance=4.0, guidance_schedule="cosine"),
    ConfidenceSampler(num_steps=8, guidance=2.0, guidance_schedule="linear", context_reuse=2),
    HaltonSampler(num_steps=12, context_reuse=3),
], ids=lambda s: f"{s.name}-{s.guidance_schedule}-{s.context_reuse}")
@pytest.mark.parametrize("start_step", [0, 2])
def test_transformer_passes_counts_what_the_engine_runs(sampler, start_step):
    counting = CountingPasses()
    ids = torch.full((1, 1 + 4), MASK_ID, dtype=torch.long)
    ids[:, 0] = counting.config.codebook_size + 1
    records = []
    run_sampler(counting, ids, sampler, SeededNoise([0]), start_step=start_step, callback=records.append)
    # A cheap step is a pass (over fewer tokens) and a step: the progress bars count every one.
    assert sampler.transformer_passes(start_step) == counting.sequences
    assert len(records) == sampler.num_steps - start_step
    assert tuple(counting.full) == sampler.evaluation_plan(start_step)


@pytest.mark.parametrize("sampler", ALL_SAMPLERS + [ConfidenceSampler(guidance=1.5, guidance_schedule="cosine"),
                                                     HaltonSampler(context_reuse=3),
                                                     ConfidenceSampler(context_reuse=2, reuse_group=True)],
                         ids=lambda s: s.name)
def test_to_dict_round_trips_through_json(sampler):
    import json

    data = json.loads(json.dumps(sampler.to_dict()))
    assert data["sampler"] == sampler.name
    assert sampler_from_dict(data) == sampler


def test_context_reuse_is_recorded_only_when_it_is_used():
    # A record without it (every record older than the option) means full evaluations: the same run.
    assert "context_reuse" not in ConfidenceSampler().to_dict()
    assert ConfidenceSampler(context_reuse=2).to_dict()["context_reuse"] == 2
    assert sampler_from_dict({"sampler": "random", "num_steps": 4}).context_reuse == 0
    assert "reuse_group" not in ConfidenceSampler(context_reuse=2).to_dict()
    assert ConfidenceSampler(context_reuse=2, reuse_group=True).to_dict()["reuse_group"] is True


def test_reuse_group_chooses_groups_only_with_context_reuse():
    assert ConfidenceSampler(context_reuse=1, reuse_group=True).chooses_groups
    assert not ConfidenceSampler(reuse_group=True).chooses_groups  # no cheap steps: nothing to group
    assert not ConfidenceSampler(context_reuse=1).chooses_groups
    assert not HaltonSampler(context_reuse=1).chooses_groups
    with pytest.raises(ValueError, match="reuse_group must be true or false, got 1"):
        ConfidenceSampler(reuse_group=1)
    with pytest.raises(ValueError, match="reuse_group is not an option of the halton sampler"):
        sampler_from_options({"sampler": "halton", "reuse_group": True})


@pytest.mark.parametrize("sampler, start_step, plan", [
    (ConfidenceSampler(num_steps=5), 0, "FFFFF"),
    (ConfidenceSampler(num_steps=7, context_reuse=1), 0, "FcFcFcF"),
    (HaltonSampler(num_steps=8, context_reuse=2), 0, "FccFccFc"),
    (RandomSampler(num_steps=8, context_reuse=2), 3, "FccFc"),
    (ConfidenceSampler(num_steps=4, context_reuse=64), 0, "Fccc"),
    # Guidance turning on needs the unconditional half's own full evaluation.
    (ConfidenceSampler(num_steps=6, guidance=2.0, guidance_schedule="linear", context_reuse=2), 0, "FFccFc"),
    (ConfidenceSampler(num_steps=6, guidance=2.0, guidance_schedule="linear", context_reuse=2), 1, "FccFc"),
    (ConfidenceSampler(num_steps=6, guidance=2.0, context_reuse=2), 0, "FccFcc"),
])
def test_evaluation_plan_puts_context_reuse_cheap_steps_after_each_full_one(sampler, start_step, plan):
    assert "".join("F" if full else "c" for full in sampler.evaluation_plan(start_step)) == plan


def test_options_keep_the_default_and_a_switch_of_kind_keeps_the_shared_fields():
    model = ConfidenceSampler(num_steps=12, top_k=5, guidance=2.0, guidance_schedule="linear", choice_temperature=3.0,
                              context_reuse=2)
    assert sampler_from_options({}, model) is not model and sampler_from_options({}, model) == model
    assert sampler_from_options({"num_steps": 4, "top_k": None}, model) == model.replace(num_steps=4, top_k=None)
    # The choice temperature is the confidence sampler's own: a Halton sampler does not inherit it.
    assert sampler_from_options({"sampler": "halton"}, model) == HaltonSampler(
        num_steps=12, top_k=5, guidance=2.0, guidance_schedule="linear", context_reuse=2)
    assert sampler_from_options({"sampler": "halton", "roll": True}) == HaltonSampler(roll=True)
    assert sampler_from_options({"softmax_temperature": [1.2, 0.8]}).softmax_temperature == (1.2, 0.8)
    assert sampler_from_options({"context_reuse": 0}, model) == model.replace(context_reuse=0)
    assert sampler_options("random") == ("num_steps", "schedule", "softmax_temperature", "top_k", "guidance",
                                         "guidance_schedule", "context_reuse")


@pytest.mark.parametrize("name, fields, message", [
    ("zigzag", {}, "unknown sampler 'zigzag'"),
    ("halton", {"choice_temperature": 1.0}, "choice_temperature is not an option of the halton sampler"),
    ("random", {"roll": True, "top": 1}, "roll and top are not options of the random sampler"),
    ("confidence", {"num_steps": 0}, "num_steps must be at least 1"),
    ("confidence", {"schedule": "zigzag"}, "unknown mask schedule"),
    ("confidence", {"softmax_temperature": 0.0}, "softmax_temperature must be"),
    ("confidence", {"softmax_temperature": (1.0, 2.0, 3.0)}, "softmax_temperature must be"),
    # Sampling runs in float32: values it would round to 0 or inf are refused.
    ("confidence", {"softmax_temperature": 2.0**-150}, "softmax_temperature must be .* above 7e-46"),
    ("confidence", {"softmax_temperature": (1.0, 1e39)}, "softmax_temperature must be .* at most 3.4e[+]38"),
    ("random", {"guidance": 1e39}, "guidance must be a number >= 0 and at most 3.4e[+]38"),
    ("confidence", {"choice_temperature": 1e37}, "choice_temperature must be a number >= 0 and at most 1e[+]36"),
    ("random", {"top_k": 0}, "top_k must be"),
    ("random", {"guidance": -1.0}, "guidance must be"),
    ("random", {"guidance": float("nan")}, "guidance must be"),
    ("random", {"guidance_schedule": "exp"}, "unknown guidance schedule"),
    ("confidence", {"choice_temperature": -1.0}, "choice_temperature must be"),
    ("halton", {"roll": 1}, "roll must be"),
    ("random", {"context_reuse": -1}, "context_reuse must be an integer from 0 to 64, got -1"),
    ("random", {"context_reuse": 65}, "context_reuse must be an integer from 0 to 64"),
    ("confidence", {"context_reuse": 1.5}, "context_reuse must be an integer"),
    ("halton", {"context_reuse": True}, "context_reuse must be an integer"),
])
def test_bad_sampler_options_are_refused_by_name(name, fields, message):
    with pytest.raises(ValueError, match=message):
        build_sampler(name, **fields)


@pytest.mark.parametrize("fields", [
    {"sampler": "confidence", "num_steps": 16, "schedule": "cosine", "softmax_temperature": 1.0, "top_k": None,
     "guidance": 2.0, "guidance_schedule": "linear", "choice_temperature": 4.5},
    {"sampler": "confidence", "num_steps": 8, "schedule": "linear", "softmax_temperature": [1.2, 0.8], "top_k": 5,
     "guidance": 1.0, "guidance_schedule": "cosine", "choice_temperature": 2.0, "context_reuse": 2},
    {"sampler": "confidence", "num_steps": 8, "context_reuse": 2, "reuse_group": True},
    {"sampler": "halton", "num_steps": 12, "guidance": 3.0},
    {"sampler": "random", "num_steps": 4, "top_k": 7},
])
def test_sampler_flags_give_exactly_the_sampler_whatever_the_models_default(fields):
    # The reproduction benchmark and the studio's command line both rely on this round trip.
    from maskgit.cli import build_parser
    from maskgit.cli.options import sampler_from_args
    from maskgit.sampling import sampler_flags

    wanted = sampler_from_options(fields)
    args = build_parser().parse_args(["generate", "--class", "0", "--out", "x", *sampler_flags(wanted)])
    for other_default in (ConfidenceSampler(num_steps=3, choice_temperature=1.0, guidance=4.0, context_reuse=1),
                          ConfidenceSampler(num_steps=3, context_reuse=1, reuse_group=True)):
        assert sampler_from_args(args, other_default) == wanted
    with pytest.raises(ValueError, match="roll"):  # an option no flag sets is refused, not dropped
        sampler_flags(HaltonSampler(roll=True))
