"""``maskgit generate | reconstruct | edit | inpaint | outpaint``.

Every command validates all of its inputs (and its limits: ``--max-pixels``, ``--max-input-pixels``,
``--max-images``) before it writes anything, writes each PNG atomically, and records its settings in
``manifest.json`` through ``maskgit.outputs.OutputFolder``: ``--resume`` continues only a run with
the same settings and skips images already on disk (with a seed, the images it does write are the
same as an uninterrupted run's); a folder with files in it is refused unless ``--resume`` or
``--overwrite``; a lock stops a second writer. Without ``--seed`` a run draws a fresh random seed,
prints it and records it in the manifest, and ``--resume`` reuses that one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from maskgit.cli import CLIError
from maskgit.data.datasets import IMAGE_EXTENSIONS, image_files
from maskgit.devices import DEVICE_HELP
from maskgit.io import check_output_dir
from maskgit.outputs import OutputFolder
from maskgit.validation import MAX_IMAGES, MAX_INPUT_PIXELS, MAX_PIXELS, check_count, check_pixels

GRID_IMAGES = 64  # grid.png shows the first images only, so that its size stays bounded
GRID_ROWS, GRID_COLUMNS = 32, 16  # the same bound for the class grid of `generate`

# -- shared options -------------------------------------------------------------------------------


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="fashion-mnist",
                        help="a saved pipeline folder, a shipped model (fashion-mnist, the default) or a registered name "
                        "(imagenet256, imagenet512)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="weights and compute dtype of the models (fp16: CUDA only; default fp32)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the transformer step (CUDA graphs on a GPU); pays off for many images")
    parser.add_argument("--out", type=Path, required=True, help="output folder (empty, or new)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out (same settings), skipping images already written")
    parser.add_argument("--overwrite", action="store_true", help="delete the files of the earlier run in --out first")
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                        help=f"largest image the models work on, in pixels (default {MAX_PIXELS:,} = 2048x2048)")
    parser.add_argument("--max-input-pixels", type=int, default=MAX_INPUT_PIXELS,
                        help=f"largest image file read, in pixels (default {MAX_INPUT_PIXELS:,} = 8192x8192)")
    parser.add_argument("--max-images", type=int, default=MAX_IMAGES,
                        help=f"most images one run writes (default {MAX_IMAGES:,})")


def add_sampler_options(parser: argparse.ArgumentParser) -> None:
    """The sampler flags shared by generate, edit, inpaint and outpaint (and ``sample``). Each
    one left out keeps the model's own default sampler's value."""
    from maskgit.sampling import GUIDANCE_SCHEDULES, SAMPLERS

    group = parser.add_argument_group("sampler (flags left out keep the model's default sampler)")
    group.add_argument("--sampler", choices=tuple(SAMPLERS), default=None,
                       help="which positions each step fixes: confidence (official), halton or random")
    group.add_argument("--steps", type=int, default=None,
                       help="decoding steps (model default; official: 16 for generate, 12 for editing)")
    group.add_argument("--schedule", default=None,
                       help="mask schedule: cosine, linear, square, cubic, sqrt, powX, log, exp")
    group.add_argument("--temperature", type=float, default=None,
                       help="choice temperature of the confidence sampler's re-masking noise (official 4.5)")
    group.add_argument("--softmax-temperature", default=None, metavar="T|T0,T1",
                       help="divides the logits before sampling; T0,T1 anneals linearly over the steps")
    group.add_argument("--top-k", type=int, default=None, help="sample among the K most likely tokens only")
    group.add_argument("--guidance", type=float, default=None,
                       help="classifier-free guidance scale (needs a model trained with class dropout)")
    group.add_argument("--guidance-schedule", choices=GUIDANCE_SCHEDULES, default=None,
                       help="guidance scale over the steps: constant, linear (0 to SCALE) or cosine")


# Sampler fields and the flags that set them, for error messages in the user's terms.
_SAMPLER_FLAGS = {
    "num_steps": "--steps", "schedule": "--schedule", "choice_temperature": "--temperature",
    "softmax_temperature": "--softmax-temperature", "top_k": "--top-k", "guidance": "--guidance",
    "guidance_schedule": "--guidance-schedule",
}


def _parse_softmax_temperature(text: str) -> float | tuple[float, float]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, 2):
        raise CLIError(f"--softmax-temperature must be T or T0,T1 (numbers > 0), got {text!r}")
    return values[0] if len(values) == 1 else values


def sampler_from_args(args: argparse.Namespace, default: Any) -> Any:
    """The sampler the flags describe (``maskgit.sampling.sampler_from_options``): ``default`` (the
    model's sampler) with every given flag applied; ``--sampler`` switches the kind and keeps the
    shared settings. Errors name the flags."""
    from maskgit.sampling import sampler_from_options

    options = {"sampler": args.sampler, "num_steps": args.steps, "schedule": args.schedule,
               "choice_temperature": args.temperature, "top_k": args.top_k, "guidance": args.guidance,
               "guidance_schedule": args.guidance_schedule}
    if args.softmax_temperature is not None:
        options["softmax_temperature"] = _parse_softmax_temperature(args.softmax_temperature)
    try:
        return sampler_from_options({k: v for k, v in options.items() if v is not None}, default)
    except ValueError as error:
        message = str(error)
        for field, flag in _SAMPLER_FLAGS.items():
            if message.startswith(field + " "):
                message = flag + message[len(field):]
        raise CLIError(message) from None


def _pipeline_sampler(args: argparse.Namespace, pipeline: Any, editing: bool) -> Any:
    """The run's sampler, checked against the model before anything is written."""
    sampler = sampler_from_args(args, pipeline.default_sampler(editing=editing))
    sampler.check_guidance(pipeline.transformer.config.null_class_id)
    return sampler


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed >= 0; image i depends only on (seed, i) (default: a fresh random seed, "
                        "printed and recorded in manifest.json; --resume reuses the recorded one)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")


def _add_edit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", type=Path, required=True, help="input image")
    parser.add_argument("--class", dest="classes", action="append", required=True, help="class index or name")
    parser.add_argument("--num", type=int, default=4, help="samples to make (default 4)")
    parser.add_argument(
        "--keep-size", action="store_true",
        help="use the image at its own size (sides must be multiples of the token size) instead of "
        "resizing its short side to the model's resolution and centre-cropping",
    )


def _load_pipeline(args: argparse.Namespace):
    from maskgit.pipeline import MaskGIT

    pipeline = MaskGIT.from_pretrained(args.model, device=args.device, precision=args.precision)
    pipeline.set_progress_bar_config(disable=args.quiet)
    return pipeline.compile() if args.compile else pipeline


def _run_seed(args: argparse.Namespace) -> int:
    """``--seed``, else the seed recorded in --out's manifest when resuming, else a fresh random
    seed, printed so that even an interrupted run can be repeated."""
    from maskgit.sampling import random_seed

    if args.seed is not None:
        if args.seed < 0:
            raise CLIError(f"--seed must be >= 0, got {args.seed}")
        return args.seed
    if args.resume:
        manifest = args.out / "manifest.json"
        try:
            seed = json.loads(manifest.read_text())["settings"]["seed"]
        except (OSError, ValueError, KeyError, TypeError):
            seed = None
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise CLIError(f"--resume without --seed needs the seed of the first run, and {manifest} has none; "
                           "give the --seed that run printed")
        return seed
    seed = random_seed()
    print(f"seed {seed} (drawn at random; --seed {seed} repeats this run)", file=sys.stderr)
    return seed


def _check_counts(args: argparse.Namespace) -> None:
    if getattr(args, "batch_size", 1) < 1:
        raise CLIError(f"--batch-size must be at least 1, got {args.batch_size}")
    if getattr(args, "num", 1) < 1:
        raise CLIError(f"--num must be at least 1, got {args.num}")
    check_count(getattr(args, "num", 1), args.max_images)


# The sampler flags are recorded as the whole sampler they built (``settings["sampler"]``).
_SAMPLER_ARGS = {"sampler", "steps", "schedule", "temperature", "softmax_temperature", "top_k", "guidance",
                 "guidance_schedule"}


def _settings(args: argparse.Namespace, sampler: Any = None, **extra: Any) -> dict[str, Any]:
    skip = {"run", "command", "quiet"} | _SAMPLER_ARGS  # --quiet changes no output
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in skip}
    if sampler is not None:
        settings["sampler"] = sampler.to_dict()
    return {"command": args.command, **settings, **extra}


