"""``MaskGIT``: the tokenizer and the transformer together, saved and loaded as one folder.

Folder layout (written by ``save_pretrained``)::

    model_index.json    {"format": "maskgit-pipeline", "version": 1, "class_names": [...],
                         "sampler": {...}}   (the model's default sampler, ``Sampler.to_dict``)
    tokenizer/          config.json + model.safetensors (VQGAN)
    transformer/        config.json + model.safetensors (MaskGITTransformer)
"""

from __future__ import annotations

import contextlib
import copy
import json
import numbers
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from maskgit.checkpoints.errors import CheckpointError
from maskgit.class_names import resolve_class
from maskgit.devices import resolve_device
from maskgit.io import atomic_write_text
from maskgit.models import VQGAN, MaskGITTransformer
from maskgit.models.inference import CompiledLogits, check_precision, prepare_for_inference
from maskgit.registry import PIPELINE_INDEX, resolve_pretrained
from maskgit.sampling.editing import (
    Box,
    Extend,
    composite,
    composite_mask,
    latent_box_mask,
    outpaint_canvas,
    token_mask_from_pixels,
)
from maskgit.sampling.engine import DecodeStep
from maskgit.sampling.fill import fill_tokens
from maskgit.sampling.noise import GeneratorNoise, InjectedNoise, NoiseFn, NoiseSource, SeededNoise
from maskgit.sampling.samplers import ConfidenceSampler, Sampler, sampler_from_dict
from maskgit.sampling.steps import MASK_ID
from maskgit.validation import check_class_names, check_images

__all__ = ["MaskGIT", "ClassLabel", "EDIT_STEPS"]

_FORMAT = "maskgit-pipeline"
_VERSION = 1

#: The official editing recipe decodes steps 2..11 of 12 (spec §4); the editing modes use the
#: model's sampler with this many steps when no sampler is given.
EDIT_STEPS = 12

#: A class given by id or by name (any spelling ``maskgit.class_names.resolve_class`` takes).
ClassLabel = int | str

Callback = Callable[[DecodeStep], None]


