"""The decoding engine: classifier-free guidance, the class slot, id validation and context reuse."""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskgit import MaskGITTransformer, TransformerConfig
from maskgit.sampling import (
    MASK_ID,
    ConfidenceSampler,
    GeneratorNoise,
    HaltonSampler,
    InjectedNoise,
    RandomSampler,
    SeededNoise,
    mask_by_random_topk,
    num_masked_per_step,
    run_sampler,
    selected_probs,
)

CONFIG = TransformerConfig(codebook_size=16, num_classes=3, hidden_size=32, num_layers=1, num_heads=2,
                           intermediate_size=64, latent_size=3, dropout=0.0, null_class=True)


class Recording(torch.nn.Module):
    """Wraps a transformer and records the batches it is called with."""

    def __init__(self, model: MaskGITTransformer) -> None:
        super().__init__()
        self.model, self.config, self.calls = model, model.config, []

    def check_ids(self, ids):
        self.model.check_ids(ids)

    def forward(self, ids):
        self.calls.append(ids.clone())
        return self.model(ids)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = MaskGITTransformer(CONFIG).eval()
    with torch.no_grad():  # larger weights than the init, so that class tokens matter
        model.word_embeddings.weight.normal_(0, 0.3)
    return model


def _canvas(batch=2, label=1):
    ids = torch.full((batch, 10), MASK_ID, dtype=torch.long)
    ids[:, 0] = CONFIG.codebook_size + label
    return ids


def test_vocabulary_layout_with_a_null_class():
    assert CONFIG.null_class_id == 19 and CONFIG.mask_token_id == 20 and CONFIG.vocab_size == 21
    official = CONFIG.replace(null_class=False)
    assert official.null_class_id is None and official.mask_token_id == 19 and official.vocab_size == 20


@pytest.mark.parametrize("sampler_class", [ConfidenceSampler, HaltonSampler, RandomSampler])
def test_guidance_zero_is_exactly_unguided(model, sampler_class):
    plain = run_sampler(model, _canvas(), sampler_class(num_steps=4), SeededNoise([1, 2]))
    zero = run_sampler(model, _canvas(), sampler_class(num_steps=4, guidance=0.0, guidance_schedule="linear"),
                       SeededNoise([1, 2]))
    assert torch.equal(plain, zero)
    plain_steps, guided_steps = [], []
    run_sampler(model, _canvas(), sampler_class(num_steps=4), SeededNoise([1, 2]), callback=plain_steps.append)
    run_sampler(model, _canvas(), sampler_class(num_steps=4, guidance=3.0), SeededNoise([1, 2]),
                callback=guided_steps.append)
    assert (plain_steps[0].logits - guided_steps[0].logits).abs().max() > 1e-3


def test_guidance_batches_both_passes_and_mixes_the_logits(model):
    recording = Recording(model)
    records = []
    sampler = ConfidenceSampler(num_steps=3, guidance=2.0, guidance_schedule="linear")
    run_sampler(recording, _canvas(), sampler, SeededNoise([3, 4]), callback=records.append)
    # Step 0 of a linear ramp has scale 0: one plain pass; then both passes in one forward.
    assert [call.shape[0] for call in recording.calls] == [2, 4, 4]
    assert [r.guidance for r in records] == [0.0, 1.0, 2.0]
    both = recording.calls[2]
    assert (both[:2, 0] == CONFIG.codebook_size + 1).all() and (both[2:, 0] == CONFIG.null_class_id).all()
    assert torch.equal(both[:2, 1:], both[2:, 1:])
    with torch.no_grad():
        logits = model(both)[..., : CONFIG.codebook_size].float()
    conditional, unconditional = logits.chunk(2)
    torch.testing.assert_close(records[2].logits, conditional + 2.0 * (conditional - unconditional))


