"""``maskgit serve``: the studio in the browser (needs the ``web`` extra)."""

from __future__ import annotations

import argparse

from maskgit.cli.errors import CLIError
from maskgit.devices import DEVICE_HELP
from maskgit.models.inference import PRECISIONS


def run_serve(args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        raise CLIError(f"--port must be in [1, 65535], got {args.port}")
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise CLIError("the studio needs Gradio: pip install 'maskgit[web]'")
    from maskgit.web.server import serve

    serve(args.model, host=args.host, port=args.port, device=args.device, precision=args.precision)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="the studio: generate, edit, inpaint and outpaint in the browser",
                                   description="Serve the Gradio studio on HOST:PORT (this machine only by default).")
    parser.add_argument("--model", default="fashion-mnist",
                        help="a saved pipeline folder, a shipped model (fashion-mnist, the default) or a registered name")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32", help="precision of the models")
    parser.set_defaults(run=run_serve)
