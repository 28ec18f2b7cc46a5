"""The Gradio studio: four tabs (generate, edit, inpaint, outpaint) over one ``Studio``.

This module is layout and wiring only. Uploads go through ``Studio.load_image`` (limits, fitting to
the model), every run through the ``Studio`` methods, and a user error comes back as a message in
the page (``gr.Error``), never a stack trace. Runs that use the model share one queue slot, so
concurrent visitors wait their turn. Nothing leaves 127.0.0.1: analytics and the version check are
off, there is no share link, and the default theme uses local fonts only.
"""

from __future__ import annotations

import os

# Gradio reads this when a Blocks is built; the studio must never call home.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import functools  # noqa: E402
import math  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from maskgit.checkpoints.errors import CheckpointError  # noqa: E402
from maskgit.imageio import load_mask, to_uint8  # noqa: E402
from maskgit.sampling import GUIDANCE_SCHEDULES, MAX_CONTEXT_REUSE  # noqa: E402
from maskgit.sampling.editing import Box  # noqa: E402
from maskgit.sampling.schedules import SCHEDULES  # noqa: E402
from maskgit.web.studio import Limits, Result, Studio, Upload  # noqa: E402

__all__ = ["build_app", "launch_options"]

# Small images stay sharp when the browser scales them up.
CSS = """
img, canvas { image-rendering: pixelated; }
"""
EDITOR_SIDE = 256  # the editors show the image scaled up (nearest) to at least this many pixels


def _user_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a user error into a message in the page."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (ValueError, CheckpointError, FileNotFoundError) as error:
            raise gr.Error(str(error), title="Cannot run this") from None

    return wrapper


def _display_scale(studio: Studio) -> int:
    return max(1, math.ceil(EDITOR_SIDE / studio.image_size))


def _display(image: torch.Tensor, scale: int) -> np.ndarray:
    """(3, S, S) in [0, 1] → uint8 (S*scale, S*scale, 3), nearest, for the editors."""
    return to_uint8(image).repeat(scale, axis=0).repeat(scale, axis=1)


def _painted_mask(editor: dict[str, Any] | None, studio: Studio) -> torch.Tensor:
    """The strokes painted in an editor → bool (S, S) on the model's pixels: a pixel is painted if
    any of the screen pixels it was scaled up to is."""
    size, scale = studio.image_size, _display_scale(studio)
    painted = torch.zeros(size, size, dtype=torch.bool)
    for layer in (editor or {}).get("layers") or []:
        try:
            mask = load_mask(layer, max_pixels=(size * scale) ** 2)  # nothing larger than the canvas is decoded
        except ValueError:
            mask = None
        if mask is None or tuple(mask.shape) != (size * scale, size * scale):
            raise ValueError("the painted layer is not the editor's size; upload the image again")
        painted |= mask.reshape(size, scale, size, scale).any(dim=3).any(dim=1)
    return painted


def _box_of(mask: torch.Tensor) -> Box:
    """The bounding box of the True pixels of an (S, S) mask."""
    rows, columns = mask.any(dim=1).nonzero()[:, 0], mask.any(dim=0).nonzero()[:, 0]
    if rows.numel() == 0:
        raise ValueError("no box: paint over the part to edit, or type a box")
    top, left = int(rows[0]), int(columns[0])
    return Box(top, left, int(rows[-1]) - top + 1, int(columns[-1]) - left + 1)


def _outputs(result: Result) -> tuple[Any, ...]:
    return [str(p) for p in result.images], result.strip, result.settings, [str(p) for p in result.files]


def _progress_reporter(progress: gr.Progress) -> Callable[[int, int], None]:
    return lambda done, total: progress((done, total), desc="decoding", unit="steps")


# -- layout pieces --------------------------------------------------------------------------------