def test_guidance_that_overflows_the_logits_is_refused(model):
    # 3e38 * (cond - uncond) is inf in float32 (this model's gaps reach 3); it used to be
    # sampled, with NaN confidences.
    records = []
    with pytest.raises(ValueError, match=r"guidance 3e\+38 overflowed the logits to inf or NaN at step 0"):
        run_sampler(model, _canvas(), ConfidenceSampler(num_steps=3, guidance=3e38), SeededNoise([1, 2]),
                    callback=records.append)
    assert records == []  # refused before the step was sampled or reported
    # A linear ramp meets the overflow at a later step, and names it.
    with pytest.raises(ValueError, match=r"guidance 1.5e\+38 overflowed .* at step 1"):
        run_sampler(model, _canvas(), ConfidenceSampler(num_steps=3, guidance=3e38, guidance_schedule="linear"),
                    SeededNoise([1, 2]))


def test_non_finite_logits_from_the_model_are_named_as_such(model):
    class Broken(torch.nn.Module):
        config = model.config

        def forward(self, ids):
            logits = model(ids)
            logits[0, 1, 0] = float("nan")
            return logits

    with pytest.raises(ValueError, match="the transformer returned non-finite logits"):
        run_sampler(Broken(), _canvas(), ConfidenceSampler(num_steps=2, guidance=1.0), SeededNoise([1, 2]))


@settings(max_examples=40, deadline=None)
@given(st.one_of(st.sampled_from([0.0, 1e30, 1e37, 3e38, 3.4028234663852886e38]), st.floats(0, 3.4028234663852886e38)),
       st.sampled_from(["constant", "linear"]))
def test_any_guidance_either_decodes_cleanly_or_is_refused(model, scale, schedule):
    records = []
    sampler = ConfidenceSampler(num_steps=4, guidance=scale, guidance_schedule=schedule)
    try:
        final = run_sampler(model, _canvas(), sampler, SeededNoise([3, 4]), callback=records.append)
    except ValueError as error:
        assert "overflowed the logits" in str(error)
        return
    for record, remaining in zip(records[:-1], num_masked_per_step("cosine", 4, 9)):
        assert bool(torch.isfinite(record.logits).all())
        assert ((record.next_ids == MASK_ID).sum(-1) == remaining).all()
    assert (final[:, -1, 1:] >= 0).all() and (final[:, -1, 1:] < CONFIG.codebook_size).all()


def test_guidance_needs_a_null_class():
    # Sampler.check_guidance, the one check (the engine, the CLI and the runs call it).
    official = MaskGITTransformer(CONFIG.replace(null_class=False)).eval()
    with pytest.raises(ValueError, match="guidance 1 needs a model trained with class dropout.*use guidance 0"):
        run_sampler(official, _canvas(), ConfidenceSampler(num_steps=2, guidance=1.0), SeededNoise([0, 1]))
    # A guidance schedule that is zero at every step is no guidance: allowed.
    run_sampler(official, _canvas(), ConfidenceSampler(num_steps=1, guidance=0.0), SeededNoise([0, 1]))


@pytest.mark.parametrize("class_token", [MASK_ID, CONFIG.mask_token_id, CONFIG.null_class_id])
def test_the_class_slot_is_never_sampled(model, class_token):
    ids = _canvas()
    ids[:, 0] = class_token
    records = []
    final = run_sampler(model, ids, RandomSampler(num_steps=3), SeededNoise([5, 6]), callback=records.append)
    assert (final[:, :, 0] == class_token).all()
    for record in records:
        assert not record.masking[:, 0].any()
    assert (final[:, -1, 1:] >= 0).all() and (final[:, -1, 1:] < CONFIG.codebook_size).all()


def test_ids_are_checked_once_at_the_boundary(model):
    recording = Recording(model)
    ids = _canvas()
    ids[0, 3] = CONFIG.vocab_size  # out of range
    with pytest.raises(ValueError, match=r"ids must be in \[-1, 21\)"):
        run_sampler(recording, ids, ConfidenceSampler(num_steps=2), SeededNoise([0, 1]))
    assert recording.calls == []
    with pytest.raises(ValueError, match="start_step"):
        run_sampler(recording, _canvas(), ConfidenceSampler(num_steps=2), SeededNoise([0, 1]), start_step=2)


