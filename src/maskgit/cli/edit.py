"""``maskgit edit | inpaint | outpaint``: ``--num`` samples of one image edited as one ``--class``.

Each command checks its image and its region (a box, a mask, the sides to extend) against the model
and the limits, then runs as ``maskgit.runs.Run``: one file per sample, resumable one sample at a
time, with a progress bar over every window's decoding steps, known from the start.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from maskgit.cli import options
from maskgit.cli.errors import CLIError
from maskgit.io import check_output_dir
from maskgit.pipeline import EDIT_START_STEP, EDIT_STEPS
from maskgit.validation import check_count, check_pixels

# (pipeline, prepared image) → the tokens the mode generates (bool (h, w)), the settings that
# name its region, and its pipeline call (given the arguments every mode shares). It raises for a
# region that does not fit, before anything is written.
Region = Callable[[Any, torch.Tensor], tuple[torch.Tensor, dict[str, Any], Callable[..., torch.Tensor]]]


def _prepare_image(args: argparse.Namespace, pipeline: Any) -> torch.Tensor:
    """``--image`` as the editing modes take it: ``maskgit.inputs.prepare_image``, the API's rule."""
    from maskgit.imageio import open_image
    from maskgit.inputs import prepare_image

    picture = open_image(args.image, max_pixels=args.max_input_pixels)
    if args.keep_size:
        check_pixels(picture.height, picture.width, args.max_pixels, what=f"{args.image} (--keep-size)")
    factor = pipeline.tokenizer.config.downsample_factor
    try:
        return prepare_image(picture, pipeline.image_size, factor=factor, keep_size=args.keep_size)
    except ValueError as error:
        raise CLIError(f"{args.image}: {error} (drop --keep-size to resize it to the model's size)") from None


def _run_editing(args: argparse.Namespace, region: Region) -> int:
    from maskgit.class_names import parse_class_list
    from maskgit.imageio import save_image
    from maskgit.runs import RunPlan
    from maskgit.runs.manifest import EditSettings, InpaintSettings, OutpaintSettings

    options.check_batch_size(args)
    options.check_per_class(args.num, "--num")
    check_count(args.num, args.max_images)
    check_output_dir(args.out)
    pipeline = options.load_pipeline(args)
    sampler = options.sampler_from_args(args, pipeline.default_sampler(editing=True))
    classes = parse_class_list(args.classes, pipeline.class_names)
    if len(classes) != 1:
        raise CLIError(f"give exactly one --class for {args.command}, got {len(classes)}")
    image = _prepare_image(args, pipeline)
    unknown, record, call = region(pipeline, image)
    plan = RunPlan((classes[0],), args.num, prefix=args.command)
    run = options.start_run(args, pipeline, plan, sampler, unknown, record.get("start_step", 0))
    kind = {"edit": EditSettings, "inpaint": InpaintSettings, "outpaint": OutpaintSettings}[args.command]
    settings = run.settings(kind, model=args.model, class_names=pipeline.class_names, **options.how_it_runs(args),
                            image=str(args.image), keep_size=args.keep_size, **record)
    # keep_size: the image is already prepared, so the library must not resize a --keep-size one.
    make = run.editor(call, keep_size=args.keep_size)
    with options.output_folder(args, settings, plan.paths, ["input.png", "grid.png"]).open() as folder:
        written = run.write(pipeline, args.out, batch_size=args.batch_size, resume=args.resume, make=make,
                            progress=None if args.quiet else args.command)
        save_image(image, args.out / "input.png")
        run.save_grid(args.out, args.out / "grid.png")
        folder.finish()
    print(f"wrote {len(written)} image(s) ({len(plan) - len(written)} kept) to {args.out}")
    return 0


def run_edit(args: argparse.Namespace) -> int:
    from maskgit.sampling.editing import Box, latent_box_mask

    box = Box.parse(args.box)

    def region(pipeline: Any, image: torch.Tensor):
        height, width = image.shape[-2:]
        try:
            unknown = latent_box_mask(box, height, width, pipeline.tokenizer.config.downsample_factor)
        except ValueError as error:
            hint = "" if args.keep_size else (
                " (--box is in pixels of the image resized to the model's size; --keep-size keeps the image's own)"
            )
            raise CLIError(f"--box: {error}{hint}") from None
        record = {"box": (box.top, box.left, box.height, box.width), "start_step": args.start_step}
        return unknown, record, lambda **common: pipeline.edit(image, box, start_step=args.start_step, **common)

    return _run_editing(args, region)