class SamplerPanel:
    """The sampler controls of one tab: the CLI's sampler flags, starting from the model's sampler."""

    def __init__(self, studio: Studio, editing: bool) -> None:
        default = studio.default_sampler(editing).to_dict()
        temperature = default["softmax_temperature"]
        start, end = temperature if isinstance(temperature, list) else (temperature, temperature)
        with gr.Accordion("Sampler", open=False):
            with gr.Row():
                self.name = gr.Dropdown(studio.sampler_names, value=default["sampler"], label="sampler",
                                        info="confidence is the official MaskGIT decoder")
                self.steps = gr.Slider(1, studio.limits.max_steps, value=default["num_steps"], step=1, label="steps")
                self.schedule = gr.Dropdown(list(SCHEDULES), value=default["schedule"], label="mask schedule")
            with gr.Row():
                self.choice_temperature = gr.Number(default.get("choice_temperature", 4.5), label="choice temperature",
                                                    info="re-masking noise (confidence sampler)")
                self.softmax_start = gr.Number(start, label="softmax temperature, first step")
                self.softmax_end = gr.Number(end, label="softmax temperature, last step")
                self.top_k = gr.Number(default["top_k"] or 0, precision=0, minimum=0, label="top-k", info="0 = off")
            with gr.Row():
                guidance_info = ("classifier-free guidance scale" if studio.supports_guidance
                                 else "this model was trained without class dropout, so no guidance")
                self.guidance = gr.Number(default["guidance"], minimum=0, label="guidance", info=guidance_info,
                                          interactive=studio.supports_guidance)
                self.guidance_schedule = gr.Dropdown(list(GUIDANCE_SCHEDULES), value=default["guidance_schedule"],
                                                     label="guidance schedule")
                self.context_reuse = gr.Number(default.get("context_reuse", 0), precision=0, minimum=0,
                                               maximum=MAX_CONTEXT_REUSE, label="context reuse",
                                               info="cheap steps after each full evaluation (0 = official)")
                self.reuse_group = gr.Checkbox(default.get("reuse_group", False), label="reuse in groups",
                                               info="confidence sampler: each full evaluation picks what its cheap "
                                               "steps fix (ReCAP's rule, faster)")

    @property
    def components(self) -> list[gr.components.Component]:
        return [self.name, self.steps, self.schedule, self.choice_temperature, self.softmax_start, self.softmax_end,
                self.top_k, self.guidance, self.guidance_schedule, self.context_reuse, self.reuse_group]

    def build(self, studio: Studio, values: dict[Any, Any]):
        return studio.sampler(
            values[self.name], num_steps=values[self.steps], schedule=values[self.schedule],
            choice_temperature=values[self.choice_temperature],
            softmax_temperature=(values[self.softmax_start], values[self.softmax_end]),
            top_k=values[self.top_k], guidance=values[self.guidance],
            guidance_schedule=values[self.guidance_schedule], context_reuse=values[self.context_reuse],
            reuse_group=values[self.reuse_group],
        )


class RunControls:
    """Class, number of images and seed: the common request of every tab."""

    def __init__(self, studio: Studio, count: int) -> None:
        with gr.Row():
            self.class_id = gr.Dropdown(studio.class_choices, value=0, label="class")
            self.count = gr.Slider(1, studio.limits.max_images, value=count, step=1, label="images")
            self.seed = gr.Number(0, precision=0, minimum=0, label="seed",
                                  info="empty: a fresh random seed, shown with the results")

    @property
    def components(self) -> list[gr.components.Component]:
        return [self.class_id, self.count, self.seed]


class ResultPanel:
    def __init__(self, mode: str) -> None:
        self.gallery = gr.Gallery(label="results", format="png", columns=8, height=300, object_fit="contain",
                                  buttons=["download", "fullscreen"], elem_id=f"{mode}-gallery")
        gr.Markdown("**Decoding steps** of the first image, left to right; the grey checkerboard marks the "
                    "tokens still masked.")
        self.strip = gr.Image(show_label=False, format="png", interactive=False, buttons=["download"],
                              elem_id=f"{mode}-strip")
        self.settings = gr.Markdown(elem_id=f"{mode}-settings")
        self.files = gr.File(label="downloads", file_count="multiple", interactive=False, elem_id=f"{mode}-files")

    @property
    def components(self) -> list[gr.components.Component]:
        return [self.gallery, self.strip, self.settings, self.files]


def _upload_widget(mode: str, what: str = "image") -> gr.File:
    return gr.File(label=f"{what} (PNG, JPEG, ...)", file_types=["image"], type="filepath", elem_id=f"{mode}-{what}")


