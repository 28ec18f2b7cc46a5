"""``maskgit train-tokenizer`` and ``maskgit train-transformer``.

Both take a config (``--config`` preset name or YAML/JSON file), overridden by flags and by
``--set KEY=VALUE`` (dotted keys such as ``model.filters=64``). ``--resume`` continues a run from
its newest readable checkpoint (or a given one) with the config stored there; flags still override
it. ``--resume`` with the ``--config`` that started the run is accepted when the two configs agree,
and refused with the differences when they do not.
Run under ``torchrun --nproc_per_node N -m maskgit.cli ...`` for several processes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from maskgit.cli.errors import CLIError
from maskgit.data import build_dataset
from maskgit.io import check_output_dir

__all__ = ["register", "run_tokenizer", "run_transformer"]


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        help="a preset name (tiny, fashion-mnist, imagenet256; for train-tokenizer also fashion-mnist-decoder, "
        "which fine-tunes a trained tokenizer's decoder) or a YAML/JSON file",
    )
    parser.add_argument(
        "--data",
        help="training data: 'fashion-mnist', 'fashion-mnist:DIR', 'mnist:DIR' or an image folder "
        "(one subfolder per class)",
    )
    parser.add_argument("--eval-data", help="evaluation data (same forms as --data); its 'test' split is used")
    parser.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, logs, samples, exported model")
    parser.add_argument("--steps", type=int, help="total optimizer steps")
    parser.add_argument("--batch-size", type=int, help="global batch size per optimizer step")
    parser.add_argument("--seed", type=int, help="random seed of the run (weights, data order, sampling)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="CHECKPOINT",
        help="continue from a checkpoint file, or (no value) from the newest readable one in --out",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set learning_rate=3e-4 --set model.filters=64",
    )
    parser.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bar")


def register(subparsers: argparse._SubParsersAction) -> None:
    tokenizer = subparsers.add_parser(
        "train-tokenizer",
        help="train a VQGAN tokenizer",
        description="Train a VQGAN tokenizer with the official recipe (L2 + commitment + entropy + "
        "StyleGAN discriminator). Writes OUT/tokenizer (VQGAN.from_pretrained reads it).",
    )
    _add_common(tokenizer)
    tokenizer.set_defaults(run=run_tokenizer)

    transformer = subparsers.add_parser(
        "train-transformer",
        help="train the masked transformer on tokens",
        description="Train a MaskGIT transformer on a token file (maskgit extract-tokens) or on images "
        "encoded by --tokenizer. Writes OUT/transformer and, with a tokenizer, OUT/pipeline "
        "(MaskGIT.from_pretrained reads it).",
    )
    _add_common(transformer)
    transformer.add_argument("--tokenizer", help="a saved VQGAN folder (needed for image data and for OUT/pipeline)")
    transformer.set_defaults(run=run_transformer)


def _config(stage: str, args: argparse.Namespace) -> tuple[Any, Path | None]:
    from maskgit.training import load_train_config
    from maskgit.training.checkpoint import find_readable_checkpoint
    from maskgit.training.config import config_differences, config_from_dict, parse_override

    check_output_dir(args.out)
    overrides: dict[str, Any] = {}
    for key in ("data", "eval_data", "steps", "batch_size", "seed"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if getattr(args, "tokenizer", None) is not None:
        overrides["tokenizer"] = args.tokenizer
    for text in args.overrides:
        key, value = parse_override(text)
        overrides[key] = value
    if args.resume is not None:
        checkpoint, state, skipped = find_readable_checkpoint(args.out if args.resume == "latest" else args.resume)
        for problem in skipped:
            print(f"maskgit {args.command}: skipping an unreadable checkpoint: {problem}", file=sys.stderr)
        if skipped:
            print(f"maskgit {args.command}: resuming from {checkpoint}", file=sys.stderr)
        if state["stage"] != stage:
            raise CLIError(f"{checkpoint} is a {state['stage']} checkpoint, not a {stage} one")
        stored = config_from_dict(stage, json.loads(state["config"]), source=str(checkpoint))
        if args.config is not None:
            # The command that started the run, repeated with --resume: fine if it means the same run.
            wanted = load_train_config(stage, args.config, overrides)
            differences = config_differences(stored, wanted)
            if differences:
                raise CLIError(
                    f"--config {args.config} does not match the run in {checkpoint}: {'; '.join(differences)}; "
                    "drop --config to resume with the stored config (flags still override it)"
                )
            return wanted, checkpoint
        return (stored.updated(overrides, source="flags") if overrides else stored), checkpoint
    if args.config is None:
        raise CLIError("--config is required: a preset (tiny, fashion-mnist, imagenet256, ...) or a YAML/JSON file")
    return load_train_config(stage, args.config, overrides), None


def _report(out: Path, results: dict[str, float], exported: list[str]) -> None:
    if results:
        print("evaluation: " + json.dumps({k: round(v, 4) for k, v in results.items()}))
    for item in exported:
        print(f"exported {out / item}")


def run_tokenizer(args: argparse.Namespace) -> int:
    from maskgit.training import TokenizerTrainer

    config, checkpoint = _config("tokenizer", args)
    if config.data is None:
        raise CLIError("no training data: pass --data (or set 'data' in the config)")
    size = config.model.image_size
    dataset = build_dataset(config.data, split="train", image_size=size, train=True)
    eval_dataset = None
    if config.eval_data is not None:
        eval_dataset = build_dataset(config.eval_data, split=config.eval_split, image_size=size, train=False)
    trainer = TokenizerTrainer(
        config, args.out, dataset=dataset, eval_dataset=eval_dataset, device=args.device,
        resume=checkpoint, progress=not args.quiet,
    )
    with trainer:  # every rank leaves the group once rank 0 has reported
        results = trainer.train()
        if trainer.dist.is_main:
            _report(args.out, results, ["tokenizer"])
    return 0


def _token_or_image_dataset(source: str, tokenizer: Any, *, split: str, train: bool) -> Any:
    """A token file (``maskgit extract-tokens``) if ``source`` is a file, else images."""
    if Path(source).is_file():
        from maskgit.data import TokenDataset

        return TokenDataset(source)
    if tokenizer is None:
        raise CLIError(f"{source} is image data; pass --tokenizer to encode it (or train on a token file)")
    return build_dataset(source, split=split, image_size=tokenizer.config.image_size, train=train)


def run_transformer(args: argparse.Namespace) -> int:
    from maskgit.models import VQGAN
    from maskgit.training import TransformerTrainer

    config, checkpoint = _config("transformer", args)
    if config.data is None:
        raise CLIError("no training data: pass --data (a token file or images) or set 'data' in the config")
    tokenizer = VQGAN.from_pretrained(config.tokenizer) if config.tokenizer is not None else None
    dataset = _token_or_image_dataset(config.data, tokenizer, split="train", train=True)
    eval_dataset = None
    if config.eval_data is not None:
        eval_dataset = _token_or_image_dataset(config.eval_data, tokenizer, split=config.eval_split, train=False)
    trainer = TransformerTrainer(
        config, args.out, dataset=dataset, tokenizer=tokenizer, eval_dataset=eval_dataset,
        device=args.device, resume=checkpoint, progress=not args.quiet,
    )
    with trainer:  # every rank leaves the group once rank 0 has reported
        results = trainer.train()
        if trainer.dist.is_main:
            _report(args.out, results, ["transformer"] + (["pipeline"] if tokenizer is not None else []))
    return 0