def _output_folder(args: argparse.Namespace, settings: dict[str, Any], outputs: list[Path], extras: list[str]) -> OutputFolder:
    names = [str(p.relative_to(args.out)) for p in outputs]
    return OutputFolder(args.out, settings, names, [*names, *extras], resume=args.resume, overwrite=args.overwrite)


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


def _save_all(images: torch.Tensor, paths: list[Path]) -> None:
    from maskgit.imageio import save_image

    for image, path in zip(images, paths):
        save_image(image, path)


def _save_grid(paths: list[Path], destination: Path) -> None:
    """Tile the first ``GRID_IMAGES`` images of the run (including those kept by --resume) into one PNG."""
    from maskgit.imageio import load_image, make_grid, save_image

    if paths:
        save_image(make_grid(torch.stack([load_image(p) for p in paths[:GRID_IMAGES]])), destination)


def _save_class_grid(rows: list[tuple[str, list[Path]]], destination: Path) -> None:
    """One labelled row per class (the first ``GRID_ROWS`` classes, the first ``GRID_COLUMNS``
    images of each, including those kept by --resume), so that its size stays bounded."""
    from maskgit.imageio import load_image, make_class_grid, save_image

    rows = [(name, torch.stack([load_image(p) for p in row[:GRID_COLUMNS]])) for name, row in rows[:GRID_ROWS]]
    save_image(make_class_grid(rows), destination)


