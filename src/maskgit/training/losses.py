"""Training losses of both stages, following the official ``maskgit/libml/losses.py`` and the
quantizer of ``vqgan_tokenizer.py`` (spec §1.4, §1.6, §2.3).

Every function returns a float32 scalar (or a small tuple of them) and is safe under bf16 autocast:
the inputs are cast to float32 first, since these are reductions over many terms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "vq_losses",
    "entropy_loss",
    "generator_loss",
    "discriminator_loss",
    "r1_penalty",
    "lecam_loss",
    "masked_token_loss",
    "masked_token_accuracy",
]


def vq_losses(latents: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The VQ-VAE commitment and codebook losses.

    ``latents`` (B, D, h, w): encoder outputs z. ``codes`` (B, D, h, w): the chosen code vectors q,
    differentiable with respect to the codebook. Returns ``(commitment, codebook)`` =
    ``(mean((sg(q) − z)²), mean((q − sg(z))²))``; the official loss is
    ``0.25 · commitment + codebook``. The first trains the encoder only, the second the codebook only.
    """
    latents, codes = latents.float(), codes.float()
    commitment = (codes.detach() - latents).pow(2).mean()
    codebook = (codes - latents.detach()).pow(2).mean()
    return commitment, codebook


def entropy_loss(affinity: torch.Tensor, temperature: float = 0.01) -> torch.Tensor:
    """The official codebook entropy loss (``libml/losses.py:entropy_loss``, "softmax" type).

    ``affinity`` (..., K): similarity of each vector to every code; the quantizer passes the
    negative squared distances. With p = softmax(affinity / temperature) per vector, the loss is
    mean per-vector entropy minus the entropy of the mean distribution: minimising it makes each
    assignment confident while spreading the batch over the whole codebook (against collapse).
    The +1e-5 inside the log-softmax and the log of the average are the official ones.
    """
    flat = affinity.float().reshape(-1, affinity.shape[-1]) / temperature
    probs = flat.softmax(dim=-1)
    log_probs = (flat + 1e-5).log_softmax(dim=-1)
    average = probs.mean(dim=0)
    average_entropy = -(average * (average + 1e-5).log()).sum()
    sample_entropy = -(probs * log_probs).sum(dim=-1).mean()
    return sample_entropy - average_entropy


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: mean softplus(−D(fake)) = −log sigmoid(D(fake))."""
    return F.softplus(-fake_logits.float()).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating discriminator loss: mean(softplus(−D(real)) + softplus(D(fake)))."""
    return (F.softplus(-real_logits.float()) + F.softplus(fake_logits.float())).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 gradient penalty: mean over the batch of ‖∂D(x)/∂x‖² at real images (official
    ``r1_gradient_penalty`` without its cost factor, which the caller applies).

    ``real_images`` must have ``requires_grad=True`` and produced ``real_logits`` (B, 1). The graph
    is kept (``create_graph``) so the penalty can be back-propagated into D.
    """
    (gradient,) = torch.autograd.grad(real_logits.float().sum(), real_images, create_graph=True)
    return gradient.float().pow(2).reshape(gradient.shape[0], -1).sum(dim=1).mean()


def lecam_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, ema_real: torch.Tensor, ema_fake: torch.Tensor
) -> torch.Tensor:
    """LeCAM regulariser (Tseng et al. 2021): mean(relu(D(real) − ema_fake)²) +
    mean(relu(ema_real − D(fake))²), with ``ema_*`` the moving averages of the mean logits.
    Keeps D's predictions anchored so it cannot run away on small data."""
    real, fake = real_logits.float(), fake_logits.float()
    return F.relu(real - ema_fake).pow(2).mean() + F.relu(ema_real - fake).pow(2).mean()


def masked_token_loss(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, label_smoothing: float = 0.1
) -> torch.Tensor:
    """Cross-entropy on masked tokens only (official ``weighted_sequence_cross_entropy_loss``).

    ``logits`` (B, N, K) float, ``targets`` (B, N) int in [0, K), ``mask`` (B, N) bool, True where
    the token was masked. Label smoothing as in the official code: on-value 1 − ls + ls/K, off-value
    ls/K. Each sample's loss is the mean over its masked tokens; the result is the mean over samples
    (a sample with no masked token contributes 0). Unmasked positions do not enter at all.
    """
    if logits.shape[:2] != targets.shape or targets.shape != mask.shape:
        raise ValueError(
            f"logits (B, N, K), targets (B, N) and mask (B, N) disagree: {tuple(logits.shape)}, "
            f"{tuple(targets.shape)}, {tuple(mask.shape)}"
        )
    # Only the masked positions are selected, so unmasked logits (whatever they hold, even
    # inf/NaN) never enter the graph: their loss term and gradient are exactly zero.
    selected = logits[mask].float()  # (M, K)
    log_probs = selected.log_softmax(dim=-1)
    num_classes = logits.shape[-1]
    target_log_probs = log_probs.gather(-1, targets[mask].long().unsqueeze(-1)).squeeze(-1)
    # -(sum_k soft_k log p_k) with soft = (1 - ls) onehot + ls/K
    per_token = -(1.0 - label_smoothing) * target_log_probs - (label_smoothing / num_classes) * log_probs.sum(-1)
    sample_of_token = mask.nonzero()[:, 0]
    per_sample = torch.zeros(mask.shape[0], device=logits.device).index_add(0, sample_of_token, per_token)
    per_sample = per_sample / mask.sum(dim=1).clamp_min(1).float()
    return per_sample.mean()


@torch.no_grad()
def masked_token_accuracy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fraction of masked tokens whose argmax prediction equals the target (0 if none is masked)."""
    correct = (logits.argmax(dim=-1) == targets) & mask
    return correct.sum().float() / mask.sum().clamp_min(1).float()
