"""A tokenizer's reconstruction quality: PSNR, SSIM, codebook use and reconstruction FID (rFID).

``evaluate_tokenizer`` is the one tokenizer evaluation: the tokenizer trainer's evaluation,
``maskgit evaluate --tokenizer`` and ``maskgit eval-tokenizer`` all call it, each with its protocol:

- the images: a dataset or a tensor, read in order (the first ``max_images``). ``maskgit
  eval-tokenizer`` takes an image folder with the seeds' preprocessing (maskgit-torch's
  ``reconstruct_images.py``: a short-side bicubic resize to S and an S x S centre crop,
  ``maskgit.data.transforms.eval_transform``); ``maskgit evaluate`` the first Fashion-MNIST test
  images; the trainer its evaluation split.
- ``quantize``: whether each reconstruction is rounded to uint8 as a saved PNG would be, before it
  is scored (``maskgit eval-tokenizer`` does, as the seeds' protocol; the trainer and ``maskgit
  evaluate`` score the clipped float reconstruction).
- ``extractor``: with a feature network, also the rFID: the reconstructions against the inputs in
  its feature space.

PSNR is per image, ``10 · log10(1 / MSE)`` with the MSE over all pixels and the three channels
(data range 1), and a set's PSNR is the mean of its images' PSNRs (not the PSNR of the mean MSE).
SSIM is per image too, averaged over images the same way.

SSIM is the Gaussian-window SSIM of Wang et al. 2004 (11x11 window, sigma 1.5, K1 = 0.01,
K2 = 0.03), with the image reflect-padded by 5 pixels so that every pixel has a window, averaged over
pixels and channels: torchmetrics' ``structural_similarity_index_measure`` when torchmetrics is
installed, else the same computation here (tested equal).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from maskgit.evaluation.features import FeatureExtractor, extract_features, float_images
from maskgit.evaluation.statistics import FeatureStatistics, frechet_distance

__all__ = [
    "psnr",
    "ssim",
    "gaussian_ssim",
    "codebook_perplexity",
    "reconstruct",
    "TokenizerScores",
    "evaluate_tokenizer",
]

SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def _float64(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float64, where the metrics are computed: on its own device, or on the CPU for
    a device without float64 (MPS)."""
    return tensor.cpu().double() if tensor.device.type == "mps" else tensor.double()


def psnr(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of ``images`` against ``references``, both float (B, C, H, W) with data
    range 1 (clip a model's output to [0, 1] first): ``10 · log10(1 / MSE)``, the MSE of each image
    over its pixels and channels, in float64 (on the CPU for MPS tensors). Returns (B,) float64;
    +inf for an image reproduced exactly. Average the result over images for a set's PSNR."""
    if images.shape != references.shape or images.dim() != 4:
        raise ValueError(f"PSNR needs two equal (B, C, H, W) batches, got {tuple(images.shape)} and {tuple(references.shape)}")
    mse = (_float64(images) - _float64(references)).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse)


def _gaussian_window(channels: int) -> torch.Tensor:
    coords = torch.arange(SSIM_WINDOW, dtype=torch.float64) - (SSIM_WINDOW - 1) / 2
    line = torch.exp(-(coords / SSIM_SIGMA) ** 2 / 2)
    line /= line.sum()
    return torch.outer(line, line).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW).contiguous()


