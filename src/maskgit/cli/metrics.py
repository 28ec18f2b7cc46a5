"""``maskgit fid`` and ``maskgit eval-tokenizer``: the numbers of the papers' tables.

``fid A B`` prints the FID of A against B on its last line (``FID: <value>``), after any of IS, KID
and precision/recall. ``fid A --save-stats OUT.npz`` precomputes A's statistics for later runs.
``eval-tokenizer`` reconstructs a folder and reports rFID, PSNR and SSIM.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from maskgit.cli.errors import CLIError
from maskgit.devices import DEVICE_HELP, resolve_device
from maskgit.models.inference import PRECISIONS

MAX_BATCH_SIZE = 1024
MAX_KID_SUBSETS = 10_000


def _add_feature_options(parser: argparse.ArgumentParser) -> None:
    from maskgit.evaluation.resize import RESIZE_PROTOCOLS

    parser.add_argument("--features", default="inception",
                        help="feature network: inception (default; needs the weights file), fashion-mnist (the shipped "
                        "classifier, offline), or the path of a TorchScript module taking float (B, 3, H, W) in [0, 1]")
    parser.add_argument("--resize", choices=RESIZE_PROTOCOLS, default="clean",
                        help="how Inception inputs reach 299 px: clean (PIL bicubic, clean-fid; default) or "
                        "legacy (TensorFlow 1.x bilinear, the TF/ADM evaluators)")
    parser.add_argument("--inception-weights", type=Path, default=None,
                        help="pt_inception-2015-12-05-6726825d.pth (default: the cache, $MASKGIT_HOME/downloads/fid-inception/)")
    parser.add_argument("--batch-size", type=int, default=50, help="images per forward pass (default 50)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)


def _device(args: argparse.Namespace) -> str:
    return str(resolve_device(args.device))


def _feature_extractor(args: argparse.Namespace):
    from maskgit.evaluation.features import FeatureOptions, build_feature_extractor

    if not 1 <= args.batch_size <= MAX_BATCH_SIZE:
        raise CLIError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}, got {args.batch_size}")
    options = FeatureOptions(device=_device(args), inception_weights=args.inception_weights, resize=args.resize)
    return build_feature_extractor(args.features, options)


def _metric_options(args: argparse.Namespace):
    from maskgit.evaluation.compare import MetricOptions

    if not 1 <= args.splits <= 1000:
        raise CLIError(f"--splits must be between 1 and 1000, got {args.splits}")
    if not 1 <= args.kid_subsets <= MAX_KID_SUBSETS:
        raise CLIError(f"--kid-subsets must be between 1 and {MAX_KID_SUBSETS}, got {args.kid_subsets}")
    if args.kid_subset_size < 2:
        raise CLIError(f"--kid-subset-size must be at least 2, got {args.kid_subset_size}")
    return MetricOptions(inception_score=args.inception_score, kid=args.kid, precision_recall=args.precision_recall,
                         is_splits=args.splits, kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size)


def run_fid(args: argparse.Namespace) -> int:
    from maskgit.evaluation.compare import compare, input_statistics
    from maskgit.evaluation.features import extract_features
    from maskgit.evaluation.sources import open_input

    options = _metric_options(args)
    if args.second is None and args.save_stats is None:
        raise CLIError("give two inputs to compare (A B), or one with --save-stats OUT.npz")
    if args.save_stats is not None and args.save_stats.suffix != ".npz":
        raise CLIError(f"--save-stats must name an .npz file, got {args.save_stats}")
    if args.second is None and (options.inception_score or options.kid or options.precision_recall):
        raise CLIError("--is, --kid and --precision-recall need a second input to compare with")
    first = open_input(args.first)
    second = open_input(args.second) if args.second is not None else None
    if args.save_stats is not None and first.images is None:
        raise CLIError(f"--save-stats: {first.path} holds statistics already, not images")
    extractor = _feature_extractor(args)
    progress = not args.quiet
    if second is None:
        features = extract_features(extractor, first.images, args.batch_size, progress)
        statistics = input_statistics(first, extractor, features)
        statistics.save(args.save_stats)
        print(f"saved {statistics.dim}-d statistics of {statistics.count} images ({extractor.name}) to {args.save_stats}")
        return 0
    result = compare(first, second, extractor, options, batch_size=args.batch_size, progress=progress)
    if args.save_stats is not None:
        result.first.save(args.save_stats)
        print(f"saved statistics of {first.path} to {args.save_stats}")
    lines = [f"features: {extractor.name}"]
    if result.inception_score is not None:
        lines.append(f"IS: {result.inception_score.mean:.4f} ± {result.inception_score.std:.4f}")
    if result.kid is not None:
        lines.append(f"KID: {result.kid.mean:.6f} ± {result.kid.std:.6f}")
    if result.precision_recall is not None:
        lines.append(f"precision: {result.precision_recall.precision:.4f}")
        lines.append(f"recall: {result.precision_recall.recall:.4f}")
    lines.append(f"FID: {result.fid:.4f}")
    print("\n".join(lines))
    return 0


def run_eval_tokenizer(args: argparse.Namespace) -> int:
    from maskgit.data.datasets import ImageDataset, ImageFolder
    from maskgit.data.transforms import eval_transform
    from maskgit.evaluation.reconstruction import evaluate_tokenizer
    from maskgit.pipeline import MaskGIT

    if args.limit is not None and args.limit < 2:
        raise CLIError(f"--limit must be at least 2 (a covariance needs two images), got {args.limit}")
    if args.image_size is not None and not 8 <= args.image_size <= 2048:
        raise CLIError(f"--image-size must be between 8 and 2048, got {args.image_size}")
    folder = ImageFolder(args.images)
    extractor = _feature_extractor(args)
    pipeline = MaskGIT.from_pretrained(args.model, device=_device(args), precision=args.precision)
    size = args.image_size or pipeline.image_size
    images = ImageDataset(folder, eval_transform(size), image_size=size, train=False, source=str(args.images))
    # The seeds' protocol: each reconstruction rounded to uint8, as a saved PNG, before it is scored.
    scores = evaluate_tokenizer(pipeline.tokenizer, images, max_images=args.limit, batch_size=args.batch_size,
                                quantize=True, extractor=extractor, progress=not args.quiet)
    if args.out is not None:
        from maskgit.io import atomic_write_text

        numbers = {"model": args.model, "images": str(args.images), "image_size": size, "features": extractor.name,
                   "count": scores.images, "psnr": scores.psnr, "ssim": scores.ssim, "fid": scores.fid,
                   "codebook_usage_percent": scores.codebook_usage_percent,
                   "codebook_perplexity": scores.codebook_perplexity}
        atomic_write_text(args.out, json.dumps(numbers, indent=2) + "\n")
    print(f"images: {scores.images} at {size}x{size}")
    print(f"PSNR: {scores.psnr:.4f} dB")
    print("SSIM: - (images under 11 px)" if scores.ssim is None else f"SSIM: {scores.ssim:.4f}")
    print(f"codebook: {scores.codebook_usage_percent:.1f} % of codes used, perplexity {scores.codebook_perplexity:.1f}")
    print(f"rFID: {scores.fid:.4f}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fid", help="FID (and IS, KID, precision/recall) between two image sets or statistics",
        description="Compare A (judged) with B (reference). Each is an image folder, an ADM-style .npz "
        "(arr_0: uint8 N,H,W,3) or a statistics .npz (mu, sigma). The FID is printed on the last line.")
    parser.add_argument("first", type=Path, metavar="A", help="images to judge: folder, .npz, or statistics")
    parser.add_argument("second", type=Path, nargs="?", default=None, metavar="B", help="reference: folder, .npz, or statistics")
    _add_feature_options(parser)
    parser.add_argument("--is", dest="inception_score", action="store_true", help="also the Inception Score of A")
    parser.add_argument("--kid", action="store_true", help="also KID (both inputs need images)")
    parser.add_argument("--precision-recall", action="store_true", help="also precision and recall, k=3 (both need images)")
    parser.add_argument("--splits", type=int, default=10, help="Inception Score splits (default 10)")
    parser.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (default 100)")
    parser.add_argument("--kid-subset-size", type=int, default=1000, help="KID subset size (default 1000)")
    parser.add_argument("--save-stats", type=Path, default=None, metavar="OUT.npz", help="write A's statistics (mu, sigma)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run_fid)

    parser = subparsers.add_parser(
        "eval-tokenizer", help="reconstruction FID, PSNR and SSIM of a tokenizer over an image folder",
        description="Short-side bicubic resize and centre crop (the seeds' protocol), encode, decode; "
        "rFID of the reconstructions against the preprocessed inputs, mean PSNR and SSIM.")
    parser.add_argument("--model", default="fashion-mnist", help="a pipeline folder or model name (its tokenizer is used)")
    parser.add_argument("--images", type=Path, required=True, help="folder of images (searched recursively)")
    parser.add_argument("--image-size", type=int, default=None, help="resize and crop to this size (default: the model's)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                        help="weights and compute dtype of the tokenizer (int8 keeps the tokenizer in fp32)")
    parser.add_argument("--out", type=Path, default=None, help="also write the numbers to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_feature_options(parser)
    parser.set_defaults(run=run_eval_tokenizer)
