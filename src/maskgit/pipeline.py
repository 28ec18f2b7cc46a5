"""``MaskGIT``: the tokenizer and the transformer together, saved and loaded as one folder.

Folder layout (written by ``save_pretrained``)::

    model_index.json    {"format": "maskgit-pipeline", "version": 1, "class_names": [...]}
    tokenizer/          config.json + model.safetensors (VQGAN)
    transformer/        config.json + model.safetensors (MaskGITTransformer)
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from maskgit.checkpoints.errors import CheckpointError
from maskgit.checkpoints.hub import checkpoint_names, default_cache_dir, fetch_official
from maskgit.class_names import imagenet_class_names
from maskgit.configs import TOKENIZER_PRESETS, TRANSFORMER_PRESETS
from maskgit.devices import resolve_device
from maskgit.io import atomic_write_text
from maskgit.models import VQGAN, MaskGITTransformer
from maskgit.sampling.decode import MASK_ID, NoiseFn, gumbel_noise
from maskgit.sampling.editing import (
    Box,
    Extend,
    composite,
    composite_mask,
    latent_box_mask,
    outpaint_canvas,
    token_mask_from_pixels,
)
from maskgit.sampling.fill import fill_tokens
from maskgit.validation import check_class_ids, check_class_names, check_images

__all__ = ["MaskGIT", "PIPELINE_INDEX", "SHIPPED_MODELS", "image_seeds", "RowNoise", "shipped_model_dir"]

PRECISIONS = ("fp32", "bf16")


def image_seeds(seed: int, indices: Sequence[int]) -> list[int]:
    """Independent 63-bit seeds for the images of a run with these indices.

    Image i's noise depends only on ``(seed, i)``: not on the batch size, nor on which images were
    generated before it, so an interrupted run resumes with identical images.
    """
    return [
        int(np.random.SeedSequence(seed, spawn_key=(index,)).generate_state(1, dtype=np.uint64)[0] >> 1)
        for index in indices
    ]


class RowNoise:
    """A decode ``noise`` function that draws each batch row from its own CPU generator."""

    def __init__(self, seeds: Sequence[int], device: torch.device) -> None:
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.device = device

    def __call__(self, step: int, kind: str, shape: tuple[int, ...]) -> torch.Tensor:
        rows = [gumbel_noise(tuple(shape[1:]), generator=g) for g in self.generators]
        return torch.stack(rows).to(self.device)

PIPELINE_INDEX = "model_index.json"
_FORMAT = "maskgit-pipeline"
_VERSION = 1


# Models whose weights ship inside the package (src/maskgit/pretrained/<name>).
SHIPPED_MODELS = ("fashion-mnist",)


def shipped_model_dir(name: str) -> Path:
    """The folder of a model that ships in the package."""
    return Path(str(resources.files("maskgit") / "pretrained" / name))


def _converted_checkpoint(name: str, cache_dir: str | os.PathLike[str] | None) -> Path:
    """``<cache>/models/<name>``: the registered checkpoint in our format, converted on first use.

    The conversion is written to a temporary folder and renamed into place, so an interrupted
    conversion is simply redone.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = cache / "models" / name
    if (folder / PIPELINE_INDEX).is_file():
        return folder
    files = fetch_official(name, cache_dir=cache)
    tokenizer = VQGAN.from_pretrained(files["tokenizer"], config=TOKENIZER_PRESETS.get(name))
    transformer = MaskGITTransformer.from_pretrained(files["transformer"], config=TRANSFORMER_PRESETS.get(name))
    names = imagenet_class_names() if transformer.config.num_classes == 1000 else None
    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=folder.parent))
    try:
        MaskGIT(tokenizer, transformer, names).save_pretrained(temp)
        if folder.exists():  # a half-converted folder from an older run, or a concurrent conversion
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(temp, folder)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return folder