# -- generate -------------------------------------------------------------------------------------


def _image_jobs(classes: list[int], num: int) -> list[tuple[int, int]]:
    """(class, k) for each image: k counts the images of a class over the whole run, so a class
    given twice (``--class 8 --class bag``) gets distinct files."""
    made: dict[int, int] = {}
    jobs = []
    for c in classes:
        jobs += [(c, made.get(c, 0) + k) for k in range(num)]
        made[c] = made.get(c, 0) + num
    return jobs


def run_generate(args: argparse.Namespace) -> int:
    from maskgit.class_names import parse_class_list

    _check_counts(args)
    check_output_dir(args.out)
    pipeline = _load_pipeline(args)
    pipeline.set_progress_bar_config(disable=True)  # the command counts images instead
    sampler = _pipeline_sampler(args, pipeline, editing=False)
    classes = parse_class_list(args.classes, pipeline.class_names)
    check_count(len(classes) * args.num, args.max_images)
    args.seed = _run_seed(args)
    jobs = _image_jobs(classes, args.num)  # image i = jobs[i]
    paths = [args.out / f"{c:04d}" / f"{k:04d}.png" for c, k in jobs]
    settings = _settings(args, sampler, classes=classes, class_names=[pipeline.class_names[c] for c in classes])
    with _output_folder(args, settings, paths, ["grid.png"]).open() as folder:
        todo = [i for i, p in enumerate(paths) if not (args.resume and p.exists())]
        with tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="img", desc="generate",
                  disable=args.quiet) as bar:
            # Missing images keep their index in the run, and so their seed.
            for start in range(0, len(todo), args.batch_size):
                batch = todo[start : start + args.batch_size]
                images = pipeline.generate(
                    [jobs[i][0] for i in batch], sampler=sampler, seed=args.seed, image_indices=batch,
                )
                _save_all(images, [paths[i] for i in batch])
                bar.update(len(batch))
        _save_class_grid([(pipeline.class_names[c], [p for (job_class, _), p in zip(jobs, paths) if job_class == c])
                          for c in dict.fromkeys(classes)], args.out / "grid.png")
        folder.finish()
    print(f"wrote {len(todo)} image(s) ({len(jobs) - len(todo)} kept) to {args.out}")
    return 0


# -- reconstruct ----------------------------------------------------------------------------------


