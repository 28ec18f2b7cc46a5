"""``maskgit sample``: the class-balanced sample set of an FID evaluation (50 per class by default).

Runs alone or under ``torchrun`` (each rank writes its share, see ``maskgit.evaluation.samples``).
The manifest records the model, classes, seed and the whole sampler; a run that finds a manifest
continues it only if those match (``--resume``), so images of two settings never mix in one folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from maskgit.cli import CLIError
from maskgit.cli.generate import (
    _add_model_options,
    _load_pipeline,
    _pipeline_sampler,
    _settings,
    _write_manifest,
    add_sampler_options,
)

MAX_BATCH_SIZE = 4096
# Settings that decide the images: a resumed run must match them.
_IDENTITY = ("model", "classes", "per_class", "seed", "sampler", "precision")


def run_sample(args: argparse.Namespace) -> int:
    from maskgit.class_names import parse_class_list
    from maskgit.evaluation.samples import SamplePlan, pack_npz, write_samples
    from maskgit.training.distributed import setup_distributed

    if not 1 <= args.batch_size <= MAX_BATCH_SIZE:
        raise CLIError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}, got {args.batch_size}")
    if args.npz is not None and args.npz.suffix != ".npz":
        raise CLIError(f"--npz must name an .npz file, got {args.npz}")
    process = setup_distributed(args.device)
    try:
        args.device = str(process.device)
        pipeline = _load_pipeline(args)
        sampler = _pipeline_sampler(args, pipeline, editing=False)
        names = pipeline.class_names
        classes = parse_class_list(args.classes, names) if args.classes else list(range(len(names)))
        plan = SamplePlan(tuple(classes), args.num_per_class)
        settings = _settings(args, sampler, classes=classes, per_class=args.num_per_class, world_size=process.world_size)
        settings.pop("num_per_class")
        settings = json.loads(json.dumps(settings))  # as a manifest reads back (tuples become lists)
        _check_resume(args, plan, settings)
        process.barrier()  # every rank has checked the folder before any rank writes to it
        if process.is_main:
            _write_manifest(args.out, {**settings, "complete": False}, [])
        written = write_samples(pipeline, plan, args.out, sampler=sampler, seed=args.seed, batch_size=args.batch_size,
                                rank=process.rank, world_size=process.world_size, progress=process.is_main)
        total = sum(process.gather_objects(len(written)))
        process.barrier()
        if process.is_main:
            outputs = [str(plan.path(args.out, i).relative_to(args.out)) for i in range(len(plan))]
            if args.npz is not None:
                pack_npz(plan, args.out, args.npz)
            _write_manifest(args.out, {**settings, "complete": True}, outputs)
            print(f"wrote {total} image(s) ({len(plan) - total} kept) to {args.out}: {len(classes)} classes x "
                  f"{args.num_per_class}" + (f"; packed into {args.npz}" if args.npz is not None else ""))
    finally:
        process.close()
    return 0


def _check_resume(args: argparse.Namespace, plan, settings: dict) -> None:
    manifest = args.out / "manifest.json"
    existing = [plan.path(args.out, i) for i in range(len(plan)) if plan.path(args.out, i).is_file()]
    if not args.resume:
        if existing or manifest.is_file():
            raise CLIError(f"{args.out} already holds a sample set; pass --resume to continue it")
        return
    if not manifest.is_file():
        if existing:
            raise CLIError(f"{args.out} has images but no manifest.json: cannot check they match this run")
        return
    try:
        recorded = json.loads(manifest.read_text())["settings"]
    except (OSError, ValueError, KeyError) as error:
        raise CLIError(f"{manifest}: unreadable ({error})") from None
    different = [key for key in _IDENTITY if recorded.get(key) != settings.get(key)]
    if different:
        raise CLIError(f"--resume: {manifest} was written with different {', '.join(different)} "
                       f"({'; '.join(f'{k}: {recorded.get(k)!r}' for k in different)}); use another --out")


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