def run_inpaint(args: argparse.Namespace) -> int:
    from maskgit.imageio import load_mask, open_image
    from maskgit.inputs import prepare_mask
    from maskgit.sampling.editing import token_mask_from_pixels

    def region(pipeline: Any, image: torch.Tensor):
        mask = load_mask(args.mask, max_pixels=args.max_input_pixels)
        try:
            # The mask follows the image through the same resize and crop (nearest keeps it binary).
            mask = prepare_mask(mask, open_image(args.image, max_pixels=args.max_input_pixels), pipeline.image_size,
                                keep_size=args.keep_size)
        except ValueError as error:
            raise CLIError(f"{args.mask}: {error}") from None
        if not mask.any():
            raise CLIError(f"{args.mask}: mask is empty (no white pixels): nothing to inpaint")
        unknown = token_mask_from_pixels(mask.cpu(), pipeline.tokenizer.config.downsample_factor)
        return unknown, {"mask": str(args.mask)}, lambda **common: pipeline.inpaint(image, mask, **common)

    return _run_editing(args, region)


def run_outpaint(args: argparse.Namespace) -> int:
    from maskgit.sampling.editing import Extend, outpaint_mask

    extend = Extend.parse(args.extend)

    def region(pipeline: Any, image: torch.Tensor):
        factor = pipeline.tokenizer.config.downsample_factor
        tokens = extend.in_tokens(factor)
        height, width = image.shape[-2:]
        check_pixels(height + (tokens.top + tokens.bottom) * factor, width + (tokens.left + tokens.right) * factor,
                     args.max_pixels, what="the outpainting canvas")
        unknown = outpaint_mask(height // factor, width // factor, tokens)
        record = {"extend": (extend.top, extend.right, extend.bottom, extend.left)}
        return unknown, record, lambda **common: pipeline.outpaint(image, extend, **common)

    return _run_editing(args, region)


def _add_parser(subparsers: argparse._SubParsersAction, name: str, run: Callable[[argparse.Namespace], int],
                help: str, description: str) -> argparse.ArgumentParser:
    """An editing command's parser with the flags every editing command has; the caller adds its region's."""
    parser = subparsers.add_parser(name, help=help, description=description)
    options.add_model_options(parser)
    parser.add_argument("--image", type=Path, required=True, help="input image")
    parser.add_argument("--class", dest="classes", action="append", required=True, help="class index or name")
    parser.add_argument("--num", type=int, default=4, help="samples to make (default 4)")
    parser.add_argument(
        "--keep-size", action="store_true",
        help="use the image at its own size (sides must be multiples of the token size) instead of "
        "resizing its short side to the model's resolution and centre-cropping",
    )
    options.add_sampler_options(parser)
    options.add_run_options(parser)
    parser.set_defaults(run=run)
    return parser


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = _add_parser(subparsers, "edit", run_edit, help="class-conditional box editing (the official demo's)",
                         description="Regenerate a box of the image as --class and blend it back.")
    parser.add_argument("--box", required=True, help="TOP,LEFT,HEIGHT,WIDTH in pixels of the image resized to the "
                        "model's size (of the image as it is with --keep-size)")
    parser.add_argument("--start-step", type=int, default=EDIT_START_STEP,
                        help=f"first decoding step (official: {EDIT_START_STEP} of {EDIT_STEPS})")
    parser = _add_parser(subparsers, "inpaint", run_inpaint, help="regenerate a free-form masked region",
                         description="Regenerate every token the mask touches; keep the pixels outside it.")
    parser.add_argument("--mask", type=Path, required=True, help="mask image, same size as --image; white = regenerate")
    parser = _add_parser(subparsers, "outpaint", run_outpaint, help="extend the canvas and generate the new border",
                         description="Extend each side by whole tokens and generate them.")
    parser.add_argument("--extend", required=True, help="TOP,RIGHT,BOTTOM,LEFT in pixels (rounded up to whole tokens)")
