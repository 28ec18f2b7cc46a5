"""``maskgit reconstruct``: a folder tree of images through the tokenizer and back (encode, decode).

Short-side bicubic resize and centre crop to the model's size (or ``--image-size``); the outputs
mirror the input tree under ``OUT/reconstructions`` (and the preprocessed inputs under
``OUT/inputs`` with ``--write-inputs``). Every input is read before any output is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm import tqdm

from maskgit.cli import options
from maskgit.cli.errors import CLIError
from maskgit.data.datasets import IMAGE_EXTENSIONS, image_files
from maskgit.io import check_output_dir
from maskgit.validation import check_count, check_pixels


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("reconstruct", help="tokenizer round trip of a folder tree of images",
                                   description="Short-side bicubic resize and centre crop, encode to tokens, decode.")
    options.add_model_options(parser)
    parser.add_argument("--images", type=Path, required=True, help="folder of images (searched recursively)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="resize and crop to this size (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    parser.add_argument("--write-inputs", action="store_true",
                        help="also write the preprocessed inputs under OUT/inputs")
    parser.set_defaults(run=run_reconstruct)


def run_reconstruct(args: argparse.Namespace) -> int:
    from maskgit.data.transforms import eval_transform
    from maskgit.imageio import open_image, save_image
    from maskgit.runs import still_to_make
    from maskgit.runs.manifest import ReconstructSettings

    options.check_batch_size(args)
    if args.image_size is not None:
        check_pixels(args.image_size, args.image_size, args.max_pixels, what="--image-size")
    check_output_dir(args.out)
    if not args.images.is_dir():
        raise CLIError(f"{args.images}: not a folder")
    files = [Path(path) for path in image_files(args.images)]
    if not files:
        raise CLIError(f"{args.images}: no images found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    check_count(len(files), args.max_images)
    pipeline = options.load_pipeline(args)
    size = args.image_size or pipeline.image_size
    check_pixels(size, size, args.max_pixels, what="image size")
    transform = eval_transform(size)
    outputs = [Path("reconstructions") / p.relative_to(args.images).with_suffix(".png") for p in files]
    inputs = [Path("inputs") / p.relative_to("reconstructions") for p in outputs]
    todo = still_to_make([args.out / p for p in outputs], resume=args.resume)
    for i in tqdm(todo, unit="img", desc="check inputs", leave=False, disable=args.quiet):
        open_image(files[i], max_pixels=args.max_input_pixels).close()  # every input reads before any output
    settings = ReconstructSettings(model=args.model, precision=args.precision, compile=args.compile,
                                   device=args.device, batch_size=args.batch_size, images=str(args.images),
                                   image_size=size, write_inputs=args.write_inputs)
    extras = [str(p) for p in inputs] if args.write_inputs else []
    with options.output_folder(args, settings, [str(p) for p in outputs], extras).open() as folder:
        with tqdm(total=len(files), initial=len(files) - len(todo), unit="img", desc="reconstruct",
                  disable=args.quiet) as bar:
            for start in range(0, len(todo), args.batch_size):
                batch = todo[start : start + args.batch_size]
                images = torch.stack([transform(open_image(files[i], max_pixels=args.max_input_pixels)) for i in batch])
                for i, image in zip(batch, pipeline.reconstruct(images)):
                    save_image(image, args.out / outputs[i])
                if args.write_inputs:
                    for i, image in zip(batch, images):
                        save_image(image, args.out / inputs[i])
                bar.update(len(batch))
        folder.finish()
    print(f"reconstructed {len(todo)} image(s) ({len(files) - len(todo)} kept) into {args.out}")
    return 0
