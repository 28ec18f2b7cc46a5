"""``maskgit generate | reconstruct | edit | inpaint | outpaint``.

Every command validates all of its inputs before it writes anything, writes each PNG atomically,
and records its settings in ``manifest.json``. ``--resume`` skips images already on disk; with a
seed, the images it does write are the same as an uninterrupted run's. Without ``--seed`` a run draws
a fresh random seed, prints it and records it in the manifest, and ``--resume`` reuses that one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from maskgit.cli import CLIError
from maskgit.data.datasets import IMAGE_EXTENSIONS
from maskgit.io import atomic_write_text

# -- shared options -------------------------------------------------------------------------------


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="fashion-mnist",
                        help="a saved pipeline folder, a shipped model (fashion-mnist, the default) or a registered name "
                        "(imagenet256, imagenet512)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="autocast precision of the models")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--resume", action="store_true", help="skip images that already exist in --out")


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
    """The sampler the flags describe: ``default`` (the model's sampler) with every given flag
    applied; ``--sampler`` switches the kind and keeps the shared settings."""
    import dataclasses

    from maskgit.sampling import ConfidenceSampler, Sampler, build_sampler

    name = args.sampler or default.name
    shared = {field.name for field in dataclasses.fields(Sampler)}
    fields = {k: v for k, v in default.to_dict().items() if k != "sampler" and (name == default.name or k in shared)}
    given = {"num_steps": args.steps, "schedule": args.schedule, "top_k": args.top_k, "guidance": args.guidance,
             "guidance_schedule": args.guidance_schedule}
    if args.softmax_temperature is not None:
        given["softmax_temperature"] = _parse_softmax_temperature(args.softmax_temperature)
    if args.temperature is not None:
        if name != ConfidenceSampler.name:
            raise CLIError(f"--temperature is the confidence sampler's choice temperature; --sampler {name} has none")
        given["choice_temperature"] = args.temperature
    fields.update({k: v for k, v in given.items() if v is not None})
    try:
        sampler: Sampler = build_sampler(name, **fields)
    except ValueError as error:
        message = str(error)
        for field, flag in _SAMPLER_FLAGS.items():
            if message.startswith(field + " "):
                message = flag + message[len(field):]
        raise CLIError(message) from None
    return sampler


def _pipeline_sampler(args: argparse.Namespace, pipeline: Any, editing: bool) -> Any:
    """The run's sampler, checked against the model before anything is written."""
    sampler = sampler_from_args(args, pipeline.default_sampler(editing=editing))
    if sampler.guidance and pipeline.transformer.config.null_class_id is None:
        raise CLIError(f"--guidance {sampler.guidance:g} needs a model trained with class dropout (a null class); "
                       f"{args.model} has none, so leave --guidance out or set it to 0")
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

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return MaskGIT.from_pretrained(args.model, device=device, precision=args.precision)


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


# The sampler flags are recorded as the whole sampler they built (``settings["sampler"]``).
_SAMPLER_ARGS = {"sampler", "steps", "schedule", "temperature", "softmax_temperature", "top_k", "guidance",
                 "guidance_schedule"}


def _settings(args: argparse.Namespace, sampler: Any = None, **extra: Any) -> dict[str, Any]:
    skip = {"run", "command"} | _SAMPLER_ARGS
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in skip}
    if sampler is not None:
        settings["sampler"] = sampler.to_dict()
    return {"command": args.command, **settings, **extra}


def _write_manifest(out: Path, settings: dict[str, Any], outputs: list[str]) -> None:
    from maskgit import __version__

    manifest = {"maskgit_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "settings": settings, "outputs": outputs}
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")


def _prepare_image(args: argparse.Namespace, pipeline: Any) -> torch.Tensor:
    """``--image`` as the editing modes take it: ``maskgit.inputs.prepare_image``, the API's rule."""
    from maskgit.imageio import open_image
    from maskgit.inputs import prepare_image

    factor = pipeline.tokenizer.config.downsample_factor
    try:
        return prepare_image(open_image(args.image), pipeline.image_size, factor=factor, keep_size=args.keep_size)
    except ValueError as error:
        raise CLIError(f"{args.image}: {error} (drop --keep-size to resize it to the model's size)") from None


def _save_all(images: torch.Tensor, paths: list[Path]) -> None:
    from maskgit.imageio import save_image

    for image, path in zip(images, paths):
        save_image(image, path)


def _save_grid(paths: list[Path], destination: Path) -> None:
    """Tile the written images (all of them, including those kept by --resume) into one PNG."""
    from maskgit.imageio import load_image, make_grid, save_image

    if paths:
        save_image(make_grid(torch.stack([load_image(p) for p in paths])), destination)


# -- generate -------------------------------------------------------------------------------------


def run_generate(args: argparse.Namespace) -> int:
    from maskgit.class_names import parse_class_list

    _check_counts(args)
    pipeline = _load_pipeline(args)
    pipeline.set_progress_bar_config(disable=True)  # the command counts images instead
    sampler = _pipeline_sampler(args, pipeline, editing=False)
    classes = parse_class_list(args.classes, pipeline.class_names)
    args.seed = _run_seed(args)
    jobs = [(c, k) for c in classes for k in range(args.num)]  # image i = jobs[i]
    paths = [args.out / f"{c:04d}" / f"{k:04d}.png" for c, k in jobs]
    todo = [i for i, p in enumerate(paths) if not (args.resume and p.exists())]
    with tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="img", desc="generate") as bar:
        # Missing images keep their index in the run, and so their seed.
        for start in range(0, len(todo), args.batch_size):
            batch = todo[start : start + args.batch_size]
            images = pipeline.generate(
                [jobs[i][0] for i in batch], sampler=sampler, seed=args.seed, image_indices=batch,
            )
            _save_all(images, [paths[i] for i in batch])
            bar.update(len(batch))
    _save_grid(paths, args.out / "grid.png")
    _write_manifest(args.out, _settings(args, sampler, classes=classes,
                                        class_names=[pipeline.class_names[c] for c in classes]),
                    [str(p.relative_to(args.out)) for p in paths])
    print(f"wrote {len(todo)} image(s) ({len(jobs) - len(todo)} kept) to {args.out}")
    return 0


