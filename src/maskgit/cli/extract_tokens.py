"""``maskgit extract-tokens``: encode a dataset once with the tokenizer into a token file, so that
the transformer trains without running the VQGAN."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from maskgit.devices import DEVICE_HELP
from maskgit.validation import MAX_PIXELS

if TYPE_CHECKING:
    from maskgit.models import VQGAN


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "extract-tokens",
        help="encode a dataset with a tokenizer into a token file for transformer training",
        description="Encode every image of a dataset (and, by default, its horizontal mirror image) "
        "with the VQGAN tokenizer and write the token ids and labels to one memory-mappable file.",
    )
    parser.add_argument(
        "--tokenizer",
        required=True,
        type=Path,
        help="tokenizer checkpoint (official msgpack, maskgit-torch .ckpt, a saved folder) or a saved "
        "pipeline folder (its tokenizer/ is used)",
    )
    parser.add_argument(
        "--data",
        required=True,
        help="'fashion-mnist', 'fashion-mnist:DIR', 'mnist:DIR' or an image folder (root/<class>/<images>)",
    )
    parser.add_argument("--out", required=True, type=Path, help="the token file to write")
    parser.add_argument("--split", default="train", help="dataset split (default: train)")
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="image side in pixels (default: the pipeline's image size, else the tokenizer config's)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64)")
    parser.add_argument(
        "--no-flips",
        dest="flips",
        action="store_false",
        help="do not add each image's horizontal mirror: use it for data with one orientation (digits; "
        "Fashion-MNIST, whose shoes and bags all face one way), where mirrors teach the transformer images "
        "that never occur",
    )
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes (default: 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                        help=f"largest image the tokenizer encodes, in pixels (default {MAX_PIXELS:,} = 2048x2048)")
    parser.set_defaults(run=run)


def _load_tokenizer(path: Path) -> tuple[VQGAN, int | None]:
    """A tokenizer file or folder, or the tokenizer/ of a pipeline folder; also the image size the
    pipeline generates at (None for a bare tokenizer)."""
    from maskgit.checkpoints.pipeline_folder import PIPELINE_INDEX
    from maskgit.configs import TransformerConfig
    from maskgit.models import VQGAN

    if (path / PIPELINE_INDEX).is_file():
        tokenizer = VQGAN.from_pretrained(path / "tokenizer")
        transformer_config = TransformerConfig.load(path / "transformer" / "config.json")
        return tokenizer, transformer_config.latent_size * tokenizer.config.downsample_factor
    return VQGAN.from_pretrained(path), None


def run(args: argparse.Namespace) -> int:
    from maskgit.cli.errors import CLIError
    from maskgit.data import build_dataset, extract_tokens
    from maskgit.io import check_output_file
    from maskgit.validation import check_pixels

    if args.batch_size <= 0:
        raise CLIError(f"--batch-size must be positive, got {args.batch_size}")
    if args.image_size is not None:
        check_pixels(args.image_size, args.image_size, args.max_pixels, what="--image-size")
    check_output_file(args.out)
    tokenizer, pipeline_size = _load_tokenizer(args.tokenizer)
    image_size = args.image_size or pipeline_size or tokenizer.config.image_size
    check_pixels(image_size, image_size, args.max_pixels, what="image size")
    dataset = build_dataset(args.data, split=args.split, image_size=image_size, train=False)
    tokens = extract_tokens(
        tokenizer,
        dataset,
        args.out,
        batch_size=args.batch_size,
        flips=args.flips,
        device=args.device,
        progress=not args.quiet,
        num_workers=args.num_workers,
    )
    used = int((tokens.code_usage() > 0).sum())
    height, width = tokens.grid
    flips = f" ({len(dataset)} images + mirrors)" if args.flips else ""
    print(
        f"wrote {args.out}: {len(tokens)} token grids{flips}, grid {height}x{width} from "
        f"{image_size}x{image_size} images, {used}/{tokens.codebook_size} codes used, "
        f"{len(tokens.class_names)} classes"
    )
    return 0
