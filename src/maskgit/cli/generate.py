"""``maskgit generate``: ``--num`` images of each ``--class``, and a grid with one row per class.

The run is ``maskgit.runs.Run``'s; the output folder's rules are ``maskgit.cli.options``'.
"""

from __future__ import annotations

import argparse

from maskgit.cli import options
from maskgit.io import check_output_dir
from maskgit.validation import check_count


def run_generate(args: argparse.Namespace) -> int:
    from maskgit.class_names import parse_class_list
    from maskgit.runs import RunPlan
    from maskgit.runs.manifest import GenerateSettings

    options.check_batch_size(args)
    options.check_per_class(args.num, "--num")
    check_output_dir(args.out)
    pipeline = options.load_pipeline(args)
    sampler = options.sampler_from_args(args, pipeline.default_sampler())
    classes = parse_class_list(args.classes, pipeline.class_names)
    check_count(len(classes) * args.num, args.max_images)
    run = options.start_run(args, pipeline, RunPlan(tuple(classes), args.num), sampler)
    settings = run.settings(GenerateSettings, model=args.model, class_names=pipeline.class_names,
                            **options.how_it_runs(args))
    with options.output_folder(args, settings, run.plan.paths, ["grid.png"]).open() as folder:
        written = run.write(pipeline, args.out, batch_size=args.batch_size, resume=args.resume,
                            progress=None if args.quiet else "generate")
        run.save_grid(args.out, args.out / "grid.png", pipeline.class_names)
        folder.finish()
    print(f"wrote {len(written)} image(s) ({len(run.plan) - len(written)} kept) to {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="class-conditional generation",
                                   description="Generate --num images for each --class.")
    options.add_model_options(parser)
    parser.add_argument("--class", dest="classes", action="append", required=True,
                        help="class index or name; repeatable, or a comma list (e.g. --class 90 --class 'ox,tench')")
    parser.add_argument("--num", type=int, default=1, help="images per class (default 1)")
    options.add_sampler_options(parser)
    options.add_run_options(parser)
    parser.set_defaults(run=run_generate)