def run_reconstruct(args: argparse.Namespace) -> int:
    from maskgit.data.transforms import eval_transform
    from maskgit.imageio import open_image

    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.image_size is not None:
        check_pixels(args.image_size, args.image_size, args.max_pixels, what="--image-size")
    check_output_dir(args.out)
    if not args.images.is_dir():
        raise CLIError(f"{args.images}: not a folder")
    files = [Path(path) for path in image_files(args.images)]
    if not files:
        raise CLIError(f"{args.images}: no images found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    check_count(len(files), args.max_images)
    pipeline = _load_pipeline(args)
    size = args.image_size or pipeline.image_size
    check_pixels(size, size, args.max_pixels, what="image size")
    transform = eval_transform(size)
    outputs = [args.out / "reconstructions" / p.relative_to(args.images).with_suffix(".png") for p in files]
    inputs_of = {p: args.out / "inputs" / p.relative_to(args.out / "reconstructions") for p in outputs}
    extras = [str(p.relative_to(args.out)) for p in inputs_of.values()] if args.write_inputs else []
    todo = [i for i, p in enumerate(outputs) if not (args.resume and p.exists())]
    for i in tqdm(todo, unit="img", desc="check inputs", leave=False, disable=args.quiet):
        open_image(files[i], max_pixels=args.max_input_pixels).close()  # every input reads before any output
    with _output_folder(args, _settings(args, image_size=size), outputs, extras).open() as folder:
        with tqdm(total=len(files), initial=len(files) - len(todo), unit="img", desc="reconstruct",
                  disable=args.quiet) as bar:
            for start in range(0, len(todo), args.batch_size):
                batch = todo[start : start + args.batch_size]
                inputs = torch.stack([transform(open_image(files[i], max_pixels=args.max_input_pixels)) for i in batch])
                _save_all(pipeline.reconstruct(inputs), [outputs[i] for i in batch])
                if args.write_inputs:
                    _save_all(inputs, [inputs_of[outputs[i]] for i in batch])
                bar.update(len(batch))
        folder.finish()
    print(f"reconstructed {len(todo)} image(s) ({len(files) - len(todo)} kept) into {args.out}")
    return 0


# -- edit, inpaint, outpaint ----------------------------------------------------------------------


def _run_editing(
    args: argparse.Namespace,
    validate: Callable[[Any, torch.Tensor, Any], dict[str, Any]],
    call: Callable[..., torch.Tensor],
) -> int:
    from maskgit.class_names import parse_class_list
    from maskgit.imageio import save_image

    _check_counts(args)
    check_output_dir(args.out)
    pipeline = _load_pipeline(args)
    sampler = _pipeline_sampler(args, pipeline, editing=True)
    classes = parse_class_list(args.classes, pipeline.class_names)
    if len(classes) != 1:
        raise CLIError(f"give exactly one --class for {args.command}, got {len(classes)}")
    image = _prepare_image(args, pipeline)
    extra = validate(pipeline, image, sampler)  # raises before anything is written
    args.seed = _run_seed(args)
    paths = [args.out / f"{args.command}_{k:04d}.png" for k in range(args.num)]
    settings = _settings(args, sampler, class_id=classes[0], class_name=pipeline.class_names[classes[0]])
    with _output_folder(args, settings, paths, ["input.png", "grid.png"]).open() as folder:
        if not (args.resume and all(p.exists() for p in paths)):
            images = call(pipeline, image, classes[0], extra, sampler)
            _save_all(images, paths)
        save_image(image, args.out / "input.png")
        _save_grid(paths, args.out / "grid.png")
        folder.finish()
    print(f"wrote {len(paths)} image(s) to {args.out}")
    return 0


def _sampling_kwargs(args: argparse.Namespace, sampler: Any) -> dict[str, Any]:
    # keep_size: the image is already prepared, so the library must not resize a --keep-size one.
    return dict(num_samples=args.num, sampler=sampler, seed=args.seed, keep_size=args.keep_size)


def run_edit(args: argparse.Namespace) -> int:
    from maskgit.sampling.editing import Box

    box = Box.parse(args.box)

    def validate(pipeline: Any, image: torch.Tensor, sampler: Any) -> dict[str, Any]:
        try:
            box.check_inside(*image.shape[-2:])
        except ValueError as error:
            hint = "" if args.keep_size else (
                " (--box is in pixels of the image resized to the model's size; --keep-size keeps the image's own)"
            )
            raise CLIError(f"--box: {error}{hint}") from None
        if not 0 <= args.start_step < sampler.num_steps:
            raise CLIError(f"--start-step must be in [0, --steps={sampler.num_steps}), got {args.start_step}")
        return {}

    return _run_editing(args, validate, lambda p, image, c, _, sampler: p.edit(
        image, box, c, start_step=args.start_step, **_sampling_kwargs(args, sampler)))


def run_inpaint(args: argparse.Namespace) -> int:
    from maskgit.imageio import load_mask, open_image
    from maskgit.inputs import prepare_mask

    def validate(pipeline: Any, image: torch.Tensor, sampler: Any) -> dict[str, Any]:
        mask = load_mask(args.mask, max_pixels=args.max_input_pixels)
        try:
            # The mask follows the image through the same resize and crop (nearest keeps it binary).
            mask = prepare_mask(mask, open_image(args.image, max_pixels=args.max_input_pixels), pipeline.image_size,
                                keep_size=args.keep_size)
        except ValueError as error:
            raise CLIError(f"{args.mask}: {error}") from None
        if not mask.any():
            raise CLIError(f"{args.mask}: mask is empty (no white pixels): nothing to inpaint")
        return {"mask": mask}

    return _run_editing(args, validate, lambda p, image, c, extra, sampler: p.inpaint(
        image, extra["mask"], c, **_sampling_kwargs(args, sampler)))


def run_outpaint(args: argparse.Namespace) -> int:
    from maskgit.sampling.editing import Extend

    extend = Extend.parse(args.extend)

    def validate(pipeline: Any, image: torch.Tensor, sampler: Any) -> dict[str, Any]:
        factor = pipeline.tokenizer.config.downsample_factor
        tokens = extend.in_tokens(factor)
        height, width = image.shape[-2:]
        check_pixels(height + (tokens.top + tokens.bottom) * factor, width + (tokens.left + tokens.right) * factor,
                     args.max_pixels, what="the outpainting canvas")
        return {}

    return _run_editing(args, validate, lambda p, image, c, _, sampler: p.outpaint(
        image, extend, c, **_sampling_kwargs(args, sampler)))


# -- registration ---------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="class-conditional generation",
                                   description="Generate --num images for each --class.")
    _add_model_options(parser)
    parser.add_argument("--class", dest="classes", action="append", required=True,
                        help="class index or name; repeatable, or a comma list (e.g. --class 90 --class 'ox,tench')")
    parser.add_argument("--num", type=int, default=1, help="images per class (default 1)")
    add_sampler_options(parser)
    _add_run_options(parser)
    parser.set_defaults(run=run_generate)

    parser = subparsers.add_parser("reconstruct", help="tokenizer round trip of a folder tree of images",
                                   description="Short-side bicubic resize and centre crop, encode to tokens, decode.")
    _add_model_options(parser)
    parser.add_argument("--images", type=Path, required=True, help="folder of images (searched recursively)")
    parser.add_argument("--image-size", type=int, default=None, help="resize and crop to this size (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    parser.add_argument("--write-inputs", action="store_true", help="also write the preprocessed inputs under OUT/inputs")
    parser.set_defaults(run=run_reconstruct)

    parser = subparsers.add_parser("edit", help="class-conditional box editing (the official demo's)",
                                   description="Regenerate a box of the image as --class and blend it back.")
    _add_model_options(parser)
    _add_edit_options(parser)
    parser.add_argument("--box", required=True, help="TOP,LEFT,HEIGHT,WIDTH in pixels of the image resized to the "
                        "model's size (of the image as it is with --keep-size)")
    parser.add_argument("--start-step", type=int, default=2, help="first decoding step (official: 2 of 12)")
    add_sampler_options(parser)
    _add_run_options(parser)
    parser.set_defaults(run=run_edit)

    parser = subparsers.add_parser("inpaint", help="regenerate a free-form masked region",
                                   description="Regenerate every token the mask touches; keep the pixels outside it.")
    _add_model_options(parser)
    _add_edit_options(parser)
    parser.add_argument("--mask", type=Path, required=True, help="mask image, same size as --image; white = regenerate")
    add_sampler_options(parser)
    _add_run_options(parser)
    parser.set_defaults(run=run_inpaint)

    parser = subparsers.add_parser("outpaint", help="extend the canvas and generate the new border",
                                   description="Extend each side by whole tokens and generate them.")
    _add_model_options(parser)
    _add_edit_options(parser)
    parser.add_argument("--extend", required=True, help="TOP,RIGHT,BOTTOM,LEFT in pixels (rounded up to whole tokens)")
    add_sampler_options(parser)
    _add_run_options(parser)
    parser.set_defaults(run=run_outpaint)
