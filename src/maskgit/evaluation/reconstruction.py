"""Tokenizer reconstruction quality: PSNR, SSIM and reconstruction FID (rFID) over an image folder.

Protocol (the seeds': maskgit-torch's ``reconstruct_images.py``): each image gets a short-side
bicubic resize to S and an S x S centre crop (``maskgit.data.transforms.eval_transform``), goes
through the tokenizer, and the reconstruction is rounded to uint8 as a saved PNG would be. The rFID
compares the reconstructions with the preprocessed inputs in the chosen feature space; PSNR and SSIM
compare them image by image (data range 1, all three channels) and are averaged over images.

SSIM is the Gaussian-window SSIM of Wang et al. 2004 (11x11 window, sigma 1.5, K1 = 0.01,
K2 = 0.03), with the image reflect-padded by 5 pixels so that every pixel has a window, averaged over
pixels and channels: torchmetrics' ``structural_similarity_index_measure`` when torchmetrics is
installed, else the same computation here (tested equal).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from maskgit.data.datasets import ImageFolder
from maskgit.data.transforms import eval_transform
from maskgit.evaluation.features import FeatureExtractor
from maskgit.evaluation.statistics import FeatureStatistics, frechet_distance

__all__ = ["psnr", "ssim", "gaussian_ssim", "ReconstructionResult", "evaluate_tokenizer"]

SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def psnr(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of float (B, C, H, W) in [0, 1]; (B,) float64, inf for identical images."""
    mse = (images.double() - references.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse)


def _gaussian_window(channels: int) -> torch.Tensor:
    coords = torch.arange(SSIM_WINDOW, dtype=torch.float64) - (SSIM_WINDOW - 1) / 2
    line = torch.exp(-(coords / SSIM_SIGMA) ** 2 / 2)
    line /= line.sum()
    return torch.outer(line, line).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW).contiguous()


def gaussian_ssim(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM of float (B, C, H, W) in [0, 1] (H, W >= 11); (B,) float64. Our own formula."""
    pad = (SSIM_WINDOW - 1) // 2
    x = F.pad(images.double(), (pad,) * 4, mode="reflect")
    y = F.pad(references.double(), (pad,) * 4, mode="reflect")
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
    values = structural_similarity_index_measure(images.double(), references.double(), data_range=1.0,
                                                 reduction="none")
    return values.reshape(-1)


@dataclass(frozen=True)
class ReconstructionResult:
    count: int
    psnr: float
    ssim: float
    fid: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def evaluate_tokenizer(
    pipeline,
    folder: ImageFolder,
    image_size: int,
    extractor: FeatureExtractor,
    batch_size: int = 50,
    limit: int | None = None,
    progress: bool = True,
) -> ReconstructionResult:
    """Reconstruct the first ``limit`` (default all) images of ``folder`` with ``pipeline.reconstruct``
    and score them (see the module doc). Needs at least 2 images (a covariance)."""
    count = len(folder) if limit is None else min(limit, len(folder))
    if count < 2:
        raise ValueError(f"{folder.root}: need at least 2 images for a reconstruction FID, got {count}")
    transform = eval_transform(image_size)
    psnrs, ssims, input_features, output_features = [], [], [], []
    with tqdm(total=count, unit="img", desc="eval-tokenizer", disable=not progress) as bar:
        for start in range(0, count, batch_size):
            indices = range(start, min(start + batch_size, count))
            inputs = torch.stack([transform(folder.load(index)[0]) for index in indices])
            # Rounded to uint8 as a saved reconstruction PNG; the inputs are exact uint8 / 255 already.
            outputs = (pipeline.reconstruct(inputs).float().cpu().clamp(0, 1) * 255).round() / 255
            psnrs.append(psnr(outputs, inputs))
            ssims.append(ssim(outputs, inputs))
            for images, store in ((inputs, input_features), (outputs, output_features)):
                quantized = (images * 255).round().to(torch.uint8)
                batch = torch.stack([extractor.preprocess(image) for image in quantized])
                store.append(extractor(batch)[0].float().cpu())
            bar.update(len(indices))
    first = FeatureStatistics.from_features(torch.cat(output_features), extractor.name)
    second = FeatureStatistics.from_features(torch.cat(input_features), extractor.name)
    return ReconstructionResult(count, float(torch.cat(psnrs).mean()), float(torch.cat(ssims).mean()),
                                frechet_distance(first, second))
