"""``maskgit convert SRC DST``: any supported checkpoint → our safetensors folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from maskgit.checkpoints.formats import detect_format

# Storage dtypes of the written weights (torch dtype names).
_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert an official (flax msgpack) or maskgit-torch (.ckpt) checkpoint to our format",
        description="Detect the source format and model kind, then write DST/config.json and "
        "DST/model.safetensors.",
    )
    parser.add_argument("source", type=Path, help="official msgpack file, maskgit-torch .ckpt, or a saved folder")
    parser.add_argument("destination", type=Path, help="output folder")
    parser.add_argument("--dtype", choices=tuple(_DTYPES), default="fp32",
                        help="storage dtype of the weights: fp16 or bf16 halve the file, and load as "
                        "float32 again")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from maskgit.io import check_output_dir
    from maskgit.models import load_model

    check_output_dir(args.destination)
    source_format = detect_format(args.source)
    model = load_model(args.source)
    model.save_pretrained(args.destination, dtype=getattr(torch, _DTYPES[args.dtype]))
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"converted {args.source} ({source_format}, {model.config.model_type}, {parameters:,} parameters) "
        f"-> {args.destination} ({args.dtype})"
    )
    return 0
