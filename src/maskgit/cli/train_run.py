"""``maskgit train``: from a folder of images (or a built-in dataset) to a model, in one command.

Parses the arguments, plans the run (``maskgit.training.run.plan_run``: the data survey, the
recipe, the measured step times; printed before anything trains), runs it
(``execute_run``) and reports where the model, the samples and the scores are. Under
``torchrun --nproc_per_node N -m maskgit.cli train ...`` every process runs the same stages.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maskgit.devices import DEVICE_HELP

__all__ = ["register", "run"]

_EPILOG = """\
DATA is a folder with one subfolder per class (or train/ and val/ folders holding them), a folder
of images without classes (an unconditional model), or a built-in dataset: fashion-mnist, mnist.

The recipe follows from the data and the machine; --set SECTION.KEY=VALUE overrides any value of it
(sections: tokenizer, decoder, tokens, transformer, sampler; e.g. --set transformer.steps=2000,
--set tokenizer.model.codebook_size=1024, --set sampler.guidance=3). RUN/recipe.json lists them all.

--init fine-tunes trained weights: a model name (imagenet256, fashion-mnist), a saved pipeline
folder, or an official checkpoint pair TOKENIZER,TRANSFORMER (two files, comma-separated). The
tokenizer is kept (--set tokenizer.train=decoder fine-tunes its decoder alone, which keeps the token
ids); the transformer gets a new class table for DATA's classes.

examples:
  maskgit train photos/ --out runs/photos --budget 30m
  maskgit train fashion-mnist --out runs/fashion-mnist
  maskgit train photos/ --init imagenet256 --out runs/photos-in256 --budget 2h
  maskgit train photos/ --out runs/photos --budget 30m --resume     # after a crash: continues where it stopped
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model on your images in one command (tokenizer, tokens, transformer)",
        description="Train MaskGIT on a folder of images or a built-in dataset: the tokenizer, the token "
        "extraction and the transformer, with a recipe chosen from the data and the machine. Writes "
        "RUN/pipeline (for generate, serve and evaluate), RUN/samples.png and RUN/report.json.",
        epilog=_EPILOG,
    )
    parser.add_argument("data", metavar="DATA", help="an image folder, or fashion-mnist / mnist (see below)")
    parser.add_argument("--out", type=Path, required=True, metavar="RUN", help="the run folder")
    parser.add_argument("--budget", metavar="TIME", help="wall time for the whole run, e.g. 90s, 30m, 2h or 1h30m "
                        "(default: steps follow the number of images)")
    parser.add_argument("--image-size", type=int, metavar="N",
                        help="train at N x N pixels, a power of two from 16 to 1024 (default: from the images, at most 256)")
    parser.add_argument("--init", metavar="MODEL", help="start from trained weights: a model name, a pipeline folder "
                        "or TOKENIZER,TRANSFORMER checkpoints")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a value of the recipe (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in RUN (the same command again, plus --resume)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the recipe and its expected time (after measuring a few steps), write nothing, stop")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from maskgit.training.recipe import format_duration, parse_budget
    from maskgit.training.run import TrainRequest, execute_run, plan_run

    budget = parse_budget(args.budget) if args.budget is not None else None
    request = TrainRequest(str(args.data), args.image_size, budget, args.init, tuple(args.overrides))
    if not args.quiet:
        print(f"maskgit train: reading {args.data} and measuring a few steps of every stage ...", flush=True)
    plan = plan_run(request, args.out, resume=args.resume, device=args.device, progress=not args.quiet,
                    dry_run=args.dry_run)
    main = plan.dist is None or plan.dist.is_main
    if main:
        for note in plan.notes:
            print(f"note: {note}")
        done = [stage for stage in plan.stages_done if stage != "finish"]
        if done:
            print(f"resuming: {', '.join(done)} already done")
        print(plan.describe())
        if args.dry_run:
            print(plan.recipe.to_json())
            return 0
        print(f"recipe saved to {args.out / 'recipe.json'}", flush=True)
    if args.dry_run:
        return 0
    report = execute_run(plan, progress=not args.quiet)
    if main:
        tokenizer, transformer = report["tokenizer"], report["transformer"]
        ssim = f", SSIM {tokenizer['ssim']:.3f}" if "ssim" in tokenizer else ""
        print(f"tokenizer: held-out PSNR {tokenizer['psnr']:.2f} dB{ssim} ({tokenizer['images']} images)")
        print(f"transformer: held-out masked-token accuracy {100 * transformer['masked_accuracy']:.1f} % "
              f"(chance {100 * transformer['chance_accuracy']:.2f} %)")
        print(f"wrote {report['pipeline']}, {report['samples']} and {args.out / 'report.json'} "
              f"in {format_duration(report['total_seconds'])}")
        print(f"try: maskgit generate --model {report['pipeline']} --class {plan.facts.class_names[0]!r} --num 8")
    return 0
