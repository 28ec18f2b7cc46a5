"""Transformer parity with the official fixtures (on the plain and the fused form), input checks, and
context reuse (cheap evaluations against the full ones)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from conftest import load_npz, runs_as_itself
from maskgit import MaskGITTransformer, TransformerConfig, decode
from maskgit.checkpoints.official import transformer_scopes
from maskgit.models.inference import FusedLayer, FusedLinear
from maskgit.sampling import MASK_ID

LOGIT_TOL = dict(atol=5e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def io():
    return load_npz("transformer_small_io.npz")


def test_logits_match_official(transformer_form, io):
    with torch.no_grad():
        logits = transformer_form(torch.from_numpy(io["input_ids"]))
    assert logits.shape == (3, 65, 75)
    np.testing.assert_allclose(logits.numpy(), io["logits"], **LOGIT_TOL)


def test_minus_one_and_last_row_are_the_same_mask(small_transformer, io):
    ids = torch.from_numpy(io["input_ids"]).long()
    assert (ids == -1).any()
    with torch.no_grad():
        torch.testing.assert_close(
            small_transformer(ids), small_transformer(torch.where(ids == -1, 74, ids)), rtol=0, atol=0
        )


def test_every_intermediate_matches_official(transformer_form, io):
    """Every official intermediate against the module we map it to: all of them on the plain form;
    on the fused form, those of the modules that still run as themselves (the embeddings, each
    layer's output, the head's norm and the logits), as the layers inside a layer run fused."""
    transformer = transformer_form
    modules = dict(transformer.named_modules())
    scopes = {s.official: s.ours for s in transformer_scopes(transformer.config) if s.kind != "leaf"}
    # Scopes whose output is the output of a module of ours that has another official name.
    for n in range(transformer.config.num_layers):
        layer = f"TransformerLayer_{n}"
        scopes[layer] = f"layers.{n}"
        scopes[f"{layer}/Attention_0"] = f"layers.{n}.attention_norm"
        scopes[f"{layer}/Attention_0/self_attention"] = f"layers.{n}.attention"
        scopes[f"{layer}/Mlp_0"] = f"layers.{n}.mlp_norm"
    scopes["Embed_0"] = "embedding_norm"
    captured: dict[str, torch.Tensor] = {}
    hidden = set()
    handles = []
    for key in io:
        official = key.removeprefix("inter:")
        if key.startswith("inter:") and official in scopes:
            if not runs_as_itself(transformer, scopes[official]):
                hidden.add(key)
                continue
            module = modules[scopes[official]]
            handles.append(module.register_forward_hook(lambda m, i, o, key=key: captured.__setitem__(key, o)))
    try:
        with torch.no_grad():
            logits = transformer(torch.from_numpy(io["input_ids"][:1]))
    finally:
        for handle in handles:
            handle.remove()
    captured["inter:MlmLayer_0"] = captured["inter:MlmLayer_0/mlm_bias"] = logits
    captured["inter:Embed_0/position_embeddings"] = transformer.position_embeddings.weight[None, :65]
    for key, output in captured.items():
        expected = io[key]
        np.testing.assert_allclose(output.detach().reshape(expected.shape).numpy(), expected, **LOGIT_TOL, err_msg=key)
    assert set(captured) == {k for k in io if k.startswith("inter:")} - hidden
    assert not hidden or any(isinstance(m, FusedLayer) for m in transformer.modules())
    assert {"inter:TransformerLayer_1", "inter:Embed_0", "inter:MlmLayer_0/mlm_ln"} <= set(captured)


def test_shorter_sequences_use_the_leading_positions(small_transformer, io):
    ids = torch.from_numpy(io["input_ids"][:1]).long()
    with torch.no_grad():
        full = small_transformer(ids)
    assert small_transformer(ids[:, :10]).shape == (1, 10, 75)
    assert not torch.allclose(full[:, :10], small_transformer(ids[:, :10]).detach())  # attention sees all


@pytest.mark.parametrize("bad", [-2, 75])
def test_ids_outside_the_vocabulary_are_rejected(small_transformer, bad):
    # Values are checked once at the boundary (check_ids, which the samplers call), not in
    # forward, which must not sync with the host.
    ids = torch.zeros(1, 65, dtype=torch.long)
    ids[0, 3] = bad
    with pytest.raises(ValueError, match=r"\[-1, 75\)"):
        small_transformer.check_ids(ids)
    with pytest.raises(ValueError, match=r"\[-1, 75\)"):
        decode(small_transformer, ids, num_steps=2)


def test_forward_reads_no_values_on_the_host(small_transformer, monkeypatch):
    # int()/item() on a tensor is a host sync on an accelerator; forward must not do it.
    def refuse(*args, **kwargs):
        raise AssertionError("forward synchronised with the host")

    monkeypatch.setattr(torch.Tensor, "item", refuse)
    monkeypatch.setattr(torch.Tensor, "__int__", refuse)
    monkeypatch.setattr(torch.Tensor, "__bool__", refuse)
    with torch.no_grad():
        assert small_transformer(torch.zeros(2, 65, dtype=torch.long)).shape == (2, 65, 75)


def test_too_long_sequences_are_rejected(small_transformer):
    with pytest.raises(ValueError, match=r"\[1, 65\]"):
        small_transformer(torch.zeros(1, 66, dtype=torch.long))


def test_dropout_only_in_training_mode():
    model = MaskGITTransformer(TransformerConfig(codebook_size=8, num_classes=2, hidden_size=32, num_layers=1,
                                                 num_heads=2, intermediate_size=64, latent_size=2, dropout=0.5))
    ids = torch.randint(0, 8, (2, 5))
    model.eval()
    torch.testing.assert_close(model(ids), model(ids))
    model.train()
    torch.manual_seed(0)
    assert not torch.allclose(model(ids), model(ids))


def test_cpu_training_attention_computes_what_the_fused_kernel_computes():
    # Training on the CPU writes attention out (its fused backward is slow); without dropout the
    # forward and the gradients must equal the fused kernel's, which eval and no-grad use.
    torch.manual_seed(0)
    model = MaskGITTransformer(TransformerConfig(codebook_size=16, num_classes=2, hidden_size=32, num_layers=2,
                                                 num_heads=4, intermediate_size=64, latent_size=3, dropout=0.0))
    ids = torch.randint(0, 16, (3, 10))
    written_out = model.train()(ids)
    written_out.square().sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):  # the reference kernel
        fused = model.eval()(ids)
        fused.square().sum().backward()
    torch.testing.assert_close(written_out, fused, rtol=1e-5, atol=1e-5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-5, msg=name)


# -- context reuse: full evaluations that keep the keys and values, cheap ones that reuse them ------

REUSE_CONFIG = TransformerConfig(codebook_size=24, num_classes=3, hidden_size=48, num_layers=3, num_heads=4,
                                 intermediate_size=96, latent_size=4, dropout=0.0, null_class=True)


def _random_transformer() -> MaskGITTransformer:
    torch.manual_seed(0)
    model = MaskGITTransformer(REUSE_CONFIG).eval()
    with torch.no_grad():  # larger weights and biases than the init, so that the context matters
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.normal_(0, 0.2)
    return model


def _reuse_model(kind: str, small_transformer) -> MaskGITTransformer:
    """``kind``: "<fixture|random>-<plain|fp32|bf16>", the model as loaded or prepared for inference
    in that precision (fused layers where oneDNN runs)."""
    from maskgit.models.inference import prepare_transformer

    source, form = kind.split("-")
    model = small_transformer if source == "fixture" else _random_transformer()
    if form != "plain":
        model = copy.deepcopy(model)
        prepare_transformer(model, form)
    return model


def _partly_masked(model: MaskGITTransformer, batch: int = 3) -> torch.Tensor:
    config = model.config
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, config.codebook_size, (batch, config.num_tokens + 1), generator=generator)
    ids[:, 0] = config.codebook_size + torch.arange(batch) % config.num_classes
    ids[:, 1:][torch.rand(batch, config.num_tokens, generator=generator) < 0.6] = MASK_ID
    return ids


REUSE_KINDS = ["fixture-plain", "fixture-fp32", "fixture-bf16", "random-plain", "random-fp32", "random-bf16"]


def _reuse_tolerance(kind: str) -> dict[str, float]:
    return dict(atol=2e-2, rtol=2e-2) if kind.endswith("bf16") else dict(atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", REUSE_KINDS)
def test_a_cheap_evaluation_of_an_unchanged_context_gives_the_full_logits(kind, small_transformer):
    model = _reuse_model(kind, small_transformer)
    if kind.endswith(("fp32", "bf16")) and FusedLinear.available(torch.float32 if kind.endswith("fp32") else torch.bfloat16):
        assert isinstance(model.layers[0], FusedLayer)
    ids = _partly_masked(model)
    positions = torch.tensor([[1, 2, 5, 9], [3, 3, 3, 4], [0, 7, 8, 16]])  # a row may list a position twice
    with torch.inference_mode():
        official = model.codebook_logits(ids)
        cache = model.context_cache()
        full = model.codebook_logits(ids, cache=cache)
        cheap = model.codebook_logits(ids, cache=cache, positions=positions)
        whole = model(ids, cache=cache, positions=positions)
    # Filling a cache changes nothing in the full evaluation.
    assert torch.equal(full, official)
    expected = full.gather(1, positions[..., None].expand(-1, -1, full.shape[-1]))
    assert cheap.shape == expected.shape == (3, 4, model.config.codebook_size)
    torch.testing.assert_close(cheap.float(), expected.float(), **_reuse_tolerance(kind))
    torch.testing.assert_close(whole[..., : model.config.codebook_size], cheap)


@pytest.mark.parametrize("kind", ["fixture-plain", "random-plain", "random-fp32", "random-bf16"])
def test_a_cheap_evaluation_recomputes_its_positions_and_reuses_the_rest(kind, small_transformer):
    model = _reuse_model(kind, small_transformer)
    ids = _partly_masked(model)
    length = ids.shape[1]
    changed = ids.clone()
    changed[:, 1:6] = torch.arange(5)  # new tokens at positions 1..5
    every = torch.arange(length).expand(3, -1).contiguous()
    some = torch.tensor([[1, 2, 3, 4, 5, 10]] * 3)
    with torch.inference_mode():
        cache = model.context_cache()
        model.codebook_logits(ids, cache=cache)
        # Every position recomputed: the full evaluation of the new ids, whatever the cache held.
        torch.testing.assert_close(model.codebook_logits(changed, cache=cache, positions=every).float(),
                                   model.codebook_logits(changed).float(), **_reuse_tolerance(kind))
        cache = model.context_cache()
        model.codebook_logits(ids, cache=cache)
        cheap = model.codebook_logits(changed, cache=cache, positions=some)
        # The inputs at other positions are not read: their cached keys and values stand for them.
        elsewhere = changed.clone()
        elsewhere[:, 11:] = (elsewhere[:, 11:] + 1) % model.config.codebook_size
        torch.testing.assert_close(model.codebook_logits(elsewhere, cache=cache, positions=some), cheap)
        # The new tokens are seen: they give other logits than the old context did.
        assert (cheap.float() - model.codebook_logits(ids).gather(
            1, some[..., None].expand(-1, -1, cheap.shape[-1])).float()).abs().max() > 1e-2


def test_context_reuse_arguments_are_checked(small_transformer):
    ids = torch.zeros(2, 65, dtype=torch.long)
    positions = torch.tensor([[1, 2], [3, 4]])
    other = MaskGITTransformer(TransformerConfig(codebook_size=8, num_classes=2, hidden_size=32, num_layers=1,
                                                 num_heads=2, intermediate_size=64, latent_size=2))
    with torch.no_grad():
        with pytest.raises(ValueError, match="need the cache of a full evaluation"):
            small_transformer(ids, positions=positions)
        with pytest.raises(ValueError, match="this model's context_cache"):
            small_transformer(ids, cache=other.context_cache())
        with pytest.raises(ValueError, match="needs a full evaluation into the cache first"):
            small_transformer(ids, cache=small_transformer.context_cache(), positions=positions)
        cache = small_transformer.context_cache()
        small_transformer(ids, cache=cache)
        for bad in (positions.int(), positions[0], positions[:1], positions[:, :0]):
            with pytest.raises(ValueError, match="positions must be an int64"):
                small_transformer(ids, cache=cache, positions=bad)
