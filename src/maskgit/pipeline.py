"""``MaskGIT``: the tokenizer and the transformer together, saved and loaded as one folder
(``maskgit.checkpoints.pipeline_folder``: the two models and ``model_index.json``, which holds the
class names and the model's default sampler).

Seeds: every generation method takes ``seed``, ``generator`` or ``noise``. With none of them a fresh
random seed is drawn for the call; ``pipe(...)`` reports it (``.seed``) so that any result can be
made again, as the CLI records it in ``manifest.json``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from maskgit._allocation import release_freed_memory
from maskgit.checkpoints.pipeline_folder import TOKENIZER, TRANSFORMER, PipelineIndex, read_index, write_pipeline
from maskgit.class_names import default_class_names, imagenet_class_names, resolve_class
from maskgit.devices import resolve_device
from maskgit.imageio import to_pil_images
from maskgit.inputs import ImageInput, MaskInput, prepare_image, prepare_mask
from maskgit.models import VQGAN, MaskGITTransformer
from maskgit.models.inference import PRECISIONS as INFERENCE_PRECISIONS
from maskgit.models.inference import CompiledLogits, check_precision, prepare_for_inference
from maskgit.registry import resolve_pretrained
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
from maskgit.sampling.fill import fill_tokens, plan_windows
from maskgit.sampling.noise import GeneratorNoise, InjectedNoise, NoiseFn, NoiseSource, SeededNoise, random_seed
from maskgit.sampling.samplers import ConfidenceSampler, Sampler
from maskgit.sampling.steps import MASK_ID
from maskgit.validation import check_images

__all__ = ["MaskGIT", "MaskGITOutput", "ClassLabel", "EDIT_STEPS", "EDIT_START_STEP", "OUTPUT_TYPES"]

#: ``torch_dtype`` → precision (``maskgit.models.inference``); int8 has no dtype of its own.
_DTYPE_PRECISIONS = {dtype: precision for precision, dtype in INFERENCE_PRECISIONS.items() if precision != "int8"}
OUTPUT_TYPES = ("pil", "np", "pt")

#: The official editing recipe decodes steps 2..11 of 12 (spec §4); the editing modes use the
#: model's sampler with this many steps when no sampler is given.
EDIT_STEPS = 12
#: ... and starts at this step, as the official box editing does.
EDIT_START_STEP = 2

#: The most pixels a bf16 decoder is given at once (4 images of 256 px, 256 of ``fashion-mnist``'s
#: 32 px); a float32 decoder, whose activations are twice the size, takes half as many. The
#: decoder's peak memory grows with the pixels it decodes together, and its speed does not: a
#: few images per call already keep it busy, so decoding more at once only costs memory.
DECODE_PIXELS = 4 * 256 * 256

#: A class given by id or by name (any spelling ``maskgit.class_names.resolve_class`` takes).
ClassLabel = int | str

Callback = Callable[[DecodeStep], None]


@dataclass
class MaskGITOutput:
    """What ``pipe(class_labels, ...)`` returns.

    Attributes:
        images: ``output_type="pil"``: a list of RGB PIL images; ``"np"``: float32 (B, H, W, 3)
            in [0, 1]; ``"pt"``: float32 (B, 3, H, W) in [0, 1] on the model's device.
        class_ids: the class id of every image.
        seed: the seed the images were made with (drawn at random when the call got none), or
            None when a ``generator`` supplied the randomness.
        sampler: the sampler that made them (with ``num_inference_steps`` applied).
    """

    images: list[Image.Image] | np.ndarray | torch.Tensor
    class_ids: list[int]
    seed: int | None
    sampler: Sampler


def _precision(precision: str | None, torch_dtype: torch.dtype | None) -> str:
    """``precision`` ("fp32", "bf16", "fp16", "int8") or ``torch_dtype`` (torch.float32,
    torch.bfloat16, torch.float16) → precision."""
    if torch_dtype is None:
        return "fp32" if precision is None else precision
    if torch_dtype not in _DTYPE_PRECISIONS:
        raise ValueError(
            f"torch_dtype {torch_dtype} is not supported: use torch.float32, torch.bfloat16 or "
            "torch.float16 (CUDA only), or precision='int8'"
        )
    if precision is not None and precision != _DTYPE_PRECISIONS[torch_dtype]:
        raise ValueError(f"precision={precision!r} contradicts torch_dtype={torch_dtype}; give one of them")
    return _DTYPE_PRECISIONS[torch_dtype]


def _millions(module: nn.Module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f}M"


class MaskGIT(nn.Module):
    """A VQGAN tokenizer and a MaskGIT transformer that share a codebook.

    ``class_names`` (one per class id) lets users and the CLI name classes; it defaults to
    ``class_0 .. class_{n-1}``. ``sampler`` is the model's default sampler (``pipe.sampler``),
    used when a method gets ``sampler=None``; it defaults to the official ``ConfidenceSampler()``.

    ``precision`` is ``fp32``, ``bf16``, ``fp16`` (CUDA only) or ``int8`` (CPUs with AVX2 or newer:
    the transformer's linear layers in int8, everything else in float32; for CPUs without native
    bf16). In any but fp32 the pipeline keeps its own copies of the models with their weights in
    that dtype and a channels-last tokenizer (see ``maskgit.models.inference``); the modules passed
    in are not changed. ``from_pretrained`` converts the loaded models without a copy.

    Every generation method shares one sampling signature: ``sampler``, then the randomness
    (``seed``, ``generator`` or ``noise``; a fresh random seed when none is given), then
    ``callback``, called with every decoding step's ``DecodeStep``, then ``image_indices``: with a
    seed, image i of a call depends only on ``(seed, image_indices[i])`` (default ``range(B)``),
    so a run can be split or resumed without changing its images (``maskgit.runs``). Each call
    shows a progress bar over its decoding steps, every window's counted from the start
    (``set_progress_bar_config(disable=True)`` hides it).

    ``pipe(class_labels, ...)`` generates in the diffusers style and returns a ``MaskGITOutput``;
    ``generate``, ``edit``, ``inpaint`` and ``outpaint`` return image tensors.
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
        names = tuple(class_names) if class_names is not None else default_class_names(num_classes)
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
        self._progress_bar_config: dict[str, Any] = {}
        self._compiled: CompiledLogits | None = None  # set by ``compile``
        if precision != "fp32":
            self.tokenizer, self.transformer = copy.deepcopy(tokenizer), copy.deepcopy(transformer)
            self.to_precision(precision)

    def to_precision(self, precision: str) -> MaskGIT:
        """Convert this pipeline's models in place for inference in ``precision`` (weights in its
        dtype, float32 where it matters, a channels-last tokenizer; int8 copies of the
        transformer's linear layers for ``int8``; ``maskgit.models.inference``). Any precision
        converts to any other: int8 keeps the float32 weights, so from int8 back to fp32 is exact.
        Raises ValueError where ``precision`` does not run on this device (int8 where it would be
        slower than fp32). Drops a ``compile``d step. Returns ``self``."""
        check_precision(precision, self.device)
        prepare_for_inference(self.tokenizer, self.transformer, precision)
        # Converting frees the float32 weights (and loading, whatever the loader built); under
        # reuse_freed_memory the heap would keep them: 370 MB for ImageNet 256 in bf16.
        release_freed_memory()
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
        call of each batch shape pays the compilation. Not in int8 (ValueError): its oneDNN int8
        calls run eagerly, and a compiled step would compute in float32. Returns ``self``."""
        if self.precision == "int8":
            raise ValueError("compile: precision int8 runs oneDNN's int8 kernels eagerly; compile fp32 or bf16 instead")
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
        """Write a pipeline folder: both models, then ``model_index.json`` with the class names and
        the default sampler (``maskgit.checkpoints.pipeline_folder``). The weights are written in
        the models' dtype; an int8 pipeline writes its float32 weights (the int8 copies are made
        again when a loaded pipeline is converted)."""
        write_pipeline(
            directory,
            (self.tokenizer.config, self.tokenizer.state_dict()),
            (self.transformer.config, self.transformer.state_dict()),
            PipelineIndex(self.class_names, self.sampler),
        )

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str] | None = None,
        *,
        tokenizer: str | os.PathLike[str] | None = None,
        transformer: str | os.PathLike[str] | None = None,
        class_names: Sequence[str] | None = None,
        device: str | torch.device | None = None,
        precision: str | None = None,
        torch_dtype: torch.dtype | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> MaskGIT:
        """Load a pipeline; returns it in eval mode.

        Either ``name_or_path``: a folder written by ``save_pretrained``, a model shipped in the
        package (``fashion-mnist``), or a registered name (``imagenet256``, ``imagenet512``), whose
        official files are downloaded into the cache and converted once. Or ``tokenizer`` and
        ``transformer``: two checkpoints in any format ``VQGAN.from_pretrained`` reads (official
        msgpack, maskgit-torch ``.ckpt``, our folders); the transformer's codebook size is taken
        from the tokenizer, so a transformer whose shapes match no preset loads without a config.
        Two files carry no class names: ``class_names`` names them (the ImageNet names are used for
        1000 classes), and it replaces a folder's names too.

        ``precision`` ("fp32", "bf16", "fp16", CUDA only, or "int8", CPUs only) or, for the first
        three, ``torch_dtype`` (torch.float32, torch.bfloat16 or torch.float16) sets the inference
        precision (``maskgit.models.inference``: the weights in that dtype, float32 where it
        matters; int8 linear layers in the transformer). Other dtypes are refused.
        """
        precision = _precision(precision, torch_dtype)
        device = resolve_device(device) if device is not None else None  # "auto" too; clear errors
        if name_or_path is None:
            if tokenizer is None or transformer is None:
                raise ValueError("give a model name or folder, or both tokenizer= and transformer= checkpoints")
            vqgan = VQGAN.from_pretrained(tokenizer, device=device)
            model = MaskGITTransformer.from_pretrained(
                transformer, device=device, codebook_size=vqgan.config.codebook_size
            )
            if class_names is None and model.config.num_classes == 1000:
                class_names = imagenet_class_names()
            return cls(vqgan, model, class_names).eval().to_precision(precision)
        if tokenizer is not None or transformer is not None:
            raise ValueError("give a model name or folder, or tokenizer= and transformer=, not both")
        path = resolve_pretrained(name_or_path, cache_dir)
        index = read_index(path)
        vqgan = VQGAN.from_pretrained(path / TOKENIZER, device=device)
        model = MaskGITTransformer.from_pretrained(path / TRANSFORMER, device=device)
        class_names = index.class_names if class_names is None else class_names
        # The loaded models are ours: converted in place, always (channels-last helps fp32 too).
        return cls(vqgan, model, class_names, sampler=index.sampler).eval().to_precision(precision)

    def __repr__(self) -> str:
        """A few lines: the models' sizes, the image size, the classes, the sampler and where it runs
        (``print(pipe.transformer)`` shows the layers)."""
        tokenizer, transformer = self.tokenizer.config, self.transformer.config
        latent, factor = transformer.latent_size, tokenizer.downsample_factor
        shown = ", ".join(self.class_names[:4]) + (", ..." if len(self.class_names) > 4 else "")
        return (
            f"MaskGIT(image_size={self.image_size}, device={self.device}, precision={self.precision},\n"
            f"  tokenizer=VQGAN({_millions(self.tokenizer)} parameters, {tokenizer.codebook_size} codes, "
            f"{factor}x{factor} px per token),\n"
            f"  transformer=MaskGITTransformer({_millions(self.transformer)} parameters, {transformer.num_layers} "
            f"layers x {transformer.hidden_size}, {latent}x{latent} tokens),\n"
            f"  classes={len(self.class_names)} ({shown}),\n"
            f"  sampler={self.sampler!r},\n)"
        )

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        """Options for the progress bar of every later call, as diffusers has it: ``disable=True``
        hides it, and any other ``tqdm`` keyword (``desc``, ``leave``, ``file``, ...) is passed on."""
        self._progress_bar_config = dict(kwargs)

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

    @staticmethod
    def _call_seed(seed: int | None, generator: torch.Generator | None, noise: NoiseFn | None) -> int | None:
        """The seed of one call: ``seed``, a fresh random one when no source of randomness is
        given, or None when ``generator`` or ``noise`` supplies it."""
        if generator is not None or noise is not None:
            if seed is not None:
                raise ValueError("give one source of randomness: seed, generator or noise")
            return None
        if seed is None:
            return random_seed()
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        return int(seed)

    def _noise(
        self, seed: int | None, generator: torch.Generator | None, noise: NoiseFn | None, indices: Sequence[int]
    ) -> NoiseSource:
        """Explicit ``noise``, else the caller's ``generator``, else per-image seeds derived from
        the call's ``seed`` (see ``_call_seed``) and the images' indices in the run."""
        if noise is not None:
            return InjectedNoise(noise)
        if generator is not None:
            return GeneratorNoise(generator)
        assert seed is not None
        return SeededNoise.for_images(seed, indices, device=self.device)

    @contextlib.contextmanager
    def _steps(self, total: int, callback: Callback | None) -> Iterator[Callback | None]:
        """The step callback of one call: the progress bar over its ``total`` decoding steps (every
        window's, planned before the first), then the caller's ``callback`` (None when there is
        neither, so the engine builds no step records)."""
        config = {"desc": "decoding", "unit": "step", "dynamic_ncols": True, **self._progress_bar_config}
        with tqdm(total=total, **config) as bar:
            if bar.disable and callback is None:
                yield None
                return

            def on_step(step: DecodeStep) -> None:
                bar.update(1)
                if callback is not None:
                    callback(step)

            yield on_step

    def _edit_input(self, image: ImageInput, keep_size: bool) -> torch.Tensor:
        """The image an editing mode works on, (1, 3, H, W) on the model's device: resized to the
        model's size unless ``keep_size`` (``maskgit.inputs``)."""
        factor = self.tokenizer.config.downsample_factor
        return self._single_image(prepare_image(image, self.image_size, factor=factor, keep_size=keep_size))

    def _fill(
        self,
        canvas: torch.Tensor,
        class_tokens: torch.Tensor,
        sampler: Sampler,
        noise: NoiseSource,
        *,
        start_step: int = 0,
        windows: list[tuple[int, int]] | None = None,
        callback: Callback | None = None,
    ) -> torch.Tensor:
        """Fill the masked tokens of canvas (B, h, w) and decode: images (B, 3, H, W) in [0, 1]."""
        if not isinstance(sampler, Sampler):
            raise TypeError(f"sampler must be a maskgit.sampling.Sampler, got {type(sampler).__name__}")
        with self._inference():
            filled = fill_tokens(
                self._logits_model, canvas, class_tokens, latent_size=self.transformer.config.latent_size,
                sampler=sampler, noise=noise, start_step=start_step, windows=windows, callback=callback,
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
        """ids (B, h, w) → images (B, 3, H, W) float32 in [0, 1], decoded ``DECODE_PIXELS`` at a time."""
        height, width = (side * self.tokenizer.config.downsample_factor for side in ids.shape[-2:])
        bytes_per_value = self.tokenizer.decoder.conv_in.weight.element_size()  # 2 in bf16, 4 in float32
        per_chunk = max(1, DECODE_PIXELS * 2 // (bytes_per_value * height * width))
        images = [self.tokenizer.decode_ids(chunk).float().clamp(0, 1) for chunk in ids.split(per_chunk)]
        return images[0] if len(images) == 1 else torch.cat(images)

    # -- generation and editing -------------------------------------------------------------------

    def forward(
        self,
        class_labels: ClassLabel | Sequence[ClassLabel] | torch.Tensor,
        *,
        num_inference_steps: int | None = None,
        num_images_per_label: int = 1,
        sampler: Sampler | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        callback: Callback | None = None,
        batch_size: int | None = None,
    ) -> MaskGITOutput:
        """``pipe(class_labels, ...)``: class-conditional generation in the diffusers style.

        Args:
            class_labels: class ids or names (``["sneaker", 3]``), one image each.
            num_inference_steps: decoding steps; replaces the sampler's ``num_steps``.
            num_images_per_label: images per label, next to each other in the output.
            sampler: defaults to ``self.sampler``.
            seed: the randomness, as for ``generate``; with neither a seed nor a generator, a
                fresh random seed, reported in the output.
            generator: draws the noise instead of a seed, as for ``generate``.
            output_type: ``"pil"`` (list of PIL images), ``"np"`` (float32 (B, H, W, 3) in
                [0, 1]) or ``"pt"`` (float32 (B, 3, H, W) in [0, 1]).
            callback: called with every decoding step's ``DecodeStep``.
            batch_size: images per forward pass (default: all at once).

        Returns:
            ``MaskGITOutput`` with ``images``, ``class_ids``, ``seed`` and ``sampler``.
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        if (
            isinstance(num_images_per_label, bool)
            or not isinstance(num_images_per_label, numbers.Integral)
            or num_images_per_label < 1
        ):
            raise ValueError(f"num_images_per_label must be an integer >= 1, got {num_images_per_label!r}")
        sampler = self.sampler if sampler is None else sampler
        if not isinstance(sampler, Sampler):
            raise TypeError(f"sampler must be a maskgit.sampling.Sampler, got {type(sampler).__name__}")
        if num_inference_steps is not None:
            sampler = sampler.replace(num_steps=num_inference_steps)
        class_ids = [i for i in self.class_ids(class_labels) for _ in range(num_images_per_label)]
        seed = self._call_seed(seed, generator, None)
        images = self.generate(
            class_ids, sampler=sampler, seed=seed, generator=generator, callback=callback, batch_size=batch_size
        )
        if output_type == "pil":
            output: list[Image.Image] | np.ndarray | torch.Tensor = to_pil_images(images)
        elif output_type == "np":
            output = images.permute(0, 2, 3, 1).cpu().numpy()
        else:
            output = images
        return MaskGITOutput(images=output, class_ids=class_ids, seed=seed, sampler=sampler)

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
        batching); ``noise`` injects the Gumbel noise directly (see ``maskgit.decode``); with none
        of them, on a fresh random seed. ``callback`` gets every step's ``DecodeStep`` of every batch.
        """
        sampler = self.sampler if sampler is None else sampler
        seed = self._call_seed(seed, generator, noise)
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
        num_steps = getattr(sampler, "num_steps", 0)  # a bad sampler is refused by _fill
        with self._steps(num_steps * math.ceil(total / batch_size), callback) as on_step:
            for start in range(0, total, batch_size):
                chunk = tokens[start : start + batch_size]
                canvas = torch.full((chunk.shape[0], latent, latent), MASK_ID, dtype=torch.long, device=self.device)
                source = self._noise(seed, generator, noise, indices[start : start + batch_size])
                outputs.append(self._fill(canvas, chunk, sampler, source, callback=on_step))
        return torch.cat(outputs)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (B, h, w) int in [0, codebook_size) → images (B, 3, h·f, w·f) float32 in [0, 1],
        decoded as generation decodes them (at most ``DECODE_PIXELS`` pixels at a time)."""
        if not isinstance(ids, torch.Tensor) or ids.dim() != 3:
            shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"ids must be a (B, h, w) tensor of token ids, got {shape}")
        with self._inference():
            images = self._decode_images(ids.to(self.device))
        return self._released(images)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [0, 1] → tokenizer round trip, clipped to [0, 1]."""
        with self._inference():
            reconstructed = self._decode_images(self.tokenizer.encode_to_ids(self._images(images)))
        return self._released(reconstructed)

    def _edit_fill(
        self,
        canvas: torch.Tensor,
        class_id: int,
        sampler: Sampler | None,
        randomness: tuple[int | None, torch.Generator | None, NoiseFn | None],
        callback: Callback | None,
        image_indices: Sequence[int] | None,
        start_step: int = 0,
    ) -> torch.Tensor:
        """Fill an editing canvas (num_samples, h, w) for one class: the editing modes' shared run."""
        num_samples = canvas.shape[0]
        indices = list(range(num_samples)) if image_indices is None else list(image_indices)
        if len(indices) != num_samples:
            raise ValueError(f"{len(indices)} image_indices for num_samples={num_samples}")
        sampler = sampler or self.default_sampler(editing=True)
        seed, generator, noise = randomness
        source = self._noise(self._call_seed(seed, generator, noise), generator, noise, indices)
        class_tokens = self._class_tokens([class_id] * num_samples)
        num_steps = getattr(sampler, "num_steps", 0)  # a bad sampler is refused by _fill
        windows = plan_windows(canvas[0].cpu() == MASK_ID, self.transformer.config.latent_size)
        with self._steps(len(windows) * max(0, num_steps - start_step), callback) as on_step:
            return self._fill(canvas, class_tokens, sampler, source, start_step=start_step, windows=windows,
                              callback=on_step)

    def edit(
        self,
        image: ImageInput,
        box: Box | Sequence[int],
        class_label: ClassLabel,
        *,
        num_samples: int = 1,
        start_step: int = EDIT_START_STEP,
        keep_size: bool = False,
        sampler: Sampler | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        noise: NoiseFn | None = None,
        callback: Callback | None = None,
        image_indices: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Class-conditional box editing, as the official demo does it.

        image: a PIL image or (3, H, W) / (1, 3, H, W) float in [0, 1], resized to the model's
        size unless ``keep_size`` (``maskgit.inputs``); box ``(top, left, height, width)`` in
        pixels of that image. The box grows by one token on each side, decoding starts at
        ``start_step`` (the official recipe: steps 2..11 of 12, the default when ``sampler`` is
        None), and the result is blended into the image through the blurred box mask.
        Returns (num_samples, 3, H, W).
        """
        images = self._edit_input(image, keep_size)
        box = box if isinstance(box, Box) else Box(*box)
        height, width = images.shape[-2:]
        token_mask = latent_box_mask(box, height, width, self.tokenizer.config.downsample_factor)
        class_id = self._single_class(class_label)
        canvas = torch.where(token_mask.to(self.device), MASK_ID, self._encode_samples(images, num_samples))
        generated = self._edit_fill(canvas, class_id, sampler, (seed, generator, noise), callback, image_indices,
                                    start_step)
        return composite(generated, images, composite_mask(token_mask, height, width))

    def inpaint(
        self,
        image: ImageInput,
        mask: MaskInput,
        class_label: ClassLabel,
        *,
        num_samples: int = 1,
        keep_size: bool = False,
        sampler: Sampler | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        noise: NoiseFn | None = None,
        callback: Callback | None = None,
        image_indices: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Free-form inpainting. mask: a PIL image (white = regenerate) or an (H, W) tensor, True
        (or > 0.5) where pixels are regenerated, the size of ``image``; both are resized to the
        model's size unless ``keep_size`` (``maskgit.inputs``).

        Every token the mask touches is regenerated; pixels outside the mask are kept exactly.
        Returns (num_samples, 3, H, W) in [0, 1].
        """
        images = self._edit_input(image, keep_size)
        pixel_mask = prepare_mask(mask, image, self.image_size, keep_size=keep_size)
        if not pixel_mask.any():
            raise ValueError("mask is empty: nothing to inpaint")
        token_mask = token_mask_from_pixels(pixel_mask.cpu(), self.tokenizer.config.downsample_factor)
        class_id = self._single_class(class_label)
        canvas = torch.where(token_mask.to(self.device), MASK_ID, self._encode_samples(images, num_samples))
        generated = self._edit_fill(canvas, class_id, sampler, (seed, generator, noise), callback, image_indices)
        return composite(generated, images, pixel_mask.to(self.device).float())

    def outpaint(
        self,
        image: ImageInput,
        extend: Extend | Sequence[int],
        class_label: ClassLabel,
        *,
        num_samples: int = 1,
        keep_size: bool = False,
        sampler: Sampler | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        noise: NoiseFn | None = None,
        callback: Callback | None = None,
        image_indices: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Extend the canvas by ``(top, right, bottom, left)`` pixels, each rounded up to whole
        tokens, and generate the new border. image: as for ``edit`` (resized to the model's size
        unless ``keep_size``); its pixels are kept exactly.
        Returns (num_samples, 3, H + top + bottom, W + left + right) in [0, 1]."""
        images = self._edit_input(image, keep_size)
        extend = extend if isinstance(extend, Extend) else Extend(*extend)
        factor = self.tokenizer.config.downsample_factor
        tokens = extend.in_tokens(factor)
        class_id = self._single_class(class_label)
        canvas = outpaint_canvas(self._encode_samples(images, num_samples), tokens, MASK_ID)
        generated = self._edit_fill(canvas, class_id, sampler, (seed, generator, noise), callback, image_indices)
        top, left = tokens.top * factor, tokens.left * factor
        height, width = images.shape[-2:]
        generated[:, :, top : top + height, left : left + width] = images
        return generated