class MaskGIT(nn.Module):
    """A VQGAN tokenizer and a MaskGIT transformer that share a codebook.

    ``class_names`` (one per class id) lets users and the CLI name classes; it defaults to
    ``class_0 .. class_{n-1}``.
    """

    def __init__(
        self,
        tokenizer: VQGAN,
        transformer: MaskGITTransformer,
        class_names: Sequence[str] | None = None,
        *,
        precision: str = "fp32",
    ) -> None:
        super().__init__()
        if tokenizer.config.codebook_size != transformer.config.codebook_size:
            raise ValueError(
                f"tokenizer codebook_size {tokenizer.config.codebook_size} != transformer "
                f"codebook_size {transformer.config.codebook_size}"
            )
        num_classes = transformer.config.num_classes
        names = tuple(class_names) if class_names is not None else tuple(f"class_{i}" for i in range(num_classes))
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for a transformer with {num_classes} classes")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.tokenizer = tokenizer
        self.transformer = transformer
        self.class_names = names
        self.precision = precision

    @property
    def image_size(self) -> int:
        """The generated image side: the transformer's token grid times the tokenizer's stride."""
        return self.transformer.config.latent_size * self.tokenizer.config.downsample_factor

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    def save_pretrained(self, directory: str | os.PathLike[str]) -> None:
        """Write both models and ``model_index.json`` (last, so a folder with an index is whole)."""
        directory = Path(directory)
        self.tokenizer.save_pretrained(directory / "tokenizer")
        self.transformer.save_pretrained(directory / "transformer")
        index = {"format": _FORMAT, "version": _VERSION, "class_names": list(self.class_names)}
        atomic_write_text(directory / PIPELINE_INDEX, json.dumps(index, indent=2) + "\n")

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> MaskGIT:
        """Load a folder written by ``save_pretrained``, a model shipped in the package
        (``fashion-mnist``), or a registered name (``imagenet256``, ``imagenet512``), whose official
        files are downloaded into the cache and converted once. Returns the pipeline in eval mode."""
        path = Path(name_or_path)
        if not path.exists():
            name = str(name_or_path)
            if name in SHIPPED_MODELS:
                path = shipped_model_dir(name)
            elif name in checkpoint_names():
                path = _converted_checkpoint(name, cache_dir)
            else:
                known = ", ".join((*SHIPPED_MODELS, *checkpoint_names()))
                raise CheckpointError(f"{name}: no such folder, and not a known model name ({known})")
        index_path = path / PIPELINE_INDEX
        if not index_path.is_file():
            raise CheckpointError(f"{path}: no {PIPELINE_INDEX}; not a saved MaskGIT pipeline folder")
        try:
            index = json.loads(index_path.read_text())
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{index_path}: not valid JSON ({error})") from None
        if not isinstance(index, dict) or index.get("format") != _FORMAT:
            raise CheckpointError(f"{index_path}: format is not {_FORMAT!r}")
        device = resolve_device(device) if device is not None else None  # "auto" too; clear errors
        tokenizer = VQGAN.from_pretrained(path / "tokenizer", device=device)
        transformer = MaskGITTransformer.from_pretrained(path / "transformer", device=device)
        names = check_class_names(index.get("class_names"), transformer.config.num_classes, source=str(index_path))
        return cls(tokenizer, transformer, names, precision=precision).eval()

    # -- helpers ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        """No autograd, and bf16 autocast when ``precision == "bf16"``. Sampling arithmetic in the
        decoder stays float32 either way."""
        device_type = self.device.type
        with torch.no_grad(), torch.autocast(
            device_type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        ):
            yield

    def _class_tokens(self, class_ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
        ids = torch.as_tensor(check_class_ids(class_ids), dtype=torch.long)
        num_classes = self.transformer.config.num_classes
        if ids.numel() == 0:
            raise ValueError("no class ids given")
        bad = ids[(ids < 0) | (ids >= num_classes)]
        if bad.numel():
            raise ValueError(f"class id {int(bad[0])} is outside [0, {num_classes})")
        return (ids + self.transformer.config.codebook_size).to(self.device)

    def _fill(
        self,
        canvas: torch.Tensor,
        class_tokens: torch.Tensor,
        image_indices: Sequence[int],
        *,
        num_steps: int,
        start_iter: int,
        choice_temperature: float,
        schedule: str,
        seed: int | None,
        generator: torch.Generator | None,
        noise: NoiseFn | None,
    ) -> torch.Tensor:
        """Fill the masked tokens of canvas (B, h, w) and decode: images (B, 3, H, W) in [0, 1].

        Randomness: explicit ``noise``, else the caller's ``generator``, else per-image seeds
        derived from ``seed`` and ``image_indices``.
        """
        if noise is not None:
            randomness: dict[str, Any] = {"noise": noise}
        elif generator is not None:
            randomness = {"generator": generator}
        else:
            seed = secrets.randbits(63) if seed is None else seed
            randomness = {"noise": RowNoise(image_seeds(seed, image_indices), self.device)}
        with self._inference():
            filled = fill_tokens(
                self.transformer, canvas, class_tokens, latent_size=self.transformer.config.latent_size,
                num_iter=num_steps, start_iter=start_iter, choice_temperature=choice_temperature,
                schedule=schedule, **randomness,
            )
            return self._decode_images(filled)

    def _encode_samples(self, images: torch.Tensor, num_samples: int) -> torch.Tensor:
        """The image's token ids (1, h, w) repeated to (num_samples, h, w)."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        with self._inference():
            return self.tokenizer.encode_to_ids(images).repeat(num_samples, 1, 1)

    def _images(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) or (B, 3, H, W) float in [0, 1] → (B, 3, H, W) on the model's device."""
        check_images(image)
        images = image[None] if image.dim() == 3 else image
        return images.to(self.device, torch.float32)

    def _single_image(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) or (1, 3, H, W) → (1, 3, H, W): the editing modes take one image at a time."""
        images = self._images(image)
        if images.dim() != 4 or images.shape[0] != 1:
            raise ValueError(f"edit one (3, H, W) image at a time, got shape {tuple(image.shape)}")
        return images

    def _decode_images(self, ids: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.decode_ids(ids).float().clamp(0, 1)

    # -- generation and editing -------------------------------------------------------------------

    def generate(
        self,
        class_ids: Sequence[int] | torch.Tensor | int,
        *,
        num_steps: int = 16,
        choice_temperature: float = 4.5,
        schedule: str = "cosine",
        seed: int | None = None,
        generator: torch.Generator | None = None,
        noise: NoiseFn | None = None,
        batch_size: int | None = None,
        image_indices: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Class-conditional generation, one image per entry of ``class_ids``.

        Returns float32 (B, 3, H, W) in [0, 1]. With ``seed``, image i depends only on
        ``(seed, image_indices[i])`` (default ``image_indices = range(B)``), so a run can be split
        or resumed without changing its images; with ``generator``, on the generator's stream (and
        so on the batching); ``noise`` injects the Gumbel noise directly (see ``maskgit.decode``).
        The defaults (16 steps, temperature 4.5, cosine) are the official demo's.
        """
        if isinstance(class_ids, int):
            class_ids = [class_ids]
        tokens = self._class_tokens(class_ids)
        total = tokens.shape[0]
        indices = list(range(total)) if image_indices is None else list(image_indices)
        if len(indices) != total:
            raise ValueError(f"{len(indices)} image_indices for {total} class ids")
        batch_size = batch_size or total
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        latent = self.transformer.config.latent_size
        outputs = []
        for start in range(0, total, batch_size):
            chunk = tokens[start : start + batch_size]
            canvas = torch.full((chunk.shape[0], latent, latent), MASK_ID, dtype=torch.long, device=self.device)
            outputs.append(self._fill(
                canvas, chunk, indices[start : start + batch_size], num_steps=num_steps, start_iter=0,
                choice_temperature=choice_temperature, schedule=schedule, seed=seed, generator=generator,
                noise=noise,
            ))
        return torch.cat(outputs)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [0, 1] → tokenizer round trip, clipped to [0, 1]."""
        with self._inference():
            return self._decode_images(self.tokenizer.encode_to_ids(self._images(images)))

    def edit(
        self,
        image: torch.Tensor,
        box: Box | Sequence[int],
        class_id: int,
        *,
        num_samples: int = 1,
        num_steps: int = 12,
        start_iter: int = 2,
        choice_temperature: float = 4.5,
        schedule: str = "cosine",
        seed: int | None = None,
        generator: torch.Generator | None = None,
        noise: NoiseFn | None = None,
    ) -> torch.Tensor:
        """Class-conditional box editing, as the official demo does it.

        image (3, H, W) or (1, 3, H, W) in [0, 1]; box ``(top, left, height, width)`` in pixels.
        The box grows by one token on each side, decoding runs steps 2..11 of 12, and the result
        is blended into the original through the blurred box mask. Returns (num_samples, 3, H, W).
        """
        images = self._single_image(image)
        box = box if isinstance(box, Box) else Box(*box)
        height, width = images.shape[-2:]
        token_mask = latent_box_mask(box, height, width, self.tokenizer.config.downsample_factor)
        canvas = torch.where(token_mask.to(self.device), MASK_ID, self._encode_samples(images, num_samples))
        generated = self._fill(
            canvas, self._class_tokens([class_id] * num_samples), range(num_samples), num_steps=num_steps,
            start_iter=start_iter, choice_temperature=choice_temperature, schedule=schedule, seed=seed,
            generator=generator, noise=noise,
        )
        return composite(generated, images, composite_mask(token_mask, height, width))

    def inpaint(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        class_id: int,
        *,
        num_samples: int = 1,
        num_steps: int = 12,
        choice_temperature: float = 4.5,
        schedule: str = "cosine",
        seed: int | None = None,
        generator: torch.Generator | None = None,
        noise: NoiseFn | None = None,
    ) -> torch.Tensor:
        """Free-form inpainting. mask (H, W), True (or > 0.5) where pixels are regenerated.

        Every token the mask touches is regenerated; pixels outside the mask are kept exactly.
        Returns (num_samples, 3, H, W) in [0, 1].
        """
        images = self._single_image(image)
        height, width = images.shape[-2:]
        if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
            raise ValueError(f"mask must be an (H, W) tensor, got {getattr(mask, 'shape', type(mask).__name__)}")
        if tuple(mask.shape) != (height, width):
            raise ValueError(f"mask is {mask.shape[0]}x{mask.shape[1]} but the image is {height}x{width}")
        pixel_mask = mask > 0.5 if mask.is_floating_point() else mask.bool()
        if not pixel_mask.any():
            raise ValueError("mask is empty: nothing to inpaint")
        token_mask = token_mask_from_pixels(pixel_mask.cpu(), self.tokenizer.config.downsample_factor)
        canvas = torch.where(token_mask.to(self.device), MASK_ID, self._encode_samples(images, num_samples))
        generated = self._fill(
            canvas, self._class_tokens([class_id] * num_samples), range(num_samples), num_steps=num_steps,
            start_iter=0, choice_temperature=choice_temperature, schedule=schedule, seed=seed,
            generator=generator, noise=noise,
        )
        return composite(generated, images, pixel_mask.float())

    def outpaint(
        self,
        image: torch.Tensor,
        extend: Extend | Sequence[int],
        class_id: int,
        *,
        num_samples: int = 1,
        num_steps: int = 12,
        choice_temperature: float = 4.5,
        schedule: str = "cosine",
        seed: int | None = None,
        generator: torch.Generator | None = None,
        noise: NoiseFn | None = None,
    ) -> torch.Tensor:
        """Extend the canvas by ``(top, right, bottom, left)`` pixels, each rounded up to whole
        tokens, and generate the new border. The original pixels are kept exactly.
        Returns (num_samples, 3, H + top + bottom, W + left + right) in [0, 1]."""
        images = self._single_image(image)
        extend = extend if isinstance(extend, Extend) else Extend(*extend)
        factor = self.tokenizer.config.downsample_factor
        tokens = extend.in_tokens(factor)
        canvas = outpaint_canvas(self._encode_samples(images, num_samples), tokens, MASK_ID)
        generated = self._fill(
            canvas, self._class_tokens([class_id] * num_samples), range(num_samples), num_steps=num_steps,
            start_iter=0, choice_temperature=choice_temperature, schedule=schedule, seed=seed,
            generator=generator, noise=noise,
        )
        top, left = tokens.top * factor, tokens.left * factor
        height, width = images.shape[-2:]
        generated[:, :, top : top + height, left : left + width] = images
        return generated