# -- context reuse ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_layer():
    """A one-layer model whose logits depend strongly on the context. Its keys and values are
    functions of each position's own token, so a cheap evaluation is exact, not an approximation:
    context reuse must then fix exactly the tokens that full evaluations fix."""
    torch.manual_seed(1)
    model = MaskGITTransformer(CONFIG).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.normal_(0, 0.5)
    assert model.config.num_layers == 1
    return model


def _noise(kind: str, rows: int):
    if kind == "seeded":
        return SeededNoise(list(range(7, 7 + rows)))
    if kind == "generator":
        return GeneratorNoise(torch.Generator().manual_seed(3))
    def injected(step, kind, shape):  # a function of (step, kind), as the official noise is
        generator = torch.Generator().manual_seed(2 * step + (kind == "choice"))
        return -torch.log(-torch.log(torch.rand(shape, generator=generator)))

    return InjectedNoise(injected)


# Not the random order with one generator: at a cheap step it draws its choice before the tokens
# (to compute only the positions it fixes), so the generator's stream is used in another order.
@pytest.mark.parametrize("sampler_class, noise", [
    (sampler_class, noise) for sampler_class in (ConfidenceSampler, HaltonSampler, RandomSampler)
    for noise in ("seeded", "generator", "injected") if (sampler_class, noise) != (RandomSampler, "generator")
])
@pytest.mark.parametrize("guidance, schedule", [(0.0, "constant"), (2.0, "linear")])
@pytest.mark.parametrize("start_step", [0, 2])
def test_context_reuse_on_an_exact_cache_makes_the_same_tokens(one_layer, noise, sampler_class, guidance, schedule,
                                                               start_step):
    ids = _canvas(3)
    ids[1, 2:5] = torch.tensor([3, 4, 5])  # given tokens, in one row only: rows differ in what they compute
    runs, decisions = {}, {}
    for reuse in (0, 1, 3):
        sampler = sampler_class(num_steps=6, guidance=guidance, guidance_schedule=schedule, context_reuse=reuse)
        records = []
        runs[reuse] = run_sampler(one_layer, ids, sampler, _noise(noise, 3), start_step=start_step,
                                  callback=records.append)
        decisions[reuse] = torch.stack([record.next_ids for record in records])
    for reuse in (1, 3):
        # Every step fixes the same tokens, and the result is the same.
        assert torch.equal(decisions[reuse], decisions[0])
        if sampler_class.reads_predictions:
            assert torch.equal(runs[reuse], runs[0])
        else:
            # Halton and random order compute at a cheap step only the positions they fix: the
            # draws at the others (re-masked at once) come from the last logits computed there.
            assert torch.equal(runs[reuse][:, -1], runs[0][:, -1])


@pytest.mark.parametrize("sampler_class", [ConfidenceSampler, HaltonSampler, RandomSampler,
                                           functools.partial(ConfidenceSampler, reuse_group=True)],
                         ids=["confidence", "halton", "random", "confidence-group"])
@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_context_reuse_keeps_every_invariant_of_decoding(model, sampler_class, guidance):
    ids = _canvas(3)
    ids[:, 4:6] = torch.tensor([7, 8])
    sampler = sampler_class(num_steps=6, guidance=guidance, guidance_schedule="linear", context_reuse=2)
    records = []
    final = run_sampler(model, ids, sampler, SeededNoise([1, 2, 3]), start_step=1, callback=records.append)
    previous = ids
    for record, remaining in zip(records, num_masked_per_step("cosine", 6, 7, start_step=1)):
        assert ((record.next_ids == MASK_ID).sum(-1) == remaining).all()
        known = previous != MASK_ID
        assert torch.equal(record.sampled_ids[known], previous[known])
        assert bool(torch.isfinite(record.logits).all())
        previous = record.next_ids
    assert (final[:, -1, 1:] >= 0).all() and (final[:, -1, 1:] < CONFIG.codebook_size).all()
    # On a model whose context matters, a cheap step is an approximation: other logits than a full one.
    official = []
    run_sampler(model, ids, sampler.replace(context_reuse=0), SeededNoise([1, 2, 3]), start_step=1,
                callback=official.append)
    cheap = [i for i, full in enumerate(sampler.evaluation_plan(1)) if not full]
    assert cheap and torch.equal(records[0].logits, official[0].logits)
    assert max((records[i].logits - official[i].logits).abs().max() for i in cheap) > 1e-3


