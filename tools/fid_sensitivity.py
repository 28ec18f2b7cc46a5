"""How much image error the shipped evaluator's FID tolerates: the floor's real training images,
degraded in simple ways or passed through tokenizers, scored against the test set.

    python tools/fid_sensitivity.py [--per-class 100] [--tokenizer NAME_OR_FOLDER ...] [--json PATH]

Every row is ``GenerationEvaluator.reconstruction``: the floor's images (``--per-class`` of each
class, the ones the floor itself uses) go through a "codec", are rounded to uint8, and are scored like
samples. Unchanged, they score exactly the floor. Blur and noise show how little pixel error the
feature space forgives; tokenizers show where a model's samples can get at best, since samples with
exactly the tokens of real images would score their row. ``--json`` writes the rows, and their
table beside them (``benchmarks/tables.py``; the docs include
``benchmarks/results/fid-sensitivity.md``).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from maskgit.cli.evaluate import load_tokenizer
from maskgit.evaluation.evaluate import GenerationEvaluator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from tables import device_name, provenance, write_results  # noqa: E402


class Degradation(torch.nn.Module):
    """A stand-in tokenizer whose "ids" are the images themselves, decoded through ``transform``."""

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.transform = transform

    def encode_to_ids(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def decode_ids(self, images: torch.Tensor) -> torch.Tensor:
        return self.transform(images)


def gaussian_blur(sigma: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Separable Gaussian blur of float (B, C, H, W), radius 3, replicated borders."""
    taps = torch.arange(-3, 4, dtype=torch.float32)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()

    def blur(images: torch.Tensor) -> torch.Tensor:
        channels = images.shape[1]
        rows = kernel.view(1, 1, 1, 7).repeat(channels, 1, 1, 1)
        images = F.conv2d(F.pad(images, (3, 3, 0, 0), mode="replicate"), rows, groups=channels)
        return F.conv2d(F.pad(images, (0, 0, 3, 3), mode="replicate"), rows.transpose(2, 3), groups=channels)

    return blur


def gaussian_noise(std: float, seed: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """Adds seeded N(0, std²) noise, the same on every channel, to float (B, C, H, W)."""

    def noise(images: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        values = torch.randn((images.shape[0], 1, *images.shape[2:]), generator=generator)
        return images + std * values.to(images.device)

    return noise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=100, help="floor images of each class (default 100)")
    parser.add_argument("--tokenizer", action="append", default=[], help="a model name or tokenizer folder (repeatable)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here, and their table beside them")
    args = parser.parse_args()
    if not 2 <= args.per_class <= 6000:
        raise SystemExit(f"--per-class must be in [2, 6000] (Fashion-MNIST's training images per class), got {args.per_class}")

    codecs: dict[str, torch.nn.Module] = {"unchanged": Degradation(lambda images: images)}
    codecs.update({f"Gaussian blur, sigma {s} px": Degradation(gaussian_blur(s)) for s in (0.4, 0.5, 0.6)})
    codecs.update({f"Gaussian noise, std {s}": Degradation(gaussian_noise(s)) for s in (0.01, 0.02, 0.04)})
    codecs.update({f"tokenizer {name}": load_tokenizer(name, "cpu").eval() for name in args.tokenizer})

    evaluator = GenerationEvaluator()
    labels = torch.arange(10).repeat_interleave(args.per_class)
    print(f"| {10 * args.per_class} training images | PSNR | FID | x floor | accuracy |")
    print("| --- | ---: | ---: | ---: | ---: |")
    rows = []
    for name, codec in codecs.items():
        scores = evaluator.reconstruction(codec, labels)
        rows.append({"name": name, "psnr": None if math.isinf(scores["psnr"]) else scores["psnr"], "fid": scores["fid"],
                     "fid_floor": scores["fid_floor"], "accuracy": scores["accuracy"]})
        psnr = "lossless" if rows[-1]["psnr"] is None else f"{scores['psnr']:.1f} dB"
        print(f"| {name} | {psnr} | {scores['fid']:.2f} | {scores['fid'] / scores['fid_floor']:.1f} "
              f"| {100 * scores['accuracy']:.1f} % |", flush=True)
    if args.json:
        data = {"kind": "fid-sensitivity", "provenance": provenance(device_name("cpu", torch.get_num_threads())),
                "images": len(labels), "rows": rows}
        print(f"wrote {args.json} and {write_results(args.json, data)}")


if __name__ == "__main__":
    main()
