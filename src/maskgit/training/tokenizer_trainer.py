"""VQGAN tokenizer training with the official recipe (spec §1.4, §1.6).

One step: the generator (the VQGAN) minimises
``L2(x̂, x) + 0.25·commitment + codebook + 0.1·entropy (+ perceptual) (+ 0.1·non-saturating G loss
once the discriminator is on)``; then the discriminator minimises the non-saturating D loss on the
same images and (detached) reconstructions, plus ``r1_weight · R1`` on the real images (and LeCAM
if asked). Both use Adam β = (0, 0.99); the EMA of the VQGAN is what is evaluated and exported.

The entropy term's batch distribution is taken over each process's micro-batch, as the official
model computes it per device.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from maskgit.configs import ConfigError
from maskgit.evaluation.reconstruction import codebook_perplexity, evaluate_tokenizer, psnr
from maskgit.models import VQGAN
from maskgit.training.config import TokenizerTrainConfig
from maskgit.training.data_order import mix_seed
from maskgit.training.discriminator import Discriminator
from maskgit.training.ema import EMA
from maskgit.training.engine import Trainer
from maskgit.training.losses import (
    discriminator_loss,
    entropy_loss,
    generator_loss,
    lecam_loss,
    r1_penalty,
    vq_losses,
)
from maskgit.training.perceptual import load_perceptual
from maskgit.training.progress import save_image_grid

__all__ = ["TokenizerTrainer", "Autoencode"]

_REINIT_TAG = 0xC0DE


class Autoencode(nn.Module):
    """The VQGAN's training forward, split so the losses can see every part:
    images → (reconstruction, latents z, ids, distances, chosen codes q differentiable w.r.t. the
    codebook). The decoder receives the straight-through ``z + sg(q − z)``."""

    def __init__(self, model: VQGAN) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        latents = self.model.encoder(images)
        quantized = self.model.quantizer(latents)
        codes = self.model.quantizer.embed(quantized.ids)
        reconstruction = self.model.decoder(quantized.quantized)
        return reconstruction, latents, quantized.ids, quantized.distances, codes


class TokenizerTrainer(Trainer):
    """Trains ``VQGAN(config.model)`` on a dataset of ``(image (3, S, S) float in [0, 1], label)``.

    ``train()`` runs the loop (see ``Trainer``); the exported EMA model is written to
    ``out_dir/tokenizer`` (``VQGAN.from_pretrained`` reads it).
    """

    stage = "tokenizer"
    config: TokenizerTrainConfig

    def build(self) -> None:
        config = self.config
        size = config.model.image_size
        image = self.dataset[0][0]
        if not isinstance(image, torch.Tensor) or tuple(image.shape) != (3, size, size):
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"the dataset yields images of shape {shape}, the model config needs (3, {size}, {size})")
        self.model = VQGAN(config.model)
        if config.init_from is not None:
            self.load_initial_weights(self.model)
        self.model = self.model.to(self.device).train()
        if config.decoder_only:
            # Frozen encoder and codebook: every image keeps its ids, so a transformer trained on
            # this tokenizer's tokens stays valid with the fine-tuned decoder.
            self.model.encoder.requires_grad_(False)
            self.model.quantizer.requires_grad_(False)
        self.discriminator = Discriminator(
            size, config.discriminator_channel_base, config.discriminator_max_channels
        ).to(self.device)
        self.ema = EMA(self.model, config.ema_decay)
        # Loaded whenever a file is named (so a wrong path fails now), used when its weight is > 0.
        # A weight without a file used to train silently without the loss; that is now an error, so
        # a run never drops part of its recipe unnoticed.
        if config.perceptual_weight > 0 and config.perceptual_weights is None:
            raise ConfigError(
                f"perceptual_weight is {config.perceptual_weight} but perceptual_weights is not set: the "
                "perceptual loss needs a VGG16 safetensors file or a `maskgit train-classifier` folder (see "
                "maskgit.training.perceptual); pass --set perceptual_weights=PATH, or --set perceptual_weight=0 "
                "to train without it"
            )
        self.reconstruction_loss = F.l1_loss if config.reconstruction_loss == "l1" else F.mse_loss
        self.perceptual = None
        if config.perceptual_weights is not None:
            self.perceptual = load_perceptual(config.perceptual_weights, image_size=size).to(self.device)
        self.autoencode = self.maybe_compile(Autoencode(self.model))
        self.discriminate = self.maybe_compile(self.discriminator)
        # All of the VQGAN, or its decoder alone with ``decoder_only``.
        self.trained_parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.g_optimizer = torch.optim.Adam(self.trained_parameters, lr=config.learning_rate, betas=config.betas)
        self.d_optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=config.discriminator_learning_rate, betas=config.betas
        )
        codebook_size = config.model.codebook_size
        # Moving averages of D's mean real and fake logits, for LeCAM.
        self.lecam_ema = torch.zeros(2, device=self.device)
        # Code usage since the last dead-code check, and since the last log line.
        self.reinit_counts = torch.zeros(codebook_size, dtype=torch.long, device=self.device)
        self.log_counts = torch.zeros(codebook_size, dtype=torch.long, device=self.device)
        self.reinitialised_in_window = 0
        source = self.eval_dataset if self.eval_dataset is not None else self.dataset
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            count = min(8, len(source))  # type: ignore[arg-type]
            self.sample_images = torch.stack([source[i][0] for i in range(count)])

    # -- one step ---------------------------------------------------------------------------------

    def train_step(self, micro_batches: Sequence[tuple[Any, torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        config = self.config
        accum = len(micro_batches)
        use_discriminator = self.step >= config.discriminator_start and config.adversarial_weight > 0
        sums: dict[str, torch.Tensor] = {}

        def add(name: str, value: torch.Tensor) -> None:
            sums[name] = sums.get(name, 0.0) + value.detach().float() / accum

        # Generator (VQGAN) update. D is frozen so the adversarial loss only trains the VQGAN.
        self.discriminator.requires_grad_(False)
        self.g_optimizer.zero_grad(set_to_none=True)
        reconstructions, all_latents = [], []
        step_counts = torch.zeros(config.model.codebook_size, dtype=torch.long, device=self.device)
        for images, _, _ in micro_batches:
            images = images.to(self.device, non_blocking=True)
            with self.autocast():
                reconstruction, latents, ids, distances, codes = self.autoencode(images)
            reconstruction_loss = self.reconstruction_loss(reconstruction.float(), images)
            loss = config.reconstruction_weight * reconstruction_loss
            if not config.decoder_only:  # with a frozen encoder and codebook these are constants
                commitment, codebook = vq_losses(latents, codes)
                entropy = entropy_loss(-distances, config.entropy_temperature)
                loss = loss + config.commitment_weight * commitment + codebook + config.entropy_weight * entropy
                add("commitment", commitment)
                add("codebook", codebook)
                add("entropy", entropy)
            if self.perceptual is not None and config.perceptual_weight > 0:
                with self.autocast():
                    perceptual = self.perceptual(reconstruction, images)
                loss = loss + config.perceptual_weight * perceptual
                add("perceptual", perceptual)
            if use_discriminator:
                with self.autocast():
                    fake_logits = self.discriminate(reconstruction)
                adversarial = generator_loss(fake_logits)
                loss = loss + config.adversarial_weight * adversarial
                add("g_adversarial", adversarial)
            (loss / accum).backward()
            reconstructions.append(reconstruction.detach())
            all_latents.append(latents.detach())
            step_counts += torch.bincount(ids.flatten(), minlength=config.model.codebook_size)
            add("loss", loss)
            add("reconstruction", reconstruction_loss)
            add("psnr", psnr(reconstruction.detach().float().clamp(0, 1), images).mean())
        sums["grad_norm"] = self.optimizer_step(self.trained_parameters, self.g_optimizer, config.learning_rate, config.grad_clip)
        self.ema.update(self.model)

        # Discriminator update on the same batch.
        if use_discriminator:
            self.discriminator.requires_grad_(True)
            self.d_optimizer.zero_grad(set_to_none=True)
            apply_r1 = config.r1_weight > 0 and self.step % config.r1_every == 0
            logit_means = torch.zeros(2, device=self.device)
            for (images, _, _), reconstruction in zip(micro_batches, reconstructions):
                real = images.to(self.device, non_blocking=True).requires_grad_(apply_r1)
                with self.autocast():
                    real_logits = self.discriminate(real)
                    fake_logits = self.discriminate(reconstruction)
                d_loss = discriminator_loss(real_logits, fake_logits)
                if apply_r1:
                    # Lazy regularisation (StyleGAN2): every r1_every steps, scaled by r1_every.
                    r1 = r1_penalty(real_logits, real)
                    d_loss = d_loss + config.r1_weight * config.r1_every * r1
                    add("r1", r1)
                if config.lecam_weight > 0:
                    lecam = lecam_loss(real_logits, fake_logits, self.lecam_ema[0], self.lecam_ema[1])
                    d_loss = d_loss + config.lecam_weight * lecam
                    add("lecam", lecam)
                (d_loss / accum).backward()
                logit_means += torch.stack([real_logits.detach().float().mean(), fake_logits.detach().float().mean()]) / accum
                add("d_loss", d_loss)
                add("d_real", real_logits.detach().float().mean())
                add("d_fake", fake_logits.detach().float().mean())
            self.optimizer_step(
                list(self.discriminator.parameters()), self.d_optimizer, config.discriminator_learning_rate, config.grad_clip
            )
            logit_means = self.dist.all_reduce_sum(logit_means) / self.dist.world_size
            self.lecam_ema.lerp_(logit_means, 1.0 - config.lecam_decay)

        # Codebook health: usage counts summed over ranks, for the log and for dead-code checks.
        counts = self.dist.all_reduce_sum(step_counts)
        self.log_counts += counts
        self.reinit_counts += counts
        if config.dead_code_reinit_every and (self.step + 1) % config.dead_code_reinit_every == 0:
            self.reinitialised_in_window += self._reinit_dead_codes(self.reinit_counts, torch.cat(all_latents))
            self.reinit_counts.zero_()
        return sums

    @torch.no_grad()
    def _reinit_dead_codes(self, counts: torch.Tensor, latents: torch.Tensor) -> int:
        """Replace the codes unused since the last check by encoder outputs of this step (every
        micro-batch of every rank, so the pool is the global batch whatever the split), chosen at
        random with a step-seeded generator (the same on every rank); reset their optimizer
        moments and EMA copies."""
        dead = (counts == 0).nonzero().flatten()
        if dead.numel() == 0:
            return 0
        vectors = latents.float().permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
        vectors = self.dist.all_gather(vectors)
        generator = torch.Generator().manual_seed(mix_seed(self.config.seed, self.step, _REINIT_TAG))
        choice = torch.randint(0, vectors.shape[0], (dead.numel(),), generator=generator).to(self.device)
        weight = self.model.quantizer.codebook.weight
        weight[dead] = vectors[choice].to(weight.dtype)
        self.ema.model.quantizer.codebook.weight[dead] = vectors[choice].to(weight.dtype)
        state = self.g_optimizer.state.get(weight, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][dead] = 0
        return int(dead.numel())

    def window_metrics(self) -> dict[str, float]:
        """Codebook use over the steps since the last log line: percent of codes used and the
        perplexity of the usage distribution (equal to the codebook size when use is uniform)."""
        usage = (self.log_counts > 0).float().mean().item() * 100.0
        perplexity = codebook_perplexity(self.log_counts).item()
        self.log_counts.zero_()
        metrics = {"codebook_usage_percent": usage, "codebook_perplexity": perplexity}
        if self.config.dead_code_reinit_every:
            metrics["reinitialised_codes"] = self.reinitialised_in_window
            self.reinitialised_in_window = 0
        return metrics

    # -- everything else --------------------------------------------------------------------------

    def current_lr(self) -> float:
        return float(self.g_optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "ema": self.ema.state_dict(),
            "g_optimizer": self.g_optimizer.state_dict(),
            "d_optimizer": self.d_optimizer.state_dict(),
            "lecam_ema": self.lecam_ema,
            "reinit_counts": self.reinit_counts,
            "log_counts": self.log_counts,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.ema.load_state_dict(state["ema"])
        self.g_optimizer.load_state_dict(state["g_optimizer"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
        self.lecam_ema.copy_(state["lecam_ema"])
        self.reinit_counts.copy_(state["reinit_counts"])
        self.log_counts.copy_(state["log_counts"])

    @torch.no_grad()
    def write_samples(self, path: Path) -> None:
        """Originals (top row) and EMA reconstructions (bottom row)."""
        images = self.sample_images.to(self.device)
        reconstructions = self.ema.model.reconstruct(images).clamp(0, 1)
        save_image_grid(torch.cat([images, reconstructions]), path, columns=images.shape[0])

    def evaluate(self) -> dict[str, float]:
        """The EMA tokenizer's PSNR, SSIM and codebook use on the first ``eval_images`` images."""
        assert self.eval_dataset is not None
        scores = evaluate_tokenizer(
            self.ema.model, self.eval_dataset, max_images=self.config.eval_images, batch_size=max(self.micro_batch_size, 64)
        )
        return scores.as_dict()

    def export(self) -> None:
        self.ema.model.save_pretrained(self.out_dir / "tokenizer")