class CountingRows:
    """Wraps a transformer that keeps its context and records how many positions each call computes."""

    def __init__(self, model: MaskGITTransformer) -> None:
        self.model, self.config, self.widths = model, model.config, []

    def context_cache(self):
        return self.model.context_cache()

    def codebook_logits(self, ids, *, cache=None, positions=None):
        self.widths.append(ids.shape[1] if positions is None else positions.shape[1])
        return self.model.codebook_logits(ids, cache=cache, positions=positions)


@pytest.mark.parametrize("num_steps, reuse, start_step", [(8, 2, 0), (10, 3, 0), (12, 2, 2), (6, 1, 0)])
def test_reuse_group_fixes_at_cheap_steps_only_the_group_its_full_evaluation_chose(model, num_steps, reuse,
                                                                                    start_step):
    # ReCAP's rule: a full evaluation ranks the masked tokens once and picks the group that it and
    # its cheap steps fix; the cheap steps compute only the group (its tokens still masked and those
    # decided since) and fix only its tokens. A group reaching the final step is every masked token.
    config = TransformerConfig(codebook_size=16, num_classes=3, hidden_size=32, num_layers=2, num_heads=2,
                               intermediate_size=64, latent_size=6, dropout=0.0)
    torch.manual_seed(4)
    counting = CountingRows(MaskGITTransformer(config).eval())
    ids = torch.full((1, 37), MASK_ID, dtype=torch.long)
    ids[0, 0] = config.codebook_size + 1
    sampler = ConfidenceSampler(num_steps=num_steps, context_reuse=reuse, reuse_group=True)
    noise, records = SeededNoise([11]), []
    run_sampler(counting, ids, sampler, noise, start_step=start_step, callback=records.append)
    plan = sampler.evaluation_plan(start_step)
    fulls = [i for i, full in enumerate(plan) if full] + [len(plan)]
    checked = 0
    for first, following in zip(fulls, fulls[1:]):
        last = min(following, len(plan) - 1) - 1  # the group's last step before the final one
        full = records[first]
        at_full = full.unknown[0].sum()
        # The group, from the full step's own confidences and its noise: the masked tokens left
        # in place when as many are re-masked as remain masked after the group's last step.
        temperature = torch.tensor(sampler.choice_temperature) * (1 - torch.tensor((full.step + 1) / num_steps))
        probs = selected_probs(full.logits, full.sampled_ids, full.unknown)
        choice = noise.choice(full.step, tuple(full.unknown.shape), full.unknown.device)
        remaining = records[last].mask_len if last >= first else full.mask_len
        group = full.unknown & ~mask_by_random_topk(remaining, probs, temperature, choice)
        for k in range(first + 1, last + 1):
            fixed = records[k].unknown & ~records[k].masking
            assert fixed.any() and not (fixed & ~group).any()
            assert counting.widths[k] == int(group.sum()) < int(at_full)
            checked += 1
        if last >= first:  # the whole group is fixed by the group's last step, and nothing else
            assert torch.equal(full.unknown & (records[last].next_ids != MASK_ID), group)
    assert checked
    # A cheap final step computes every token masked at its full evaluation (a full one, all).
    assert counting.widths[-1] == (ids.shape[1] if plan[-1] else int(records[fulls[-2]].unknown.sum()))


def test_reuse_group_without_context_reuse_is_the_official_decoding(model):
    ids = _canvas(2)
    runs = [run_sampler(model, ids, ConfidenceSampler(num_steps=5, reuse_group=group), SeededNoise([3, 4]))
            for group in (False, True)]
    assert torch.equal(runs[0], runs[1])


def test_context_reuse_needs_a_transformer_that_keeps_its_context(model):
    with pytest.raises(ValueError, match="context_reuse needs a transformer that keeps its context"):
        run_sampler(lambda ids: model(ids), _canvas(), ConfidenceSampler(num_steps=3, context_reuse=1),
                    SeededNoise([0, 1]), codebook_size=CONFIG.codebook_size)
