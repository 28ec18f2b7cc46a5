"""Sampling: mask schedules and the official MaskGIT parallel decoder."""

from maskgit.sampling.decode import (
    MASK_ID,
    DecodeStep,
    NoiseFn,
    decode,
    gumbel_noise,
    mask_by_random_topk,
    sample_ids,
    selected_probs,
)
from maskgit.sampling.schedules import (
    SCHEDULES,
    canonical_schedule,
    clamp_num_masked,
    mask_ratio,
    num_masked_after_step,
    num_masked_per_step,
    scheduled_num_masked,
    step_ratio,
)

__all__ = [
    "MASK_ID",
    "DecodeStep",
    "NoiseFn",
    "decode",
    "gumbel_noise",
    "mask_by_random_topk",
    "sample_ids",
    "selected_probs",
    "SCHEDULES",
    "canonical_schedule",
    "clamp_num_masked",
    "mask_ratio",
    "num_masked_after_step",
    "num_masked_per_step",
    "scheduled_num_masked",
    "step_ratio",
]
