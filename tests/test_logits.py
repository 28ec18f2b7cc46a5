"""sampling/logits.py: each step's logits; with context reuse, which positions a cheap step computes,
what it keeps, and guidance halves that each reuse their own context."""

from __future__ import annotations

import copy

import pytest
import torch

from maskgit import MaskGITTransformer, TransformerConfig
from maskgit.sampling import MASK_ID
from maskgit.sampling.logits import StepLogits, fresh_positions

CONFIG = TransformerConfig(codebook_size=16, num_classes=3, hidden_size=32, num_layers=2, num_heads=2,
                           intermediate_size=64, latent_size=3, dropout=0.0, null_class=True)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = MaskGITTransformer(CONFIG).eval()
    with torch.no_grad():  # larger weights than the init, so that the class and the context matter
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.normal_(0, 0.3)
    return model


class Recording:
    """A transformer that records every call's keywords: the full evaluations (a cache, no positions)
    and the cheap ones (positions)."""

    def __init__(self, model: MaskGITTransformer) -> None:
        self.model, self.config, self.calls = model, model.config, []

    def context_cache(self):
        return self.model.context_cache()

    def codebook_logits(self, ids, *, cache=None, positions=None):
        self.calls.append((ids.clone(), cache, None if positions is None else positions.clone()))
        return self.model.codebook_logits(ids, cache=cache, positions=positions)


def _current(rows: int = 2) -> torch.Tensor:
    ids = torch.tensor([[0, 3, 5, 7, 1, 2, 9, 4, 6, 8]] * rows)
    ids[:, 0] = CONFIG.codebook_size + torch.arange(rows) % CONFIG.num_classes
    ids[0, [2, 4, 5, 9]] = MASK_ID
    ids[1, [1, 2, 3, 6, 7]] = MASK_ID
    return ids


def test_fresh_positions_list_each_rows_positions_and_pad_with_a_repeat():
    unknown = torch.tensor([[False, True, False, True, True],
                            [False, False, True, False, False],
                            [False, False, False, False, False]])
    assert fresh_positions(unknown).tolist() == [[1, 3, 4], [2, 2, 2], [0, 0, 0]]
    assert fresh_positions(torch.zeros(2, 4, dtype=torch.bool)).tolist() == [[0], [0]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("scale", [0.0, 2.0])
def test_a_cheap_step_on_an_unchanged_context_gives_the_full_steps_logits(model, scale, dtype):
    model = copy.deepcopy(model).to(dtype)
    tolerance = dict(atol=2e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=3e-2, rtol=2e-2)
    current = _current()
    reused = StepLogits(model, CONFIG.codebook_size, CONFIG.null_class_id, plan=(True, False, False))
    with torch.no_grad():
        full = reused(0, 0, current, scale)
        cheap = reused(1, 1, current, scale)
        again = reused(2, 2, current, scale)
        official = StepLogits(model, CONFIG.codebook_size, CONFIG.null_class_id)(0, 0, current, scale)
    assert torch.equal(full, official)
    # The guided batch holds both halves, each with its own keys and values: the unconditional
    # half's class slot (the null class) changes every key and value of its row.
    cache = reused.cache.layers[0].key
    assert cache.shape[0] == (2 if scale else 1) * current.shape[0]
    if scale:
        assert (cache[:2] - cache[2:]).abs().max() > 1e-2
    torch.testing.assert_close(cheap, full, **tolerance)
    torch.testing.assert_close(again, full, **tolerance)
    assert cheap is not full and again is not cheap  # each step's own tensor (a callback may hold the last)


def test_cheap_steps_compute_the_positions_masked_at_the_last_full_one(model):
    recording = Recording(model)
    step_logits = StepLogits(recording, CONFIG.codebook_size, CONFIG.null_class_id, plan=(True, False, True, False))
    current = _current()
    with torch.no_grad():
        step_logits(0, 0, current, 1.5)
        decided = current.clone()
        decided[0, 2], decided[1, 3] = 11, 12  # decided at step 0
        step_logits(1, 1, decided, 1.5)
        decided[0, 4] = 13
        step_logits(2, 2, decided, 1.5)
        logits = step_logits(3, 3, decided, 1.5)
    (_, cache0, none0), (ids1, cache1, positions1), (_, cache2, _), (_, cache3, positions3) = recording.calls
    assert none0 is None and cache1 is cache0 and cache2 is not cache0 and cache3 is cache2
    # Both halves: the masked positions of the full evaluation, row 0 padded by repeating its first.
    assert positions1.tolist() == [[2, 4, 5, 9, 2], [1, 2, 3, 6, 7]] * 2
    assert (ids1[2:, 0] == CONFIG.null_class_id).all()
    assert positions3.tolist() == [[5, 9, 5, 5], [1, 2, 6, 7]] * 2
    # The positions not computed keep the last step's logits.
    assert torch.equal(logits[0, 2], step_logits.logits[0, 2]) and logits is step_logits.logits


def test_a_sampler_that_reads_only_what_it_fixes_gets_only_that_computed(model):
    recording = Recording(model)
    step_logits = StepLogits(recording, CONFIG.codebook_size, None, plan=(True, False, False))
    current = _current()
    with torch.no_grad():
        full = step_logits(0, 0, current, 0.0)
        decided = current.clone()
        decided[0, 2] = 11  # decided at step 0
        needed = torch.zeros_like(current, dtype=torch.bool)
        needed[0, 9] = needed[1, 6] = True  # what step 1 fixes
        cheap = step_logits(1, 1, decided, 0.0, needed)
    assert recording.calls[1][2].tolist() == [[2, 9], [6, 6]]
    # Masked positions that are neither decided nor fixed keep their logits, stale.
    assert torch.equal(cheap[0, 4], full[0, 4]) and torch.equal(cheap[1, 1], full[1, 1])
    assert not torch.equal(cheap[0, 9], full[0, 9])


def test_context_reuse_needs_a_transformer_that_keeps_its_context(model):
    def plain(ids):
        return model(ids)

    with pytest.raises(ValueError, match="context_reuse needs a transformer that keeps its context.*function"):
        StepLogits(plain, CONFIG.codebook_size, None, plan=(True, False))
    # A plan of full evaluations only is the official path: any callable runs it.
    step_logits = StepLogits(plain, CONFIG.codebook_size, None, plan=(True, True))
    with torch.no_grad():
        assert step_logits(1, 1, _current(), 0.0).shape == (2, 10, CONFIG.codebook_size)
