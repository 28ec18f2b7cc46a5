"""What the studio does for each tab, without any UI: check the inputs, build the sampler, call the
pipeline, and write the results into the session's temporary folder.

Every user error raises ``ValueError`` with a message meant for the UI. Generation itself is the
library's (``MaskGIT.generate / edit / inpaint / outpaint``); this module only turns form values into
those calls and records how to repeat each run from the command line.
"""

from __future__ import annotations

import itertools
import json
import secrets
import shlex
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskgit.data.transforms import eval_transform, resize_crop_mask
from maskgit.imageio import load_mask, open_image, save_image
from maskgit.io import atomic_write_text
from maskgit.pipeline import EDIT_START_STEP
from maskgit.runs import Run, RunPlan, resolve_seed
from maskgit.runs.manifest import (
    EditSettings,
    GenerateSettings,
    InpaintSettings,
    OutpaintSettings,
    SamplingSettings,
)
from maskgit.sampling import SAMPLERS, Sampler, sampler_flags, sampler_from_options, sampler_options
from maskgit.sampling.editing import Box, Extend, latent_box_mask, outpaint_mask, token_mask_from_pixels
from maskgit.web.strip import StripRecorder

__all__ = ["Limits", "Upload", "Result", "Studio", "Progress"]

Progress = Callable[[int, int], None]  # (steps done, steps in this decode)


@dataclass(frozen=True)
class Limits:
    """Bounds on everything a visitor controls."""

    max_upload_bytes: int = 10 * 2**20
    max_upload_pixels: int = 4096 * 4096
    max_images: int = 16
    max_steps: int = 64
    max_runs_kept: int = 100  # older run folders are deleted, so the temporary folder stays small


@dataclass(frozen=True)
class Upload:
    """An uploaded image fitted to the model: image float32 (3, S, S) in [0, 1]."""

    image: torch.Tensor
    source_size: tuple[int, int]  # (height, width) of the file
    note: str  # what was done to it, for the UI


@dataclass(frozen=True)
class Result:
    """One run: the images, the decoding strip of the first one, and how to repeat it."""

    images: list[Path]  # the PNGs, at the model's output size
    strip: np.ndarray  # uint8 (H, W, 3)
    settings: str  # Markdown: seed, sampler, the equivalent command line
    files: list[Path]  # everything downloadable: the images, the input and mask, settings.json


