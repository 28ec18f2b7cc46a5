"""The training losses: masked-token cross-entropy, VQ losses, entropy, GAN losses, R1, LeCAM."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from maskgit.training.losses import (
    discriminator_loss,
    entropy_loss,
    generator_loss,
    lecam_loss,
    masked_token_accuracy,
    masked_token_loss,
    r1_penalty,
    vq_losses,
)


def _batch(seed: int = 0, batch: int = 3, tokens: int = 10, classes: int = 7):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, tokens, classes, generator=generator)
    targets = torch.randint(0, classes, (batch, tokens), generator=generator)
    mask = torch.rand(batch, tokens, generator=generator) < 0.5
    mask[:, 0] = True  # every sample has a masked token
    mask[:, 1] = False  # and an unmasked one
    return logits, targets, mask


def test_masked_loss_ignores_unmasked_positions():
    logits, targets, mask = _batch()
    loss = masked_token_loss(logits, targets, mask)
    # Anything at unmasked positions, even inf/NaN, leaves the loss and its gradient unchanged.
    changed = logits.clone()
    changed[~mask] = torch.randn(int((~mask).sum()), logits.shape[-1]) * 100
    changed[0, 1, 0] = float("inf")
    changed[1, 1, 0] = float("nan")
    changed.requires_grad_(True)
    other = masked_token_loss(changed, targets, mask)
    assert torch.equal(loss, other.detach())
    other.backward()
    assert torch.all(changed.grad[~mask] == 0)
    assert torch.all(changed.grad[mask].abs().sum(-1) > 0)
    # ... and so do the targets there.
    retargeted = torch.where(mask, targets, (targets + 1) % logits.shape[-1])
    assert torch.equal(masked_token_loss(logits, retargeted, mask), loss)
    # A change at a masked position does change it.
    moved = logits.clone()
    moved[mask] += torch.randn(int(mask.sum()), logits.shape[-1])
    assert not torch.allclose(masked_token_loss(moved, targets, mask), loss)


def test_masked_loss_is_the_official_smoothed_cross_entropy_averaged_per_sample():
    logits, targets, mask = _batch(seed=1)
    smoothing, classes = 0.1, logits.shape[-1]
    soft = F.one_hot(targets, classes).float() * (1 - smoothing) + smoothing / classes
    per_token = -(soft * logits.log_softmax(-1)).sum(-1)
    per_sample = [(per_token[b][mask[b]]).mean() for b in range(len(targets))]
    expected = torch.stack(per_sample).mean()
    torch.testing.assert_close(masked_token_loss(logits, targets, mask, smoothing), expected)
    # Without smoothing it is plain cross-entropy.
    plain = torch.stack([F.cross_entropy(logits[b][mask[b]], targets[b][mask[b]]) for b in range(len(targets))]).mean()
    torch.testing.assert_close(masked_token_loss(logits, targets, mask, 0.0), plain)


def test_masked_loss_rejects_mismatched_shapes():
    logits, targets, mask = _batch()
    with pytest.raises(ValueError, match="disagree"):
        masked_token_loss(logits, targets[:, :-1], mask)


def test_masked_accuracy_counts_masked_tokens_only():
    targets = torch.tensor([[0, 1, 2, 3]])
    logits = F.one_hot(torch.tensor([[0, 1, 0, 0]]), 4).float()
    mask = torch.tensor([[True, True, True, False]])
    assert masked_token_accuracy(logits, targets, mask).item() == pytest.approx(2 / 3)


def test_vq_losses_route_gradients_to_encoder_and_codebook_separately():
    latents = torch.randn(2, 4, 3, 3, requires_grad=True)
    codes = torch.randn(2, 4, 3, 3, requires_grad=True)
    commitment, codebook = vq_losses(latents, codes)
    expected = (latents - codes).pow(2).mean()
    torch.testing.assert_close(commitment, expected)
    torch.testing.assert_close(codebook, expected)
    (grad_latents,) = torch.autograd.grad(commitment, latents, retain_graph=True)
    assert torch.autograd.grad(commitment, codes, allow_unused=True, retain_graph=True)[0] is None
    (grad_codes,) = torch.autograd.grad(codebook, codes)
    torch.testing.assert_close(grad_latents, 2 * (latents - codes).detach() / latents.numel())
    torch.testing.assert_close(grad_codes, 2 * (codes - latents).detach() / codes.numel())


def _reference_entropy(affinity: torch.Tensor, temperature: float) -> torch.Tensor:
    flat = affinity.reshape(-1, affinity.shape[-1]) / temperature
    probs = flat.softmax(-1)
    log_probs = torch.log_softmax(flat + 1e-5, -1)
    average = probs.mean(0)
    return -(probs * log_probs).sum(-1).mean() + (average * torch.log(average + 1e-5)).sum()


def test_entropy_loss_matches_the_official_formula_and_rewards_confident_spread_codes():
    affinity = -torch.rand(64, 16, generator=torch.Generator().manual_seed(3)) * 0.05
    torch.testing.assert_close(entropy_loss(affinity, 0.01), _reference_entropy(affinity, 0.01))
    codes = 16
    # Each vector confidently picks its own code, all codes used equally: about -log K.
    spread = torch.full((codes, codes), -10.0).fill_diagonal_(0.0)
    assert entropy_loss(spread, 0.01).item() == pytest.approx(-math.log(codes), abs=1e-3)
    # All vectors confidently pick the same code (collapse): about 0, the worst case.
    collapsed = torch.full((codes, codes), -10.0)
    collapsed[:, 0] = 0.0
    assert entropy_loss(collapsed, 0.01).item() == pytest.approx(0.0, abs=1e-3)
    # Unsure assignments score as badly: per-vector entropy log K minus batch entropy log K.
    uniform = torch.zeros(codes, codes)
    assert entropy_loss(uniform, 0.01).item() == pytest.approx(0.0, abs=1e-3)


def test_gan_losses_are_non_saturating():
    real, fake = torch.tensor([[2.0], [0.0]]), torch.tensor([[-1.0], [3.0]])
    expected_d = (F.softplus(-real) + F.softplus(fake)).mean()
    torch.testing.assert_close(discriminator_loss(real, fake), expected_d)
    torch.testing.assert_close(generator_loss(fake), -F.logsigmoid(fake).mean())
    # Non-saturating: the generator's gradient stays large when D confidently rejects the fake.
    rejected = torch.tensor([[-20.0]], requires_grad=True)
    generator_loss(rejected).backward()
    assert rejected.grad.item() == pytest.approx(-1.0, abs=1e-6)


def test_r1_penalty_is_the_squared_input_gradient_norm():
    # For D(x) = <w, x> the input gradient is w for every sample: R1 = ||w||².
    weight = torch.randn(3 * 4 * 4, generator=torch.Generator().manual_seed(4), requires_grad=True)
    images = torch.rand(5, 3, 4, 4, requires_grad=True)
    logits = (images.flatten(1) @ weight)[:, None]
    penalty = r1_penalty(logits, images)
    torch.testing.assert_close(penalty, weight.pow(2).sum())
    # It is differentiable w.r.t. D's parameters (double backward): d||w||²/dw = 2w.
    (grad,) = torch.autograd.grad(penalty, weight)
    torch.testing.assert_close(grad, 2 * weight.detach())


def test_lecam_penalises_logits_beyond_the_opposite_moving_average():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.5])
    ema_real, ema_fake = torch.tensor(1.0), torch.tensor(2.0)
    # relu(real − ema_fake)² = [0, 1] → 0.5 ; relu(ema_real − fake)² = [9, 0.25] → 4.625
    assert lecam_loss(real, fake, ema_real, ema_fake).item() == pytest.approx(0.5 + 4.625)
    assert lecam_loss(torch.tensor([0.0]), torch.tensor([5.0]), ema_real, ema_fake).item() == 0.0
