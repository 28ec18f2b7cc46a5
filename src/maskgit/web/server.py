"""``serve``: load a model and run the studio until interrupted, with every file in one temporary
folder that is deleted when the server stops.

Gradio reads ``GRADIO_TEMP_DIR`` when it is imported, so this module sets it before it imports the app.
"""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

from maskgit.web.studio import Limits, Studio

__all__ = ["serve"]


def serve(
    model: str = "fashion-mnist",
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    device: str | None = "auto",
    precision: str = "fp32",
    limits: Limits = Limits(),
) -> None:
    """Serve the studio for ``model`` (any name or folder ``MaskGIT.from_pretrained`` takes) on
    ``host:port`` until interrupted (Ctrl-C or SIGTERM)."""
    from maskgit.devices import resolve_device
    from maskgit.pipeline import MaskGIT

    device = resolve_device(device)  # a bad --device fails before anything is loaded
    # A terminated server stops like an interrupted one, so the temporary folder is removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="maskgit-studio-") as temp:
        os.environ["GRADIO_TEMP_DIR"] = str(Path(temp) / "gradio")  # uploads, gradio's cache
        # Gradio imports matplotlib when it is installed, which would write its font cache and
        # config into the user's home; a folder the user chose is kept.
        os.environ.setdefault("MPLCONFIGDIR", str(Path(temp) / "matplotlib"))
        from maskgit.web.app import build_app, launch_options

        pipeline = MaskGIT.from_pretrained(model, device=device, precision=precision)
        pipeline.set_progress_bar_config(disable=True)  # the page shows each run's progress
        runs = Path(temp) / "runs"
        runs.mkdir()
        demo = build_app(Studio(pipeline, str(model), runs, limits))
        print(f"maskgit studio: model {model} on {device}; files under {temp}", flush=True)
        demo.launch(**launch_options(host, port, limits))