class Studio:
    """The studio's operations on one loaded pipeline.

    Args:
        pipeline: a loaded ``MaskGIT``.
        model: the name or path it was loaded from (for the command lines shown to users).
        workdir: an existing temporary folder; every file the studio writes goes under it.
        limits: upload and request bounds.
    """

    def __init__(self, pipeline: Any, model: str, workdir: Path, limits: Limits = Limits()) -> None:
        self.pipeline = pipeline
        self.model = model
        self.workdir = Path(workdir)
        self.limits = limits
        self._runs = itertools.count()

    # -- form choices ----------------------------------------------------------------------------

    @property
    def image_size(self) -> int:
        return self.pipeline.image_size

    @property
    def factor(self) -> int:
        """Pixels per token side."""
        return self.pipeline.tokenizer.config.downsample_factor

    @property
    def latent_size(self) -> int:
        return self.pipeline.transformer.config.latent_size

    @property
    def class_choices(self) -> list[tuple[str, int]]:
        """(label, class id) for a dropdown."""
        return [(f"{index}) {name}", index) for index, name in enumerate(self.pipeline.class_names)]

    @property
    def sampler_names(self) -> list[str]:
        return list(SAMPLERS)

    @property
    def supports_guidance(self) -> bool:
        """Guidance needs a model trained with class dropout (an unconditional class id)."""
        return self.pipeline.transformer.config.null_class_id is not None

    def default_sampler(self, editing: bool) -> Sampler:
        """The model's own sampler (editing: with the official editing step count): the form's
        starting values, as the CLI's flags start from it."""
        return self.pipeline.default_sampler(editing=editing)

    # -- inputs -----------------------------------------------------------------------------------

    def sampler(
        self,
        name: str,
        *,
        num_steps: int,
        schedule: str,
        choice_temperature: float,
        softmax_temperature: tuple[float, float],
        top_k: int | None,
        guidance: float,
        guidance_schedule: str,
        context_reuse: int = 0,
        reuse_group: bool = False,
    ) -> Sampler:
        """The sampler the form describes. Fields that ``name`` does not have (the choice
        temperature or the reuse in groups of a random-order sampler, say) are left out.
        ``softmax_temperature`` is (start, end): equal values mean a constant temperature,
        different ones a linear ramp."""
        values = {"steps": num_steps, "choice temperature": choice_temperature, "guidance": guidance,
                  "softmax temperature": softmax_temperature[0], "last softmax temperature": softmax_temperature[1],
                  "context reuse": context_reuse}
        empty = [label for label, value in values.items() if value is None]
        if empty:
            raise ValueError(f"fill in the sampler's {', '.join(empty)}")
        if not 1 <= int(num_steps) <= self.limits.max_steps:
            raise ValueError(f"steps must be between 1 and {self.limits.max_steps}, got {num_steps}")
        start, end = (float(t) for t in softmax_temperature)
        fields = {
            "num_steps": int(num_steps),
            "schedule": schedule,
            "choice_temperature": float(choice_temperature),
            "softmax_temperature": start if start == end else (start, end),
            "top_k": int(top_k) if top_k else None,
            "guidance": float(guidance),
            "guidance_schedule": guidance_schedule,
            "context_reuse": int(context_reuse),
            "reuse_group": bool(reuse_group),
        }
        options = sampler_options(name)
        return sampler_from_options({"sampler": name, **{key: fields[key] for key in fields if key in options}})

    def load_image(self, path: str | Path) -> Upload:
        """Read an upload within the limits and fit it to the model: the short side resized to the
        model's size, then a centre crop (the CLI's and the evaluation transform's recipe)."""
        picture = self._open(path, open_image)
        width, height = picture.size
        size = self.image_size
        image = eval_transform(size)(picture)  # exactly what the CLI does with --image
        name = Path(path).name
        if (height, width) == (size, size):
            note = f"{name}: {width}x{height}, the model's size; used as it is."
        elif height == width:
            note = f"{name}: {width}x{height} resized to {size}x{size}, the model's size."
        else:
            note = (f"{name}: {width}x{height} resized (short side to {size}) and centre-cropped to "
                    f"{size}x{size}, the model's size.")
        return Upload(image, (height, width), note)

    def load_mask(self, path: str | Path, upload: Upload) -> torch.Tensor:
        """A mask file (white, or opaque on a transparent layer, = regenerate) → bool (S, S).

        It must be the size of the uploaded image, which it follows through the same resize and
        crop, or already the model's size.
        """
        mask = self._open(path, load_mask)
        size = self.image_size
        if tuple(mask.shape) == upload.source_size:
            mask = resize_crop_mask(mask, size)
        elif tuple(mask.shape) != (size, size):
            height, width = upload.source_size
            raise ValueError(f"{Path(path).name}: the mask is {mask.shape[1]}x{mask.shape[0]}; it must be the "
                             f"image's size ({width}x{height}) or the model's ({size}x{size})")
        return mask

    def _open(self, path: str | Path, reader: Callable[..., Any]) -> Any:
        """Run a reader within the upload limits (bytes first, then pixels from the header, before
        decoding). Messages name the file, not our folders, and leave out the CLI's flags."""
        path = Path(path)
        size = path.stat().st_size if path.is_file() else 0
        if size > self.limits.max_upload_bytes:
            raise ValueError(f"{path.name}: {size:,} bytes is over the limit of {self.limits.max_upload_bytes:,}")
        try:
            return reader(path, max_pixels=self.limits.max_upload_pixels)
        except (ValueError, FileNotFoundError) as error:
            message = str(error).replace(f"{path.parent}/", "")
            raise ValueError(message.split("; raise it with --")[0]) from None

    def _check_count(self, count: int) -> int:
        if not 1 <= int(count) <= self.limits.max_images:
            raise ValueError(f"the number of images must be between 1 and {self.limits.max_images}, got {count}")
        return int(count)

    def _check_class(self, class_id: int | None) -> int:
        if class_id is None:
            raise ValueError("pick a class")
        return int(class_id)

    # -- the four modes ---------------------------------------------------------------------------

    def generate(
        self, class_id: int, num_images: int, sampler: Sampler, seed: int | None, progress: Progress | None = None
    ) -> Result:
        """``num_images`` images of one class."""
        class_id, count = self._check_class(class_id), self._check_count(num_images)
        options = ["--class", str(class_id), "--num", str(count)]
        return self._run(GenerateSettings, class_id, count, sampler, seed, progress, options, {}, None)

    def edit(
        self, upload: Upload, box: Box, class_id: int, num_images: int, sampler: Sampler, seed: int | None,
        progress: Progress | None = None,
    ) -> Result:
        """Regenerate a box (pixels of the fitted image) as ``class_id``, blended back in."""
        class_id, count = self._check_class(class_id), self._check_count(num_images)
        unknown = latent_box_mask(box, self.image_size, self.image_size, self.factor)
        box_text = f"{box.top},{box.left},{box.height},{box.width}"
        options = ["--image", "input.png", "--box", box_text, "--class", str(class_id), "--num", str(count)]
        record = {"image": "input.png", "box": (box.top, box.left, box.height, box.width), "start_step": EDIT_START_STEP}
        return self._run(EditSettings, class_id, count, sampler, seed, progress, options, record,
                         lambda **common: self.pipeline.edit(upload.image, box, **common), unknown,
                         inputs={"input.png": upload.image})

    def inpaint(
        self, upload: Upload, mask: torch.Tensor, class_id: int, num_images: int, sampler: Sampler,
        seed: int | None, progress: Progress | None = None,
    ) -> Result:
        """Regenerate the pixels of ``mask`` (bool (S, S), True = regenerate)."""
        class_id, count = self._check_class(class_id), self._check_count(num_images)
        if not mask.any():
            raise ValueError("the mask is empty: paint over the part to regenerate, or upload a mask with white pixels")
        options = ["--image", "input.png", "--mask", "mask.png", "--class", str(class_id), "--num", str(count)]
        return self._run(InpaintSettings, class_id, count, sampler, seed, progress, options,
                         {"image": "input.png", "mask": "mask.png"},
                         lambda **common: self.pipeline.inpaint(upload.image, mask, **common),
                         token_mask_from_pixels(mask.cpu(), self.factor),
                         inputs={"input.png": upload.image, "mask.png": mask.float().expand(3, -1, -1)})

    def outpaint(
        self, upload: Upload, extend_tokens: Sequence[int], class_id: int, num_images: int, sampler: Sampler,
        seed: int | None, progress: Progress | None = None,
    ) -> Result:
        """Add ``(top, right, bottom, left)`` tokens around the image and generate them."""
        class_id, count = self._check_class(class_id), self._check_count(num_images)
        tokens = [int(value) for value in extend_tokens]
        if any(not 0 <= value <= self.latent_size for value in tokens):
            raise ValueError(f"tokens to add on each side must be between 0 and {self.latent_size}, got {tokens}")
        if not any(tokens):
            raise ValueError("add at least one token on some side")
        extend = Extend(*(value * self.factor for value in tokens))
        unknown = outpaint_mask(self.latent_size, self.latent_size, Extend(*tokens))
        extend_text = f"{extend.top},{extend.right},{extend.bottom},{extend.left}"
        options = ["--image", "input.png", "--extend", extend_text, "--class", str(class_id), "--num", str(count)]
        record = {"image": "input.png", "extend": (extend.top, extend.right, extend.bottom, extend.left)}
        return self._run(OutpaintSettings, class_id, count, sampler, seed, progress, options, record,
                         lambda **common: self.pipeline.outpaint(upload.image, extend, **common), unknown,
                         inputs={"input.png": upload.image})

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _seed(seed: int | float | None) -> int:
        """The run's seed: the one given, or a fresh one (``maskgit.runs.resolve_seed``) that the UI
        then shows. The form's numbers arrive as floats."""
        if seed is not None and (int(seed) != seed or seed < 0):
            raise ValueError(f"the seed must be a whole number of at least 0, got {seed}")
        return resolve_seed(None if seed is None else int(seed))[0]

    def _run_folder(self, mode: str) -> Path:
        runs = sorted(self.workdir.glob("run-*"), key=lambda path: path.stat().st_mtime)
        for old in runs[: max(0, len(runs) + 1 - self.limits.max_runs_kept)]:
            shutil.rmtree(old, ignore_errors=True)
        folder = self.workdir / f"run-{next(self._runs):05d}-{mode}-{secrets.token_hex(4)}"
        folder.mkdir(parents=True)
        return folder

    def _run(
        self,
        kind: type[SamplingSettings],
        class_id: int,
        count: int,
        sampler: Sampler,
        seed: int | None,
        progress: Progress | None,
        options: list[str],
        record: dict[str, Any],
        call: Callable[..., torch.Tensor] | None,
        unknown: torch.Tensor | None = None,
        inputs: dict[str, torch.Tensor] | None = None,
    ) -> Result:
        """One mode's run (``maskgit.runs.Run``), all images in one batch, into a folder of its own
        with the inputs and ``settings.json``: the run's settings and the command line that repeats it."""
        mode = kind.command
        seed = self._seed(seed)
        run = Run(RunPlan((class_id,), count, prefix=mode), sampler, seed, unknown,
                  record.get("start_step", 0))
        pipeline = self.pipeline
        recorder = StripRecorder(lambda ids: pipeline.tokenizer.decode_ids(ids.to(pipeline.device)), on_step=progress,
                                 total=run.cost(pipeline).decoding_steps(count, count))

        folder = self._run_folder(mode)
        make = None if call is None else run.editor(call)
        run.write(pipeline, folder, batch_size=count, make=make, callback=recorder)
        files = [folder / path for path in run.plan.paths]
        for name, image in (inputs or {}).items():
            save_image(image, folder / name)
        command = self.command_line(mode, options, sampler, seed)
        settings = run.settings(kind, model=self.model, class_names=pipeline.class_names, precision=pipeline.precision,
                                device=str(pipeline.device), batch_size=count, **record)
        atomic_write_text(folder / "settings.json",
                          json.dumps({"settings": settings.to_dict(), "command_line": command}, indent=2) + "\n")
        text = (f"**seed** {seed} · **sampler** `{json.dumps(sampler.to_dict())}`\n\n"
                f"The same images from the command line (with the downloaded files):\n\n```bash\n{command}\n```")
        return Result(files, recorder.render(), text, [*files, *(folder / name for name in inputs or {}),
                                                      folder / "settings.json"])

    def command_line(self, mode: str, options: list[str], sampler: Sampler, seed: int) -> str:
        """The ``maskgit`` command that makes the same images."""
        words = ["maskgit", mode, "--model", self.model, *options, "--seed", str(seed), *sampler_flags(sampler),
                 "--out", f"out/{mode}"]
        return shlex.join(words)