# -- the app --------------------------------------------------------------------------------------


def build_app(studio: Studio) -> gr.Blocks:
    """The studio's page. Call ``.queue()`` and ``.launch(**launch_options(...))`` on it."""
    size, scale, limits = studio.image_size, _display_scale(studio), studio.limits
    limits_text = (f"Uploads: at most {limits.max_upload_bytes // 2**20} MiB and {limits.max_upload_pixels:,} "
                   f"pixels; images are resized and centre-cropped to {size}x{size}, the model's size. "
                   f"One token is {studio.factor}x{studio.factor} pixels.")

    def load_upload(path: str | None) -> tuple[Any, ...]:
        if path is None:
            return None, None, ""
        upload = studio.load_image(path)
        return upload, {"background": _display(upload.image, scale), "layers": [], "composite": None}, upload.note

    with gr.Blocks(title="MaskGIT studio", analytics_enabled=False) as demo:
        gr.Markdown(f"# MaskGIT studio\nModel `{studio.model}`: {len(studio.class_choices)} classes, "
                    f"{size}x{size} images of {studio.latent_size}x{studio.latent_size} tokens. {limits_text}")
        with gr.Tabs():
            # -- generate --
            with gr.Tab("Generate", id="generate"):
                run = RunControls(studio, count=8)
                sampler = SamplerPanel(studio, editing=False)
                button = gr.Button("Generate", variant="primary", elem_id="generate-run")
                out = ResultPanel("generate")

                @_user_errors
                def do_generate(values: dict[Any, Any], progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
                    result = studio.generate(values[run.class_id], values[run.count], sampler.build(studio, values),
                                             values[run.seed], _progress_reporter(progress))
                    return _outputs(result)

                button.click(do_generate, inputs={*run.components, *sampler.components}, outputs=out.components,
                             concurrency_id="model")

            # -- edit --
            with gr.Tab("Edit", id="edit"):
                upload_state = gr.State(None)
                with gr.Row():
                    with gr.Column():
                        upload = _upload_widget("edit")
                        note = gr.Markdown(elem_id="edit-note")
                    editor = gr.ImageEditor(
                        label="paint over the part to edit: the box is what you paint covers", type="filepath",
                        format="png", sources=(), transforms=(), layers=False, canvas_size=(size * scale,) * 2,
                        brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed", default_size=max(4, 2 * scale)),
                        elem_id="edit-editor",
                    )
                box_text = gr.Textbox(label=f"or type a box: TOP,LEFT,HEIGHT,WIDTH in pixels of the {size}x{size} image",
                                      placeholder="empty: the painted box", elem_id="edit-box")
                edit_run = RunControls(studio, count=4)
                edit_sampler = SamplerPanel(studio, editing=True)
                button = gr.Button("Edit", variant="primary", elem_id="edit-run")
                edit_out = ResultPanel("edit")
                upload.change(_user_errors(load_upload), upload, [upload_state, editor, note])

                @_user_errors
                def do_edit(values: dict[Any, Any], progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
                    current: Upload | None = values[upload_state]
                    if current is None:
                        raise ValueError("upload an image first")
                    typed = (values[box_text] or "").strip()
                    box = Box.parse(typed) if typed else _box_of(_painted_mask(values[editor], studio))
                    result = studio.edit(current, box, values[edit_run.class_id], values[edit_run.count],
                                         edit_sampler.build(studio, values), values[edit_run.seed],
                                         _progress_reporter(progress))
                    return _outputs(result)

                button.click(do_edit, inputs={upload_state, editor, box_text, *edit_run.components,
                                              *edit_sampler.components},
                             outputs=edit_out.components, concurrency_id="model")

            # -- inpaint --
            with gr.Tab("Inpaint", id="inpaint"):
                inpaint_state = gr.State(None)
                with gr.Row():
                    with gr.Column():
                        inpaint_upload = _upload_widget("inpaint")
                        mask_upload = _upload_widget("inpaint", "mask")
                        inpaint_note = gr.Markdown("A mask file (white = regenerate) is used instead of the brush; "
                                                   "it must be the image's size or the model's.",
                                                   elem_id="inpaint-note")
                    inpaint_editor = gr.ImageEditor(
                        label="paint the mask: every token it touches is regenerated", type="filepath",
                        format="png", sources=(), transforms=(), layers=False, canvas_size=(size * scale,) * 2,
                        brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed", default_size=max(4, 2 * scale)),
                        elem_id="inpaint-editor",
                    )
                inpaint_run = RunControls(studio, count=4)
                inpaint_sampler = SamplerPanel(studio, editing=True)
                button = gr.Button("Inpaint", variant="primary", elem_id="inpaint-run")
                inpaint_out = ResultPanel("inpaint")
                inpaint_upload.change(_user_errors(load_upload), inpaint_upload,
                                      [inpaint_state, inpaint_editor, inpaint_note])

                @_user_errors
                def do_inpaint(values: dict[Any, Any], progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
                    current: Upload | None = values[inpaint_state]
                    if current is None:
                        raise ValueError("upload an image first")
                    mask_path = values[mask_upload]
                    mask = (studio.load_mask(mask_path, current) if mask_path
                            else _painted_mask(values[inpaint_editor], studio))
                    result = studio.inpaint(current, mask, values[inpaint_run.class_id], values[inpaint_run.count],
                                            inpaint_sampler.build(studio, values), values[inpaint_run.seed],
                                            _progress_reporter(progress))
                    return _outputs(result)

                button.click(do_inpaint, inputs={inpaint_state, inpaint_editor, mask_upload, *inpaint_run.components,
                                                 *inpaint_sampler.components},
                             outputs=inpaint_out.components, concurrency_id="model")

            # -- outpaint --
            with gr.Tab("Outpaint", id="outpaint"):
                outpaint_state = gr.State(None)
                with gr.Row():
                    with gr.Column():
                        outpaint_upload = _upload_widget("outpaint")
                        outpaint_note = gr.Markdown(elem_id="outpaint-note")
                    preview = gr.Image(label="input", format="png", interactive=False, elem_id="outpaint-input")
                with gr.Row():
                    sides = [gr.Slider(0, studio.latent_size, value=value, step=1, label=f"tokens to add: {side}",
                                       elem_id=f"outpaint-{side}")
                             for side, value in zip(("top", "right", "bottom", "left"), (0, 4, 0, 4))]
                outpaint_run = RunControls(studio, count=4)
                outpaint_sampler = SamplerPanel(studio, editing=True)
                button = gr.Button("Outpaint", variant="primary", elem_id="outpaint-run")
                outpaint_out = ResultPanel("outpaint")

                def load_outpaint(path: str | None) -> tuple[Any, ...]:
                    if path is None:
                        return None, None, ""
                    upload = studio.load_image(path)
                    return upload, _display(upload.image, scale), upload.note

                outpaint_upload.change(_user_errors(load_outpaint), outpaint_upload,
                                       [outpaint_state, preview, outpaint_note])

                @_user_errors
                def do_outpaint(values: dict[Any, Any], progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
                    current: Upload | None = values[outpaint_state]
                    if current is None:
                        raise ValueError("upload an image first")
                    result = studio.outpaint(current, [values[side] for side in sides], values[outpaint_run.class_id],
                                             values[outpaint_run.count], outpaint_sampler.build(studio, values),
                                             values[outpaint_run.seed], _progress_reporter(progress))
                    return _outputs(result)

                button.click(do_outpaint, inputs={outpaint_state, *sides, *outpaint_run.components,
                                                  *outpaint_sampler.components},
                             outputs=outpaint_out.components, concurrency_id="model")
    # Every run shares one slot ("model"); uploads and previews are not queued behind them.
    demo.queue(default_concurrency_limit=1, max_size=64)
    return demo


def launch_options(host: str, port: int, limits: Limits) -> dict[str, Any]:
    """``Blocks.launch`` keywords: local only, bounded uploads, no tracebacks in the page."""
    return dict(server_name=host, server_port=port, share=False, show_error=False, max_file_size=limits.max_upload_bytes,
                css=CSS, footer_links=[], quiet=False, prevent_thread_lock=False)
