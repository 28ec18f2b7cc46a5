"""``maskgit evaluate`` (score generated images with the shipped classifier) and
``maskgit train-classifier`` (train that classifier)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from maskgit.cli.errors import CLIError
from maskgit.devices import DEVICE_HELP

if TYPE_CHECKING:
    import torch

    from maskgit.models import VQGAN

__all__ = ["register", "run_evaluate", "run_train_classifier", "load_tokenizer"]

# Bounds on user-controlled sizes: enough for any sensible run, small enough to fail fast.
_MAX_EPOCHS = 200
_MAX_THREADS = 256
_MAX_WIDTH = 1024


def register(subparsers: argparse._SubParsersAction) -> None:
    evaluate = subparsers.add_parser(
        "evaluate",
        help="score generated images with the Fashion-MNIST classifier",
        description="Score a folder of images, or the output folder of `maskgit generate`, with the "
        "shipped Fashion-MNIST classifier: accuracy against the requested class, FID in the "
        "classifier's feature space (beside the train-vs-test floor on as many images) and "
        "diversity within each class relative to real images. With --tokenizer, also its "
        "reconstruction PSNR / SSIM on the test set.",
    )
    evaluate.add_argument(
        "images",
        type=Path,
        help="a `maskgit generate` output folder (its manifest.json gives each image's class), or a "
        "folder with one subfolder per class (named by index, e.g. 0003, or by class name)",
    )
    evaluate.add_argument("--classifier", type=Path, help="a classifier folder (default: the shipped one)")
    evaluate.add_argument(
        "--tokenizer",
        help="also score this tokenizer (a model name or folder): PSNR and SSIM of its test-set reconstructions, "
        "and the FID of its reconstructions of the floor's training images",
    )
    evaluate.add_argument(
        "--tokenizer-images", type=int, default=1000, help="test images for --tokenizer (default 1000)"
    )
    evaluate.add_argument("--data", default=None, help="the folder of the Fashion-MNIST idx files (default: Debian's)")
    evaluate.add_argument("--json", dest="json_path", type=Path, help="also write the results as JSON here")
    evaluate.add_argument("--device", default="auto", help=DEVICE_HELP)
    evaluate.set_defaults(run=run_evaluate)

    train = subparsers.add_parser(
        "train-classifier",
        help="train the Fashion-MNIST classifier that `maskgit evaluate` uses",
        description="Train the evaluator's Fashion-MNIST CNN (seeded) and save it as a classifier folder "
        "(model.safetensors, config.json, training.json).",
    )
    train.add_argument("--out", type=Path, required=True, help="the classifier folder to write")
    train.add_argument("--epochs", type=int, default=10, help="passes over the 60,000 training images (default 10)")
    train.add_argument("--seed", type=int, default=0, help="seed of the initialisation, data order and augmentation")
    train.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: a busy machine slows several threads down more than one)")
    train.add_argument("--precision", choices=("bf16", "fp32"), default="bf16", help="bf16 autocast (default) or fp32")
    train.add_argument("--data", default=None, help="the folder of the Fashion-MNIST idx files (default: Debian's)")
    train.add_argument(
        "--channels", default="32,64,128",
        help="the three conv stages' widths, A,B,C (default 32,64,128, the evaluator's). Another width "
        "and --seed make a network for the tokenizer's perceptual loss that is not the evaluator",
    )
    train.add_argument("--feature-size", type=int, default=128, help="width of the feature layer (default 128)")
    train.set_defaults(run=run_train_classifier)


def run_train_classifier(args: argparse.Namespace) -> int:
    import torch

    from maskgit.data.idx import FASHION_MNIST_ROOT
    from maskgit.models.classifier import ClassifierConfig
    from maskgit.training.classifier_trainer import ClassifierTrainConfig, train_classifier

    if not 1 <= args.epochs <= _MAX_EPOCHS:
        raise CLIError(f"--epochs must be in [1, {_MAX_EPOCHS}], got {args.epochs}")
    if not 1 <= args.threads <= _MAX_THREADS:
        raise CLIError(f"--threads must be in [1, {_MAX_THREADS}], got {args.threads}")
    try:
        channels = tuple(int(part) for part in args.channels.split(","))
    except ValueError:
        channels = ()
    if len(channels) != 3 or not all(1 <= c <= _MAX_WIDTH for c in channels):
        raise CLIError(f"--channels must be three widths in [1, {_MAX_WIDTH}] like 32,64,128, got {args.channels!r}")
    if not 1 <= args.feature_size <= _MAX_WIDTH:
        raise CLIError(f"--feature-size must be in [1, {_MAX_WIDTH}], got {args.feature_size}")
    torch.set_num_threads(args.threads)
    model = ClassifierConfig(channels=channels, feature_size=args.feature_size)
    config = ClassifierTrainConfig(model=model, epochs=args.epochs, seed=args.seed, precision=args.precision)
    summary = train_classifier(args.out, config, data_root=args.data or FASHION_MNIST_ROOT)
    print(f"test accuracy {summary['test_accuracy']:.4f} after {summary['wall_seconds']:.0f} s; wrote {args.out}")
    return 0


def load_tokenizer(name: str, device: str | torch.device) -> VQGAN:
    """A VQGAN from a tokenizer folder or checkpoint, or the tokenizer of a pipeline (folder or
    model name), on ``device``: what ``--tokenizer`` names."""
    from maskgit.checkpoints.pipeline_folder import PIPELINE_INDEX
    from maskgit.models import VQGAN
    from maskgit.pipeline import MaskGIT
    from maskgit.registry import SHIPPED_MODELS

    path = Path(name)
    if name in SHIPPED_MODELS or (path / PIPELINE_INDEX).is_file():
        return MaskGIT.from_pretrained(name, device=device).tokenizer
    return VQGAN.from_pretrained(path, device=device)


def run_evaluate(args: argparse.Namespace) -> int:
    import json

    from maskgit.data.idx import FASHION_MNIST_ROOT
    from maskgit.devices import resolve_device
    from maskgit.evaluation.classifier import SHIPPED_CLASSIFIER, load_classifier
    from maskgit.evaluation.evaluate import evaluate_folder, format_report
    from maskgit.evaluation.features import ClassifierFeatures
    from maskgit.io import atomic_write_text

    if args.tokenizer is not None and importlib.util.find_spec("torchmetrics") is None:
        raise CLIError("--tokenizer needs torchmetrics for SSIM: pip install 'maskgit[eval]'")
    if not 1 <= args.tokenizer_images <= 10_000:
        raise CLIError(f"--tokenizer-images must be in [1, 10000] (the test set), got {args.tokenizer_images}")
    device = resolve_device(args.device)  # checked before anything is read
    name = str(args.classifier) if args.classifier is not None else SHIPPED_CLASSIFIER
    features = ClassifierFeatures(load_classifier(args.classifier, device=device), name, device)
    tokenizer = load_tokenizer(args.tokenizer, device) if args.tokenizer is not None else None
    results = evaluate_folder(
        args.images, features=features, tokenizer=tokenizer, tokenizer_name=args.tokenizer or "tokenizer",
        tokenizer_images=args.tokenizer_images, data_root=args.data or FASHION_MNIST_ROOT,
    )
    print(format_report(results))
    if args.json_path is not None:
        atomic_write_text(args.json_path, json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json_path}")
    return 0
