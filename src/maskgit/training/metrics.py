"""Evaluation of a trained transformer: masked-token loss and accuracy.

It reads the first ``max_samples`` items of a dataset in order, so with a deterministic (evaluation)
dataset the numbers are reproducible. (The tokenizer's evaluation is
``maskgit.evaluation.reconstruction.evaluate_tokenizer``.)
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from maskgit.models import VQGAN, MaskGITTransformer
from maskgit.training.data_order import mix_seed
from maskgit.training.losses import masked_token_loss
from maskgit.training.masking import masked_inputs, sample_masks

__all__ = ["evaluate_transformer"]


def _first(dataset: Dataset, count: int | None) -> Dataset:
    size = len(dataset)  # type: ignore[arg-type]
    if size == 0:
        raise ValueError("the evaluation dataset is empty")
    return dataset if count is None or count >= size else Subset(dataset, range(count))


@torch.no_grad()
def evaluate_transformer(
    transformer: MaskGITTransformer,
    dataset: Dataset,
    *,
    tokenizer: VQGAN | None = None,
    max_samples: int | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Masked-token cross-entropy (no label smoothing) and accuracy on the first ``max_samples``
    items of ``dataset``: token items ``(ids (h, w), label)``, or image items with ``tokenizer``.

    Masks follow the training distribution (cosine schedule) with sample ``i``'s mask seeded by
    ``(seed, i)``, so repeated evaluations use the same masks. Returns ``loss``, ``accuracy`` and
    ``chance_accuracy`` (1 / codebook size).
    """
    config = transformer.config
    device = torch.device(device) if device is not None else next(transformer.parameters()).device
    was_training = transformer.training
    transformer.eval()
    total_loss, correct, masked, samples = 0.0, 0, 0, 0
    try:
        for inputs, labels in DataLoader(_first(dataset, max_samples), batch_size=batch_size):
            inputs, labels = inputs.to(device), labels.to(device).long()
            if inputs.is_floating_point():
                if tokenizer is None:
                    raise ValueError("the dataset yields images; pass the tokenizer that encodes them")
                inputs = tokenizer.encode_to_ids(inputs)
            ids = inputs.flatten(1).long()
            seeds = torch.tensor([mix_seed(seed, samples + i) for i in range(ids.shape[0])])
            mask, drop = sample_masks(seeds, ids.shape[1])
            mask, drop = mask.to(device), drop.to(device)
            tokens = masked_inputs(
                ids, labels, mask, drop, codebook_size=config.codebook_size, mask_token_id=config.mask_token_id,
                null_class_id=config.null_class_id,
            )
            logits = transformer(tokens)[:, 1:, : config.codebook_size]
            total_loss += masked_token_loss(logits, ids, mask, label_smoothing=0.0).item() * ids.shape[0]
            correct += ((logits.argmax(-1) == ids) & mask).sum().item()
            masked += mask.sum().item()
            samples += ids.shape[0]
    finally:
        transformer.train(was_training)
    return {
        "loss": total_loss / samples,
        "accuracy": correct / max(masked, 1),
        "chance_accuracy": 1.0 / config.codebook_size,
        "samples": float(samples),
    }
