"""``maskgit sample``: the class-balanced sample set of an FID evaluation (50 per class by default).

Runs alone or under ``torchrun`` (each rank writes its share, see ``maskgit.evaluation.samples``).
The output folder works as ``generate``'s (``maskgit.outputs.OutputFolder``): the manifest records
the model, classes, seed and the whole sampler, and ``--resume`` continues only a run with the same
settings, so images of two settings never mix in one folder.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from maskgit.cli import CLIError
from maskgit.cli.generate import (
    _add_model_options,
    _load_pipeline,
    _output_folder,
    _pipeline_sampler,
    _settings,
    add_sampler_options,
)

MAX_BATCH_SIZE = 4096


def run_sample(args: argparse.Namespace) -> int:
    from maskgit.class_names import parse_class_list
    from maskgit.distributed import setup_distributed
    from maskgit.evaluation.samples import SamplePlan, pack_npz, write_samples
    from maskgit.io import check_output_dir
    from maskgit.validation import check_count

    if not 1 <= args.batch_size <= MAX_BATCH_SIZE:
        raise CLIError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}, got {args.batch_size}")
    if args.npz is not None and args.npz.suffix != ".npz":
        raise CLIError(f"--npz must name an .npz file, got {args.npz}")
    check_output_dir(args.out)
    with setup_distributed(args.device) as process:  # every rank leaves once rank 0 has packed and reported
        args.device = str(process.device)
        pipeline = _load_pipeline(args)
        sampler = _pipeline_sampler(args, pipeline, editing=False)
        names = pipeline.class_names
        classes = parse_class_list(args.classes, names) if args.classes else list(range(len(names)))
        plan = SamplePlan(tuple(classes), args.num_per_class)
        check_count(len(plan), args.max_images)
        settings = _settings(args, sampler, classes=classes)
        paths = [plan.path(args.out, index) for index in range(len(plan))]
        # Rank 0 owns the folder (lock, checks, manifest); the others write their shares into it.
        folder = _output_folder(args, settings, paths, []) if process.is_main else None
        with folder.open() if folder is not None else contextlib.nullcontext():
            process.barrier()  # the folder is checked and prepared before any rank writes to it
            written = write_samples(pipeline, plan, args.out, sampler=sampler, seed=args.seed, batch_size=args.batch_size,
                                    rank=process.rank, world_size=process.world_size, progress=process.is_main and not args.quiet)
            total = sum(process.gather_objects(len(written)))  # also waits for every rank to finish
            if folder is not None:
                if args.npz is not None:
                    pack_npz(plan, args.out, args.npz)
                folder.finish()
        if process.is_main:
            print(f"wrote {total} image(s) ({len(plan) - total} kept) to {args.out}: {len(classes)} classes x "
                  f"{args.num_per_class}" + (f"; packed into {args.npz}" if args.npz is not None else ""))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample", help="N images per class as PNG for FID (resumable; shards under torchrun)",
        description="Write --num-per-class images of every class (or of --class) to OUT/<class>/<i>.png. Image i "
        "depends only on (--seed, i). Under torchrun each process writes every WORLD_SIZE-th image.")
    _add_model_options(parser)
    parser.add_argument("--class", dest="classes", action="append", default=None,
                        help="class index or name, repeatable or a comma list (default: every class of the model)")
    parser.add_argument("--num-per-class", type=int, default=50, help="images per class (default 50: 50k for ImageNet)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; image i depends only on (seed, i) (default 0)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    parser.add_argument("--npz", type=Path, default=None, help="also pack the set into this ADM-format .npz")
    add_sampler_options(parser)
    parser.set_defaults(run=run_sample)
