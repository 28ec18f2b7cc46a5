"""``maskgit sample``: the class-balanced sample set of an FID evaluation (50 per class by default).

Runs alone or under ``torchrun``, where each process writes its share (``maskgit.runs.Run.write``).
The output folder works as ``generate``'s: the manifest records the model, classes, seed and the
whole sampler, and ``--resume`` continues only a run with the same settings, so images of two
settings never mix in one folder.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from maskgit.cli import options
from maskgit.cli.errors import CLIError


def run_sample(args: argparse.Namespace) -> int:
    from maskgit.class_names import parse_class_list
    from maskgit.distributed import setup_distributed
    from maskgit.io import check_output_dir
    from maskgit.runs import RunPlan, pack_npz
    from maskgit.runs.manifest import SampleSettings
    from maskgit.validation import check_count

    options.check_batch_size(args)
    options.check_per_class(args.num_per_class, "--num-per-class")
    if args.npz is not None and args.npz.suffix != ".npz":
        raise CLIError(f"--npz must name an .npz file, got {args.npz}")
    check_output_dir(args.out)
    with setup_distributed(args.device) as process:  # every rank leaves once rank 0 has packed and reported
        args.device = str(process.device)
        pipeline = options.load_pipeline(args)
        sampler = options.sampler_from_args(args, pipeline.default_sampler())
        names = pipeline.class_names
        classes = parse_class_list(args.classes, names) if args.classes else list(range(len(names)))
        check_count(len(classes) * args.num_per_class, args.max_images)
        run = options.start_run(args, pipeline, RunPlan(tuple(classes), args.num_per_class), sampler)
        settings = run.settings(SampleSettings, model=args.model, class_names=names, **options.how_it_runs(args),
                                npz=None if args.npz is None else str(args.npz))
        # Rank 0 owns the folder (lock, checks, manifest); the others write their shares into it.
        folder = options.output_folder(args, settings, run.plan.paths, []) if process.is_main else None
        with folder.open() if folder is not None else contextlib.nullcontext():
            process.barrier()  # the folder is checked and prepared before any rank writes to it
            written = run.write(pipeline, args.out, batch_size=args.batch_size, resume=args.resume, rank=process.rank,
                                world_size=process.world_size,
                                progress="sample" if process.is_main and not args.quiet else None)
            total = sum(process.gather_objects(len(written)))  # also waits for every rank to finish
            if folder is not None:
                if args.npz is not None:
                    pack_npz(run.plan, args.out, args.npz)
                folder.finish()
        if process.is_main:
            print(f"wrote {total} image(s) ({len(run.plan) - total} kept) to {args.out}: {len(classes)} classes x "
                  f"{args.num_per_class}" + (f"; packed into {args.npz}" if args.npz is not None else ""))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample", help="N images per class as PNG for FID (resumable; shards under torchrun)",
        description="Write --num-per-class images of every class (or of --class) to OUT/<class>/<i>.png. Image i "
        "depends only on (--seed, i). Under torchrun each process writes every WORLD_SIZE-th image.")
    options.add_model_options(parser)
    parser.add_argument("--class", dest="classes", action="append", default=None,
                        help="class index or name, repeatable or a comma list (default: every class of the model)")
    parser.add_argument("--num-per-class", type=int, default=50, help="images per class (default 50: 50k for ImageNet)")
    parser.add_argument("--npz", type=Path, default=None, help="also pack the set into this ADM-format .npz")
    options.add_sampler_options(parser)
    options.add_run_options(parser, seed=0, batch_size=16)
    parser.set_defaults(run=run_sample)