# -- reconstruct ----------------------------------------------------------------------------------


def run_reconstruct(args: argparse.Namespace) -> int:
    from maskgit.data.transforms import eval_transform
    from maskgit.imageio import open_image, save_image

    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be at least 1, got {args.batch_size}")
    if not args.images.is_dir():
        raise CLIError(f"{args.images}: not a folder")
    files = sorted(
        p for p in args.images.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(args.images).parts)
    )
    if not files:
        raise CLIError(f"{args.images}: no images found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    pipeline = _load_pipeline(args)
    size = args.image_size or pipeline.image_size
    transform = eval_transform(size)
    outputs = [args.out / "reconstructions" / p.relative_to(args.images).with_suffix(".png") for p in files]
    todo = [i for i, p in enumerate(outputs) if not (args.resume and p.exists())]
    with tqdm(total=len(files), initial=len(files) - len(todo), unit="img", desc="reconstruct") as bar:
        for start in range(0, len(todo), args.batch_size):
            batch = todo[start : start + args.batch_size]
            inputs = torch.stack([transform(open_image(files[i]).convert("RGB")) for i in batch])
            _save_all(pipeline.reconstruct(inputs), [outputs[i] for i in batch])
            if args.write_inputs:
                _save_all(inputs, [args.out / "inputs" / outputs[i].relative_to(args.out / "reconstructions") for i in batch])
            bar.update(len(batch))
    _write_manifest(args.out, _settings(args, image_size=size), [str(p.relative_to(args.out)) for p in outputs])
    print(f"reconstructed {len(todo)} image(s) ({len(files) - len(todo)} kept) into {args.out}")
    return 0


# -- edit, inpaint, outpaint ----------------------------------------------------------------------


def _run_editing(
    args: argparse.Namespace,
    validate: Callable[[Any, torch.Tensor, Any], dict[str, Any]],
    call: Callable[..., torch.Tensor],
) -> int:
    from maskgit.class_names import parse_class_list

    _check_counts(args)
    pipeline = _load_pipeline(args)
    sampler = _pipeline_sampler(args, pipeline, editing=True)
    classes = parse_class_list(args.classes, pipeline.class_names)
    if len(classes) != 1:
        raise CLIError(f"give exactly one --class for {args.command}, got {len(classes)}")
    image = _prepare_image(args, pipeline)
    extra = validate(pipeline, image, sampler)  # raises before anything is written
    args.seed = _run_seed(args)
    paths = [args.out / f"{args.command}_{k:04d}.png" for k in range(args.num)]
    if not (args.resume and all(p.exists() for p in paths)):
        images = call(pipeline, image, classes[0], extra, sampler)
        _save_all(images, paths)
    from maskgit.imageio import save_image

    save_image(image, args.out / "input.png")
    _save_grid(paths, args.out / "grid.png")
    _write_manifest(args.out, _settings(args, sampler, class_id=classes[0], class_name=pipeline.class_names[classes[0]]),
                    [str(p.relative_to(args.out)) for p in paths])
    print(f"wrote {len(paths)} image(s) to {args.out}")
    return 0


def _sampling_kwargs(args: argparse.Namespace, sampler: Any) -> dict[str, Any]:
    # keep_size: the image is already prepared, so the library must not resize a --keep-size one.
    return dict(num_samples=args.num, sampler=sampler, seed=args.seed, keep_size=args.keep_size)


def run_edit(args: argparse.Namespace) -> int:
    from maskgit.sampling.editing import Box

    box = Box.parse(args.box)

    def validate(pipeline: Any, image: torch.Tensor, sampler: Any) -> dict[str, Any]:
        box.check_inside(*image.shape[-2:])
        if not 0 <= args.start_iter < sampler.num_steps:
            raise CLIError(f"--start-iter must be in [0, --steps={sampler.num_steps}), got {args.start_iter}")
        return {}

    return _run_editing(args, validate, lambda p, image, c, _, sampler: p.edit(
        image, box, c, start_iter=args.start_iter, **_sampling_kwargs(args, sampler)))


def run_inpaint(args: argparse.Namespace) -> int:
    from maskgit.imageio import load_mask, open_image
    from maskgit.inputs import prepare_mask

    def validate(pipeline: Any, image: torch.Tensor, sampler: Any) -> dict[str, Any]:
        try:
            # The mask follows the image through the same resize and crop (nearest keeps it binary).
            mask = prepare_mask(load_mask(args.mask), open_image(args.image), pipeline.image_size,
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
        extend.in_tokens(pipeline.tokenizer.config.downsample_factor)
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
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--write-inputs", action="store_true", help="also write the preprocessed inputs under OUT/inputs")
    parser.set_defaults(run=run_reconstruct)

    parser = subparsers.add_parser("edit", help="class-conditional box editing (the official demo's)",
                                   description="Regenerate a box of the image as --class and blend it back.")
    _add_model_options(parser)
    _add_edit_options(parser)
    parser.add_argument("--box", required=True, help="TOP,LEFT,HEIGHT,WIDTH in pixels of the (resized) image")
    parser.add_argument("--start-iter", type=int, default=2, help="first decoding step (official: 2 of 12)")
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