class MaskGIT(nn.Module):
    """A VQGAN tokenizer and a MaskGIT transformer that share a codebook.

    ``class_names`` (one per class id) lets users and the CLI name classes; it defaults to
    ``class_0 .. class_{n-1}``. ``sampler`` is the model's default sampler (``pipe.sampler``),
    used when a method gets ``sampler=None``; it defaults to the official ``ConfidenceSampler()``.

    ``precision`` is ``fp32``, ``bf16`` or ``fp16`` (CUDA only). Below fp32 the pipeline keeps its
    own copies of the models with their weights in that dtype and a channels-last tokenizer (see
    ``maskgit.models.inference``); the modules passed in are not changed. ``from_pretrained``
    converts the loaded models without a copy.

    Every generation method shares one sampling signature: ``sampler``, then the randomness
    (``seed``, ``generator`` or ``noise``), then ``callback``.
    """

    def __init__(
        self,
        tokenizer: VQGAN,
        transformer: MaskGITTransformer,
        class_names: Sequence[str] | None = None,
        *,
        precision: str = "fp32",
        sampler: Sampler | None = None,
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
        check_precision(precision, next(transformer.parameters()).device)
        if sampler is not None and not isinstance(sampler, Sampler):
            raise TypeError(f"sampler must be a maskgit.sampling.Sampler, got {type(sampler).__name__}")
        self.tokenizer = tokenizer
        self.transformer = transformer
        self.class_names = names
        self.precision = "fp32"
        self.sampler: Sampler = sampler or ConfidenceSampler()
        self._compiled: CompiledLogits | None = None  # set by ``compile``
        if precision != "fp32":
            self.tokenizer, self.transformer = copy.deepcopy(tokenizer), copy.deepcopy(transformer)
            self.to_precision(precision)

    def to_precision(self, precision: str) -> MaskGIT:
        """Convert this pipeline's models in place for inference in ``precision`` (weights in its
        dtype, float32 where it matters, a channels-last tokenizer; ``maskgit.models.inference``).
        Drops a ``compile``d step. Returns ``self``."""
        check_precision(precision, self.device)
        prepare_for_inference(self.tokenizer, self.transformer, precision)
        self.precision = precision
        self._compiled = None
        return self

    @property
    def _logits_model(self) -> MaskGITTransformer | CompiledLogits:
        """What the sampler calls for logits: the transformer, or its compiled form."""
        return self._compiled or self.transformer

    def compile(self, mode: str | None = None, **options) -> MaskGIT:
        """Compile the transformer's step with ``torch.compile`` (shapes are static per batch
        size; on CUDA ``mode="reduce-overhead"`` captures each step in a CUDA graph). The first
        call of each batch shape pays the compilation. Returns ``self``."""
        self._compiled = CompiledLogits(self.transformer, mode=mode, **options)
        return self

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
        index = {"format": _FORMAT, "version": _VERSION, "class_names": list(self.class_names),
                 "sampler": self.sampler.to_dict()}
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
        path = resolve_pretrained(name_or_path, cache_dir)
        index_path = path / PIPELINE_INDEX
        if not index_path.is_file():
            raise CheckpointError(f"{path}: no {PIPELINE_INDEX}; not a saved MaskGIT pipeline folder")
        try:
            index = json.loads(index_path.read_text())
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{index_path}: not valid JSON ({error})") from None
        if not isinstance(index, dict) or index.get("format") != _FORMAT:
            raise CheckpointError(f"{index_path}: format is not {_FORMAT!r}")
        sampler = None
        if index.get("sampler") is not None:
            try:
                sampler = sampler_from_dict(index["sampler"])
            except (TypeError, ValueError) as error:
                raise CheckpointError(f"{index_path}: bad sampler ({error})") from None
        device = resolve_device(device) if device is not None else None  # "auto" too; clear errors
        tokenizer = VQGAN.from_pretrained(path / "tokenizer", device=device)
        transformer = MaskGITTransformer.from_pretrained(path / "transformer", device=device)
        names = check_class_names(index.get("class_names"), transformer.config.num_classes, source=str(index_path))
        pipeline = cls(tokenizer, transformer, names, sampler=sampler).eval()
        # The loaded models are ours: converted in place, always (channels-last helps fp32 too).
        return pipeline.to_precision(precision)

    # -- helpers ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        """Inference mode: no autograd records or version counters. The weights already hold the
        compute dtype, so nothing is cast per step; the decoder's sampling arithmetic is float32.
        Results that leave the pipeline are cloned out of it (``_released``), so that callers may
        update them in place."""
        with torch.inference_mode():
            yield

    @staticmethod
    def _released(tensor: torch.Tensor) -> torch.Tensor:
        """An ordinary tensor with the values of an inference-mode tensor."""
        return tensor.clone()

    def class_ids(self, class_labels: ClassLabel | Sequence[ClassLabel] | torch.Tensor) -> list[int]:
        """Class ids for labels given as ids, names, or a mix: ``["sneaker", 3]`` → ``[7, 3]``.

        Raises ValueError for an unknown name, an id outside [0, num_classes), or a non-integral
        number (``1.7`` is refused, not truncated).
        """
        if isinstance(class_labels, torch.Tensor):
            if class_labels.is_floating_point() or class_labels.is_complex() or class_labels.dtype == torch.bool:
                raise ValueError(f"class ids must be integers, got a {class_labels.dtype} tensor")
            class_labels = class_labels.reshape(-1).tolist()
        elif isinstance(class_labels, (str, numbers.Number)):
            class_labels = [class_labels]
        labels = list(class_labels)
        if not labels:
            raise ValueError("no class ids given")
        num_classes = self.transformer.config.num_classes
        ids = []
        for label in labels:
            if isinstance(label, str):
                ids.append(resolve_class(label, self.class_names))
                continue
            if isinstance(label, bool) or not isinstance(label, numbers.Integral):
                raise ValueError(f"class ids must be integers or class names, got {label!r}")
            if not 0 <= label < num_classes:
                raise ValueError(f"class id {int(label)} is outside [0, {num_classes})")
            ids.append(int(label))
        return ids

    def _single_class(self, class_label: ClassLabel) -> int:
        """The editing modes take one class, by id or name."""
        if not isinstance(class_label, (str, numbers.Number)):
            raise ValueError(f"give one class id or name, got {class_label!r}")
        return self.class_ids(class_label)[0]

    def _class_tokens(self, class_ids: Sequence[int]) -> torch.Tensor:
        return torch.tensor(class_ids, dtype=torch.long, device=self.device) + self.transformer.config.codebook_size

    def _noise(
        self, seed: int | None, generator: torch.Generator | None, noise: NoiseFn | None, indices: Sequence[int]
    ) -> NoiseSource:
        """Explicit ``noise``, else the caller's ``generator``, else per-image seeds derived from
        ``seed`` (a fresh random one if None) and the images' indices in the run."""
        if noise is not None:
            return InjectedNoise(noise)
        if generator is not None:
            return GeneratorNoise(generator)
        seed = secrets.randbits(63) if seed is None else seed
        return SeededNoise.for_images(seed, indices, device=self.device)

    def _fill(
        self,
        canvas: torch.Tensor,
        class_tokens: torch.Tensor,
        sampler: Sampler,
        noise: NoiseSource,
        *,
        start_iter: int = 0,
        callback: Callback | None = None,
    ) -> torch.Tensor:
        """Fill the masked tokens of canvas (B, h, w) and decode: images (B, 3, H, W) in [0, 1]."""
        if not isinstance(sampler, Sampler):
            raise TypeError(f"sampler must be a maskgit.sampling.Sampler, got {type(sampler).__name__}")
        with self._inference():
            filled = fill_tokens(
                self._logits_model, canvas, class_tokens, latent_size=self.transformer.config.latent_size,
                sampler=sampler, noise=noise, start_iter=start_iter, callback=callback,
            )
            images = self._decode_images(filled)
        return self._released(images)

    def default_sampler(self, editing: bool = False) -> Sampler:
        """What ``sampler=None`` means: ``self.sampler``, with ``EDIT_STEPS`` steps for the
        editing modes (the official editing recipe)."""
        return self.sampler.replace(num_steps=EDIT_STEPS) if editing else self.sampler

    def _encode_samples(self, images: torch.Tensor, num_samples: int) -> torch.Tensor:
        """The image's token ids (1, h, w) repeated to (num_samples, h, w)."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        with self._inference():
            ids = self.tokenizer.encode_to_ids(images).repeat(num_samples, 1, 1)
        return self._released(ids)

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
        class_labels: ClassLabel | Sequence[ClassLabel] | torch.Tensor,
        *,
        sampler: Sampler | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        noise: NoiseFn | None = None,
        callback: Callback | None = None,
        batch_size: int | None = None,
        image_indices: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Class-conditional generation, one image per entry of ``class_labels`` (ids or names).

        Returns float32 (B, 3, H, W) in [0, 1]. ``sampler`` defaults to ``self.sampler``. With
        ``seed``, image i depends only on ``(seed, image_indices[i])`` (default
        ``image_indices = range(B)``), so a run can be split or resumed without changing its
        images, whatever the sampler; with ``generator``, on the generator's stream (and so on the
        batching); ``noise`` injects the Gumbel noise directly (see ``maskgit.decode``).
        ``callback`` gets every step's ``DecodeStep`` of every batch.
        """
        sampler = self.sampler if sampler is None else sampler
        tokens = self._class_tokens(self.class_ids(class_labels))
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
            source = self._noise(seed, generator, noise, indices[start : start + batch_size])
            outputs.append(self._fill(canvas, chunk, sampler, source, callback=callback))
        return torch.cat(outputs)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [0, 1] → tokenizer round trip, clipped to [0, 1]."""
        with self._inference():
            reconstructed = self._decode_images(self.tokenizer.encode_to_ids(self._images(images)))
        return self._released(reconstructed)

    def edit(
        self,
        image: torch.Tensor,
        box: Box | Sequence[int],
        class_label: ClassLabel,
        *,
        num_samples: int = 1,
        start_iter: int = 2,
        sampler: Sampler | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        noise: NoiseFn | None = None,
        callback: Callback | None = None,
    ) -> torch.Tensor:
        """Class-conditional box editing, as the official demo does it.

        image (3, H, W) or (1, 3, H, W) in [0, 1]; box ``(top, left, height, width)`` in pixels.
        The box grows by one token on each side, decoding starts at ``start_iter`` (the official
        recipe: steps 2..11 of 12, the default when ``sampler`` is None), and the result is blended
        into the original through the blurred box mask. Returns (num_samples, 3, H, W).
        """
        images = self._single_image(image)
        box = box if isinstance(box, Box) else Box(*box)
        height, width = images.shape[-2:]
        token_mask = latent_box_mask(box, height, width, self.tokenizer.config.downsample_factor)
        class_id = self._single_class(class_label)
        canvas = torch.where(token_mask.to(self.device), MASK_ID, self._encode_samples(images, num_samples))
        generated = self._fill(
            canvas, self._class_tokens([class_id] * num_samples), sampler or self.default_sampler(editing=True),
            self._noise(seed, generator, noise, range(num_samples)), start_iter=start_iter, callback=callback,
        )
        return composite(generated, images, composite_mask(token_mask, height, width))

    def inpaint(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        class_label: ClassLabel,
        *,
        num_samples: int = 1,
        sampler: Sampler | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        noise: NoiseFn | None = None,
        callback: Callback | None = None,
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
        class_id = self._single_class(class_label)
        canvas = torch.where(token_mask.to(self.device), MASK_ID, self._encode_samples(images, num_samples))
        generated = self._fill(
            canvas, self._class_tokens([class_id] * num_samples), sampler or self.default_sampler(editing=True),
            self._noise(seed, generator, noise, range(num_samples)), callback=callback,
        )
        return composite(generated, images, pixel_mask.float())

    def outpaint(
        self,
        image: torch.Tensor,
        extend: Extend | Sequence[int],
        class_label: ClassLabel,
        *,
        num_samples: int = 1,
        sampler: Sampler | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        noise: NoiseFn | None = None,
        callback: Callback | None = None,
    ) -> torch.Tensor:
        """Extend the canvas by ``(top, right, bottom, left)`` pixels, each rounded up to whole
        tokens, and generate the new border. The original pixels are kept exactly.
        Returns (num_samples, 3, H + top + bottom, W + left + right) in [0, 1]."""
        images = self._single_image(image)
        extend = extend if isinstance(extend, Extend) else Extend(*extend)
        factor = self.tokenizer.config.downsample_factor
        tokens = extend.in_tokens(factor)
        class_id = self._single_class(class_label)
        canvas = outpaint_canvas(self._encode_samples(images, num_samples), tokens, MASK_ID)
        generated = self._fill(
            canvas, self._class_tokens([class_id] * num_samples), sampler or self.default_sampler(editing=True),
            self._noise(seed, generator, noise, range(num_samples)), callback=callback,
        )
        top, left = tokens.top * factor, tokens.left * factor
        height, width = images.shape[-2:]
        generated[:, :, top : top + height, left : left + width] = images
        return generated
