"""The flags the generation commands share (generate, sample, edit, inpaint, outpaint, reconstruct),
and how they become the library's objects: the pipeline, the sampler, the run's output folder.

Every command validates all of its inputs (and its limits: ``--max-pixels``, ``--max-input-pixels``,
``--max-images``, ``--max-token-passes``) before it writes anything, writes each PNG atomically, and
records its settings in ``manifest.json`` through ``maskgit.runs.OutputFolder``: ``--resume``
continues only a run with the same settings and skips images already on disk (with a seed, the
images it does write are the same as an uninterrupted run's); a folder with files in it is refused
unless ``--resume`` or ``--overwrite``; a lock stops a second writer. Without ``--seed`` a run draws
a fresh random seed, prints it and records it in the manifest, and ``--resume`` reuses that one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from maskgit.cli.errors import CLIError
from maskgit.devices import DEVICE_HELP
from maskgit.validation import MAX_IMAGES, MAX_INPUT_PIXELS, MAX_PIXELS, MAX_TOKEN_PASSES

__all__ = [
    "MAX_BATCH_SIZE",
    "add_model_options",
    "add_sampler_options",
    "add_run_options",
    "load_pipeline",
    "sampler_from_args",
    "check_batch_size",
    "check_per_class",
    "start_run",
    "how_it_runs",
    "output_folder",
]

MAX_BATCH_SIZE = 4096

def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="fashion-mnist",
                        help="a saved pipeline folder, a shipped model (fashion-mnist, the default) or a registered name "
                        "(imagenet256, imagenet512)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    from maskgit.models.inference import PRECISIONS

    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                        help="weights and compute dtype of the models (fp16: CUDA only; int8: the transformer's "
                        "linear layers in int8 on x86 CPUs with AVX2 or newer, the rest fp32; default fp32)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the transformer step (CUDA graphs on a GPU); pays off for many images "
                        "(not with --context-reuse, whose steps run uncompiled)")
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
    """The sampler flags of the commands that sample, and the limit on the work of one image. Each
    sampler flag left out keeps the model's own default sampler's value."""
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
    group.add_argument("--context-reuse", type=int, default=None, metavar="N",
                       help="after each full transformer evaluation, N cheap steps that recompute only the tokens "
                       "that changed or whose predictions the step reads, and reuse the cached context of the others "
                       "(0: every step in full, the official decoding)")
    group.add_argument("--reuse-group", action=argparse.BooleanOptionalAction, default=None,
                       help="with --context-reuse and the confidence sampler: each full evaluation picks the group of "
                       "tokens that it and its cheap steps fix, and the cheap steps recompute only those (ReCAP's rule; "
                       "faster, not the official choice)")
    group.add_argument("--max-token-passes", type=int, default=MAX_TOKEN_PASSES,
                       help="most tokens the transformer may process for one image: windows x passes (a guided "
                       f"step is two) x tokens per pass (default {MAX_TOKEN_PASSES:,})")


def add_run_options(parser: argparse.ArgumentParser, *, seed: int | None = None, batch_size: int = 8) -> None:
    """``--seed`` (default ``seed``; None: a fresh random one) and ``--batch-size``."""
    drawn = ("a fresh random seed, printed and recorded in manifest.json; --resume reuses the recorded one"
             if seed is None else f"{seed}")
    parser.add_argument("--seed", type=int, default=seed,
                        help=f"random seed >= 0; image i depends only on (seed, i) (default: {drawn})")
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help=f"images per forward pass (default {batch_size})")


def load_pipeline(args: argparse.Namespace) -> Any:
    """The ``--model`` pipeline on ``--device`` in ``--precision``, compiled with ``--compile``. Its
    own progress bars are off: the commands show one bar for their whole run."""
    from maskgit.pipeline import MaskGIT

    pipeline = MaskGIT.from_pretrained(args.model, device=args.device, precision=args.precision)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.compile() if args.compile else pipeline


def _parse_softmax_temperature(text: str) -> float | tuple[float, float]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, 2):
        raise CLIError(f"--softmax-temperature must be T or T0,T1 (numbers > 0), got {text!r}")
    return values[0] if len(values) == 1 else values


def _in_flag_terms(message: str) -> str:
    """A library message about a sampler field (or the editing start step), with the field named by its flag."""
    from maskgit.sampling import SAMPLER_FLAGS  # here, not at the top: the command line starts without torch

    for field, flag in {**SAMPLER_FLAGS, "start_step": "--start-step"}.items():
        if message.startswith(field + " "):
            return flag + message[len(field):]
    return message


def sampler_from_args(args: argparse.Namespace, default: Any) -> Any:
    """The sampler the flags describe (``maskgit.sampling.sampler_from_options``): ``default`` (the
    model's sampler) with every given flag applied; ``--sampler`` switches the kind and keeps the
    shared settings. Errors name the flags."""
    from maskgit.sampling import sampler_from_options

    options = {"sampler": args.sampler, "num_steps": args.steps, "schedule": args.schedule,
               "choice_temperature": args.temperature, "top_k": args.top_k, "guidance": args.guidance,
               "guidance_schedule": args.guidance_schedule, "context_reuse": args.context_reuse,
               "reuse_group": args.reuse_group}
    if args.softmax_temperature is not None:
        options["softmax_temperature"] = _parse_softmax_temperature(args.softmax_temperature)
    try:
        return sampler_from_options({k: v for k, v in options.items() if v is not None}, default)
    except ValueError as error:
        raise CLIError(_in_flag_terms(str(error))) from None


def check_batch_size(args: argparse.Namespace) -> None:
    if not 1 <= args.batch_size <= MAX_BATCH_SIZE:
        raise CLIError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}, got {args.batch_size}")


def check_per_class(value: int, flag: str) -> None:
    if value < 1:
        raise CLIError(f"{flag} must be at least 1, got {value}")


def start_run(args: argparse.Namespace, pipeline: Any, plan: Any, sampler: Any, unknown: Any = None,
              start_step: int = 0) -> Any:
    """The run the flags describe (``maskgit.runs.Run``), with its seed (``maskgit.runs.resolve_seed``),
    checked against the model (guidance needs a null class) and ``--max-token-passes`` before
    any work; errors name the flags. A seed drawn at random is printed, so that even an interrupted
    run can be repeated."""
    from maskgit.runs import Run, resolve_seed

    seed, drawn = resolve_seed(args.seed, args.out, resume=args.resume)
    run = Run(plan, sampler, seed, unknown, start_step)
    try:
        run.cost(pipeline).check(args.max_token_passes)
    except ValueError as error:
        raise CLIError(_in_flag_terms(str(error))) from None
    if drawn:
        print(f"seed {seed} (drawn at random; --seed {seed} repeats this run)", file=sys.stderr)
    return run


def how_it_runs(args: argparse.Namespace) -> dict[str, Any]:
    """The settings of how a run runs, as its manifest records them (``maskgit.runs.RunSettings``)."""
    return {"precision": args.precision, "compile": args.compile, "device": args.device, "batch_size": args.batch_size}


def output_folder(args: argparse.Namespace, settings: Any, outputs: list[str], extras: list[str]) -> Any:
    """``--out`` as the run's ``OutputFolder``: ``outputs`` (the images) and ``extras`` (other
    files), relative paths."""
    from maskgit.runs import OutputFolder

    return OutputFolder(args.out, settings, outputs, [*outputs, *extras], resume=args.resume, overwrite=args.overwrite)
