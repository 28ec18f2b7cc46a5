"""The official parallel decoder: exact parity with the JAX traces, and its invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import load_npz
from maskgit.sampling import (
    MASK_ID,
    SCHEDULES,
    DecodeStep,
    decode,
    gumbel_noise,
    num_masked_per_step,
)

FIXTURES = ["decode_small_generate.npz", "decode_small_edit.npz"]



def _replay_noise(data):
    """The official Gumbel noise of each executed step, keyed by the absolute step index."""
    steps = data["trace_step"].tolist()
    calls = []

    def noise(step, kind, shape):
        calls.append((step, kind, shape))
        i = steps.index(step)
        array = data["trace_gumbel_sample" if kind == "sample" else "trace_gumbel_choice"][i]
        return torch.from_numpy(array)

    return noise, calls


def _official_decode(model, data, input_tokens=None, **kwargs):
    noise, calls = _replay_noise(data)
    records: list[DecodeStep] = []
    ids = torch.from_numpy(data["input_tokens"] if input_tokens is None else input_tokens)
    final = decode(
        model,
        ids,
        num_steps=int(data["num_iter"]),
        start_step=int(data["start_iter"]),
        choice_temperature=float(data["choice_temperature"]),
        noise=noise,
        callback=records.append,
        **kwargs,
    )
    return final, records, calls


@pytest.mark.parametrize("name", FIXTURES)
def test_per_step_logits_match_trace(transformer_form, name):
    data = load_npz(name)
    cur = torch.from_numpy(data["trace_cur_ids"]).long()
    steps, batch, length = cur.shape
    with torch.no_grad():
        logits = transformer_form(cur.reshape(steps * batch, length))
    logits = logits[..., : int(data["codebook_size"])].reshape(data["trace_logits"].shape)
    np.testing.assert_allclose(logits.numpy(), data["trace_logits"], atol=5e-5, rtol=1e-5)


@pytest.mark.parametrize("name", FIXTURES)
def test_replayed_noise_reproduces_official_run(transformer_form, name):
    data = load_npz(name)
    final, records, calls = _official_decode(transformer_form, data)

    assert final.dtype == torch.int64
    np.testing.assert_array_equal(final.numpy(), data["final_seqs_official"])

    steps = data["trace_step"].tolist()
    assert [r.step for r in records] == steps
    sample_shape = tuple(data["trace_logits"].shape[1:])
    choice_shape = tuple(data["trace_cur_ids"].shape[1:])
    expected_calls = [[(s, "sample", sample_shape), (s, "choice", choice_shape)] for s in steps]
    assert calls == [call for pair in expected_calls for call in pair]
    for i, record in enumerate(records):
        # The step's input is the previous step's output, so each logits row saw trace_cur_ids[i].
        previous = torch.from_numpy(data["input_tokens"]) if i == 0 else records[i - 1].next_ids
        np.testing.assert_array_equal(previous.numpy(), data["trace_cur_ids"][i])
        assert record.logits.dtype == torch.float32
        np.testing.assert_allclose(
            record.logits.numpy(), data["trace_logits"][i], atol=5e-5, rtol=1e-5
        )
        np.testing.assert_array_equal(record.sampled_ids.numpy(), data["trace_sampled_ids"][i])
        probs, expected_probs = record.selected_probs.numpy(), data["trace_selected_probs"][i]
        finite = np.isfinite(expected_probs)
        np.testing.assert_array_equal(np.isfinite(probs), finite)
        np.testing.assert_allclose(probs[finite], expected_probs[finite], atol=1e-5, rtol=0)
        # Bit for bit, and one value per row.
        np.testing.assert_array_equal(
            record.mask_ratio.numpy(), np.full(2, data["trace_mask_ratio"][i])
        )
        np.testing.assert_array_equal(record.mask_len.numpy(), data["trace_mask_len"][i])
        np.testing.assert_array_equal(record.masking.numpy(), data["trace_masking"][i])
        np.testing.assert_array_equal(record.next_ids.numpy(), data["trace_next_ids"][i])


def test_mask_spelled_as_last_vocab_id(small_transformer):
    # vocab - 1 is the canonical mask id; it must decode exactly like -1. The rows before
    # start_step are copies of the input as given.
    data = load_npz("decode_small_edit.npz")
    mask_id = small_transformer.config.mask_token_id
    spelled = np.where(data["input_tokens"] == -1, mask_id, data["input_tokens"])
    final, _, _ = _official_decode(small_transformer, data, input_tokens=spelled)
    start = int(data["start_iter"])
    expected = data["final_seqs_official"].astype(np.int64)
    expected[:, :start] = spelled[:, None]
    np.testing.assert_array_equal(final.numpy(), expected)


def test_bf16_logits_are_sampled_in_float32(small_transformer):
    records = []
    ids = torch.full((2, 65), -1)
    ids[:, 0] = 64 + 3
    final = decode(
        lambda x: small_transformer(x).bfloat16(),
        ids,
        num_steps=4,
        codebook_size=64,
        generator=torch.Generator().manual_seed(0),
        callback=records.append,
    )
    assert len(records) == 4
    assert all(r.logits.dtype == r.selected_probs.dtype == torch.float32 for r in records)
    assert final[:, -1, 1:].min() >= 0 and final[:, -1, 1:].max() < 64


def test_training_mode_model_decodes_without_dropout(small_transformer):
    ids = torch.full((2, 65), -1)
    ids[:, 0] = 64 + 1

    def run():
        generator = torch.Generator().manual_seed(3)
        return decode(small_transformer, ids, num_steps=6, generator=generator)

    reference = run()
    small_transformer.train()
    try:
        with torch.no_grad():  # dropout 0.1 is live in training mode...
            assert not torch.equal(small_transformer(ids), small_transformer(ids))
        again = run()  # ...but decode switches it off
        assert small_transformer.training  # and restores the mode
    finally:
        small_transformer.eval()
    assert torch.equal(reference, again)


# --- invariants, with a cheap stand-in for the transformer ------------------------------------


CODEBOOK = 16
LENGTH = 1 + 25


class RandomLogits:
    """ids (B, L) → logits (B, L, CODEBOOK + extra) that depend on the ids and the positions."""

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.table = torch.randn(CODEBOOK + 8, CODEBOOK + 3, generator=g) * 2
        self.position = torch.randn(LENGTH, CODEBOOK + 3, generator=g)
        self.calls = 0

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        mapped = torch.where(ids < 0, CODEBOOK + 7, ids)
        context = self.table[mapped].mean(dim=1, keepdim=True)
        return self.table[mapped] + self.position + context


def _invariant_input() -> torch.Tensor:
    # Rows with 25, 12, 3 and 0 unknown tokens; class tokens ≥ CODEBOOK at position 0.
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, CODEBOOK, (4, LENGTH), generator=g)
    ids[:, 0] = CODEBOOK + torch.arange(4)
    ids[0, 1:] = -1
    ids[1, 1::2] = -1
    ids[2, [3, 9, 20]] = -1
    return ids


def _check_invariants(final, records, ids, schedule, num_steps, start_step):
    unknown = ids == MASK_ID
    n0 = unknown.sum(-1).tolist()
    assert final.shape == (ids.shape[0], num_steps, ids.shape[1])
    assert [r.step for r in records] == list(range(start_step, num_steps))
    assert torch.equal(final[:, :start_step], ids.unsqueeze(1).expand(-1, start_step, -1))
    for step in range(start_step, num_steps):
        # Given tokens never change; new tokens are image tokens.
        assert torch.equal(final[:, step][~unknown], ids[~unknown])
        filled = final[:, step][unknown]
        assert bool(((filled >= 0) & (filled < CODEBOOK)).all())
    assert bool((final[:, -1] != MASK_ID).all())
    expected = [
        num_masked_per_step(schedule, num_steps, row_n0, start_step=start_step) for row_n0 in n0
    ]
    for i, record in enumerate(records):
        masked = record.next_ids == MASK_ID
        # Only originally unknown tokens are ever re-masked, and exactly the scheduled number.
        assert not bool((masked & ~unknown).any())
        counts = masked.sum(-1).tolist()
        assert counts == [row[i] for row in expected], (schedule, num_steps, record.step)
        assert torch.equal(record.sampled_ids, final[:, record.step])


@pytest.mark.parametrize("schedule", [*SCHEDULES, "pow1.5"])
def test_scheduled_number_masked_after_every_step(schedule):
    ids = _invariant_input()
    model = RandomLogits()
    for num_steps in range(1, 33):
        for start_step in sorted({0, num_steps // 2}):
            records = []
            final = decode(
                model,
                ids,
                num_steps=num_steps,
                start_step=start_step,
                schedule=schedule,
                codebook_size=CODEBOOK,
                generator=torch.Generator().manual_seed(num_steps),
                callback=records.append,
            )
            _check_invariants(final, records, ids, schedule, num_steps, start_step)


def test_seed_reproduces_and_different_seeds_differ():
    ids = _invariant_input()

    def run(seed):
        return decode(RandomLogits(), ids, num_steps=8, codebook_size=CODEBOOK,
                      generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5)[:, -1], run(6)[:, -1])
    # Noise comes only from the generator: the global RNG state does not matter.
    torch.manual_seed(0)
    first = run(7)
    torch.manual_seed(1)
    assert torch.equal(first, run(7))


def test_gumbel_noise_is_standard_gumbel_and_seeded():
    generator = torch.Generator().manual_seed(0)
    noise = gumbel_noise((200_000,), generator)
    assert noise.dtype == torch.float32 and bool(torch.isfinite(noise).all())
    # Gumbel(0, 1): mean = Euler's gamma, variance = pi^2 / 6.
    assert float(noise.mean()) == pytest.approx(0.5772, abs=0.01)
    assert float(noise.var()) == pytest.approx(np.pi**2 / 6, abs=0.03)
    again = gumbel_noise((200_000,), torch.Generator().manual_seed(0))
    assert torch.equal(noise, again)


def test_zero_temperature_zero_noise_is_greedy_confidence():
    # With zero Gumbel noise the sample is the argmax and re-masking keeps the most likely tokens.
    ids = _invariant_input()
    model = RandomLogits()
    records = []
    decode(model, ids, num_steps=5, codebook_size=CODEBOOK, choice_temperature=0.0,
           noise=lambda step, kind, shape: torch.zeros(shape), callback=records.append)
    first = records[0]
    unknown = ids == MASK_ID
    expected = torch.where(unknown, first.logits.argmax(-1), ids)
    assert torch.equal(first.sampled_ids, expected)
    for row in range(ids.shape[0]):
        kept = first.selected_probs[row][unknown[row] & ~first.masking[row]]
        dropped = first.selected_probs[row][first.masking[row]]
        if len(kept) and len(dropped):
            assert float(kept.min()) >= float(dropped.max())


def test_bad_input():
    ids = _invariant_input()
    model = RandomLogits()
    kwargs = {"codebook_size": CODEBOOK}
    with pytest.raises(ValueError, match="num_steps must be at least 1"):
        decode(model, ids, num_steps=0, **kwargs)
    with pytest.raises(ValueError, match=r"start_step must be in \[0, num_steps=4\)"):
        decode(model, ids, num_steps=4, start_step=4, **kwargs)
    with pytest.raises(ValueError, match="start_step"):
        decode(model, ids, num_steps=4, start_step=-1, **kwargs)
    with pytest.raises(ValueError, match=r"shape \(B, L\)"):
        decode(model, ids[0], num_steps=4, **kwargs)
    with pytest.raises(ValueError, match="integer torch.Tensor"):
        decode(model, ids.float(), num_steps=4, **kwargs)
    with pytest.raises(ValueError, match="unknown mask schedule"):
        decode(model, ids, num_steps=4, schedule="zigzag", **kwargs)
    with pytest.raises(ValueError, match="choice_temperature"):
        decode(model, ids, num_steps=4, choice_temperature=-1.0, **kwargs)
    with pytest.raises(ValueError, match="codebook_size is required"):
        decode(model, ids, num_steps=4)
    with pytest.raises(ValueError, match=r"logits of shape .*expected \(4, 26, >= 64\)"):
        decode(model, ids, num_steps=4, codebook_size=64)
    with pytest.raises(ValueError, match=r"noise\(0, 'sample'.*returned shape \(3,\)"):
        decode(model, ids, num_steps=4, noise=lambda step, kind, shape: torch.zeros(3), **kwargs)
    assert model.calls == 2  # validation happens before the model runs, shape errors after one call
