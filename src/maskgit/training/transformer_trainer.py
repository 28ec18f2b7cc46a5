"""Masked-token transformer training with the official recipe (spec §2.3).

Each sample gets its own mask ratio from the cosine schedule (``masking.sample_masks``); the
loss is the label-smoothed (0.1) cross-entropy over the masked image tokens only, averaged per
sample and then over the batch as the official ``weighted_sequence_cross_entropy_loss`` does.
The logits are restricted to the codebook ids, the only valid targets (decoding reads only those
logits too). AdamW β = (0.9, 0.96), weight decay 0.045 on matrices and embeddings (not on biases
or LayerNorm), linear warmup then cosine decay, gradient clipping, EMA. With ``class_dropout``
> 0 the class token is replaced by the model's null class token for that fraction of samples,
which trains the unconditional model that classifier-free guidance needs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from maskgit.models import VQGAN, MaskGITTransformer
from maskgit.sampling.samplers import ConfidenceSampler
from maskgit.training.config import TransformerTrainConfig
from maskgit.training.ema import EMA
from maskgit.training.engine import Trainer
from maskgit.training.losses import masked_token_accuracy, masked_token_loss
from maskgit.training.masking import masked_inputs, sample_masks
from maskgit.training.metrics import evaluate_transformer
from maskgit.training.progress import save_image_grid

__all__ = ["TransformerTrainer"]


class TransformerTrainer(Trainer):
    """Trains ``MaskGITTransformer`` on token items ``(ids (h, w) int64, label)`` (a
    ``TokenDataset``) or on image items ``(image (3, S, S) float in [0, 1], label)`` encoded on the
    fly by ``tokenizer``.

    The model config's ``codebook_size``, ``latent_size`` and ``num_classes`` are taken from the
    data (and the tokenizer), whatever the preset says. Exports the EMA transformer to
    ``out_dir/transformer`` and, with a tokenizer, the pipeline to ``out_dir/pipeline``
    (``maskgit.pipeline.MaskGIT.from_pretrained`` reads it).
    """

    stage = "transformer"
    config: TransformerTrainConfig

    def __init__(
        self,
        config: TransformerTrainConfig,
        out_dir: str | os.PathLike[str],
        *,
        dataset: Dataset,
        tokenizer: VQGAN | None = None,
        eval_dataset: Dataset | None = None,
        class_names: Sequence[str] | None = None,
        device: str | torch.device | None = None,
        resume: str | os.PathLike[str] | None = None,
        progress: bool | Callable[..., Any] = True,
    ) -> None:
        self.tokenizer = tokenizer
        self.class_names = tuple(class_names) if class_names is not None else getattr(dataset, "class_names", None)
        super().__init__(
            config, out_dir, dataset=dataset, eval_dataset=eval_dataset, device=device, resume=resume, progress=progress
        )

    # -- setup ------------------------------------------------------------------------------------

    def fit_config(self, config: TransformerTrainConfig) -> TransformerTrainConfig:  # type: ignore[override]
        """The config with the model's codebook_size, latent_size and num_classes fitted to the data
        and the tokenizer; also names the classes ``class_<i>`` when the data do not."""
        model = config.model
        first = self.dataset[0][0]
        if not isinstance(first, torch.Tensor):
            raise ValueError(f"dataset items must be (tensor, label), got {type(first).__name__}")
        if first.is_floating_point():
            if self.tokenizer is None:
                raise ValueError("the dataset yields images; a tokenizer is needed to encode them")
            if first.dim() != 3 or first.shape[0] != 3 or first.shape[1] != first.shape[2]:
                raise ValueError(f"images must be (3, S, S), got {tuple(first.shape)}")
            factor = self.tokenizer.config.downsample_factor
            if first.shape[1] % factor:
                raise ValueError(f"image size {first.shape[1]} is not divisible by the tokenizer's stride {factor}")
            latent_size = first.shape[1] // factor
            codebook_size = self.tokenizer.config.codebook_size
        else:
            if first.dim() != 2 or first.shape[0] != first.shape[1]:
                raise ValueError(f"token items must be square (h, w) id grids, got {tuple(first.shape)}")
            latent_size = int(first.shape[0])
            codebook_size = int(getattr(self.dataset, "codebook_size", model.codebook_size))
            if self.tokenizer is not None and self.tokenizer.config.codebook_size != codebook_size:
                raise ValueError(
                    f"the token data use {codebook_size} codes but the tokenizer has "
                    f"{self.tokenizer.config.codebook_size}"
                )
        num_classes = len(self.class_names) if self.class_names is not None else model.num_classes
        if self.class_names is None:
            self.class_names = tuple(f"class_{i}" for i in range(num_classes))
        return config.updated(
            {"model": {"codebook_size": codebook_size, "latent_size": latent_size, "num_classes": num_classes,
                       # Dropped class labels become the null class, which guidance then uses.
                       "null_class": config.class_dropout > 0}}
        )

    def build(self) -> None:
        config = self.config
        if self.tokenizer is not None:
            self.tokenizer = self.tokenizer.to(self.device).eval().requires_grad_(False)
        self.model = MaskGITTransformer(config.model)
        if config.init_from is not None:
            self.load_initial_weights(self.model)
        self.model = self.model.to(self.device).train()
        self.ema = EMA(self.model, config.ema_decay)
        self.forward_model = self.maybe_compile(self.model)
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.learning_rate,
            betas=config.betas,
        )
        source = self.eval_dataset if self.eval_dataset is not None else self.dataset
        size = len(source)  # type: ignore[arg-type]
        # Spread over the dataset: token files store each image next to its mirror image.
        indices = sorted({int(i) for i in torch.linspace(0, size - 1, min(8, size))})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            items = [source[i] for i in indices]
        self.sample_inputs = torch.stack([item[0] for item in items])
        self.sample_labels = torch.tensor([int(item[1]) for item in items])

    # -- one step ---------------------------------------------------------------------------------

    def _ids(self, inputs: torch.Tensor) -> torch.Tensor:
        """Token ids (B, N) on the device from a batch of ids (B, h, w) or images (B, 3, S, S)."""
        inputs = inputs.to(self.device, non_blocking=True)
        if inputs.is_floating_point():
            assert self.tokenizer is not None
            with torch.no_grad():  # the tokenizer runs in float32: bf16 could flip argmin ties
                inputs = self.tokenizer.encode_to_ids(inputs)
        ids = inputs.flatten(1).long()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.model.codebook_size):
            raise ValueError(
                f"token ids must be in [0, {self.config.model.codebook_size}), got [{int(ids.min())}, {int(ids.max())}]"
            )
        return ids

    def train_step(self, micro_batches: Sequence[tuple[Any, torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        config, model_config = self.config, self.config.model
        accum = len(micro_batches)
        sums: dict[str, torch.Tensor] = {}
        self.optimizer.zero_grad(set_to_none=True)
        for inputs, labels, seeds in micro_batches:
            ids = self._ids(inputs)
            labels = labels.to(self.device).long()
            if int(labels.min()) < 0 or int(labels.max()) >= model_config.num_classes:
                raise ValueError(f"labels must be in [0, {model_config.num_classes}), got {labels.tolist()}")
            mask, drop_class = sample_masks(seeds, ids.shape[1], config.class_dropout)
            mask, drop_class = mask.to(self.device), drop_class.to(self.device)
            tokens = masked_inputs(
                ids, labels, mask, drop_class,
                codebook_size=model_config.codebook_size, mask_token_id=model_config.mask_token_id,
                null_class_id=model_config.null_class_id,
            )
            with self.autocast():
                logits = self.forward_model(tokens)
            logits = logits[:, 1:, : model_config.codebook_size]
            loss = masked_token_loss(logits, ids, mask, config.label_smoothing)
            (loss / accum).backward()
            for name, value in (
                ("loss", loss.detach()),
                ("masked_accuracy", masked_token_accuracy(logits, ids, mask)),
                ("mask_ratio", mask.float().mean()),
            ):
                sums[name] = sums.get(name, 0.0) + value.float() / accum
        sums["grad_norm"] = self.optimizer_step(
            list(self.model.parameters()), self.optimizer, config.learning_rate, config.grad_clip
        )
        self.ema.update(self.model)
        return sums

    # -- everything else --------------------------------------------------------------------------

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])

    @torch.no_grad()
    def write_samples(self, path: Path) -> None:
        """Two rows (needs a tokenizer; skipped without one): training samples through the
        tokenizer, and the EMA model's class-conditional generations for the same labels with the
        official decoder (12 steps, a fixed seed, so grids of successive steps are comparable)."""
        if self.tokenizer is None:
            return
        from maskgit.pipeline import MaskGIT

        side = self.config.model.latent_size
        truth = self.tokenizer.decode_ids(self._ids(self.sample_inputs).view(-1, side, side)).clamp(0, 1)
        pipeline = MaskGIT(self.tokenizer, self.ema.model, self.class_names)
        pipeline.set_progress_bar_config(disable=True)  # inside the training bar
        generated = pipeline.generate(
            self.sample_labels.tolist(), sampler=ConfidenceSampler(num_steps=12), seed=self.config.seed
        )
        save_image_grid(torch.cat([truth, generated.to(truth)]), path, columns=truth.shape[0])

    def evaluate(self) -> dict[str, float]:
        assert self.eval_dataset is not None
        return evaluate_transformer(
            self.ema.model,
            self.eval_dataset,
            tokenizer=self.tokenizer,
            max_samples=self.config.eval_images,
            batch_size=max(self.micro_batch_size, 64),
            device=self.device,
            seed=self.config.seed,
        )

    def export(self) -> None:
        from maskgit.pipeline import MaskGIT

        self.ema.model.save_pretrained(self.out_dir / "transformer")
        if self.tokenizer is not None:
            MaskGIT(self.tokenizer, self.ema.model, self.class_names).save_pretrained(self.out_dir / "pipeline")