def gaussian_ssim(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM of float (B, C, H, W) in [0, 1] (H, W >= 11); (B,) float64. Our own formula."""
    pad = (SSIM_WINDOW - 1) // 2
    x = F.pad(_float64(images), (pad,) * 4, mode="reflect")
    y = F.pad(_float64(references), (pad,) * 4, mode="reflect")
    window = _gaussian_window(x.shape[1]).to(x.device)
    blur = lambda t: F.conv2d(t, window, groups=x.shape[1])  # noqa: E731 - one window per original pixel
    mu_x, mu_y = blur(x), blur(y)
    var_x = (blur(x * x) - mu_x**2).clamp(min=0)  # round-off can make a flat window's variance negative
    var_y = (blur(y * y) - mu_y**2).clamp(min=0)
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return index.flatten(1).mean(1)


def ssim(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM, (B,) float64: torchmetrics' when installed, else ``gaussian_ssim`` (same formula)."""
    if images.shape != references.shape or images.dim() != 4 or min(images.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs two equal (B, C, H, W) batches with H, W >= {SSIM_WINDOW}, "
                         f"got {tuple(images.shape)} and {tuple(references.shape)}")
    try:
        from torchmetrics.functional.image import structural_similarity_index_measure
    except ImportError:
        return gaussian_ssim(images, references)
    values = structural_similarity_index_measure(_float64(images), _float64(references), data_range=1.0,
                                                 reduction="none")
    return values.reshape(-1)


def codebook_perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of code usage ``counts`` (K,): K when every code is used equally, 1 after a
    collapse onto one code. Matches the official ``get_perplexity`` on one-hot assignments."""
    probs = counts.float() / counts.sum().clamp_min(1)
    return torch.exp(-(probs * (probs + 1e-5).log()).sum())


@torch.no_grad()
def reconstruct(tokenizer: torch.nn.Module, images: torch.Tensor, *, quantize: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokenizer's round trip of float (B, 3, H, W) ``images`` in [0, 1] (moved to its device).

    ``tokenizer`` is a ``VQGAN``, or any module with ``encode_to_ids`` and ``decode_ids``. Returns
    the ids (B, h, w) and the reconstructions, float32 (B, 3, H, W) clipped to [0, 1] on the
    tokenizer's device; with ``quantize``, rounded to the nearest multiple of 1/255, as a saved
    8-bit PNG holds them.
    """
    parameter = next(tokenizer.parameters(), None)
    device = parameter.device if parameter is not None else images.device
    ids = tokenizer.encode_to_ids(images.to(device))
    outputs = tokenizer.decode_ids(ids).float().clamp(0, 1)
    return ids, outputs.mul(255.0).round().div(255.0) if quantize else outputs


@dataclass(frozen=True)
class TokenizerScores:
    """What ``evaluate_tokenizer`` measures over ``images`` images.

    ``psnr`` (dB) and ``ssim`` are means over images of the per-image values (``ssim`` None for
    images under 11 px, its window; ``psnr`` +inf as soon as one image comes back exactly).
    ``codebook_usage_percent``: the percentage of codes chosen at least once; ``codebook_perplexity``:
    exp(entropy) of their use (see ``codebook_perplexity``). ``fid``: the rFID, when a feature network
    was given.
    """

    images: int
    psnr: float
    ssim: float | None
    codebook_usage_percent: float
    codebook_perplexity: float
    fid: float | None = None

    def as_dict(self) -> dict[str, float | int]:
        """The scores that were measured (no None values), as plain numbers."""
        return {key: value for key, value in asdict(self).items() if value is not None}


def _batches(images: Dataset | torch.Tensor, count: int, batch_size: int) -> Iterator[torch.Tensor]:
    """The first ``count`` images, ``batch_size`` at a time, as float (B, 3, H, W) in [0, 1]."""
    if isinstance(images, torch.Tensor):
        for start in range(0, count, batch_size):
            yield float_images(images[start : min(start + batch_size, count)])
        return
    for batch in DataLoader(Subset(images, range(count)), batch_size=batch_size):
        yield float_images(batch[0] if isinstance(batch, (list, tuple)) else batch)


def evaluate_tokenizer(
    tokenizer: torch.nn.Module,
    images: Dataset | torch.Tensor,
    *,
    max_images: int | None = None,
    batch_size: int = 64,
    quantize: bool = False,
    extractor: FeatureExtractor | None = None,
    progress: bool = False,
) -> TokenizerScores:
    """Reconstruct the first ``max_images`` (default all) of ``images`` with ``tokenizer`` and score
    the reconstructions against them (see the module doc for the protocol and the definitions).

    ``tokenizer``: a ``VQGAN`` (encode_to_ids, decode_ids, ``config.codebook_size``), evaluated in
    eval mode on its own device; its training flag is restored afterwards. ``images``: a dataset
    whose items are float (3, H, W) images in [0, 1] or ``(image, label)`` pairs, or a uint8
    (N, 3, H, W) tensor in [0, 255] or a float one in [0, 1]. ``quantize``: round each
    reconstruction to uint8 before it is scored. ``extractor``: also the rFID in its feature space
    (needs at least 2 images). Returns ``TokenizerScores``.

    For example, the PSNR and SSIM of a tokenizer on the first 1000 Fashion-MNIST test images:
    ``evaluate_tokenizer(vqgan, build_dataset("fashion-mnist", split="test", image_size=32,
    train=False), max_images=1000)``.
    """
    size = len(images)  # type: ignore[arg-type]
    count = size if max_images is None else min(max_images, size)
    if count < 1:
        raise ValueError("no images to evaluate the tokenizer on (the evaluation set is empty)")
    if extractor is not None and count < 2:
        raise ValueError(f"a reconstruction FID needs at least 2 images (a covariance), got {count}")
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    codebook_size = tokenizer.config.codebook_size
    was_training = tokenizer.training
    tokenizer.eval()
    counts = torch.zeros(codebook_size, dtype=torch.long)
    # Sums of per-image values, accumulated batch by batch in Python floats.
    total_psnr = total_ssim = 0.0
    below_ssim_window = False
    input_features: list[torch.Tensor] = []
    output_features: list[torch.Tensor] = []
    try:
        with tqdm(total=count, unit="img", desc="reconstruct", disable=not progress) as bar:
            for inputs in _batches(images, count, batch_size):
                ids, outputs = reconstruct(tokenizer, inputs, quantize=quantize)
                inputs = inputs.to(outputs.device)
                counts += torch.bincount(ids.flatten().cpu(), minlength=codebook_size)
                total_psnr += float(psnr(outputs, inputs).sum())
                if min(inputs.shape[-2:]) < SSIM_WINDOW:
                    below_ssim_window = True
                else:
                    total_ssim += float(ssim(outputs, inputs).sum())
                if extractor is not None:
                    input_features.append(extract_features(extractor, inputs.cpu(), len(inputs), progress=False).features)
                    output_features.append(extract_features(extractor, outputs.cpu(), len(outputs), progress=False).features)
                bar.update(len(inputs))
    finally:
        tokenizer.train(was_training)
    fid = None
    if extractor is not None:
        first = FeatureStatistics.from_features(torch.cat(output_features), extractor.name)
        second = FeatureStatistics.from_features(torch.cat(input_features), extractor.name)
        fid = frechet_distance(first, second)
    return TokenizerScores(
        images=count,
        psnr=total_psnr / count,
        ssim=None if below_ssim_window else total_ssim / count,
        codebook_usage_percent=(counts > 0).float().mean().item() * 100.0,
        codebook_perplexity=codebook_perplexity(counts).item(),
        fid=fid,
    )
