"""A synthetic labelled image folder whose classes differ in shape, colour and background at once.

``write_shapes_folder`` makes ``root/<class>/<n>.png`` images of three classes, each with its own
shape, its own saturated colour family and its own background, all varied per image (hue,
saturation, brightness, size, position, rotation, background gradient, pixel noise). A model
trained on it must get all three right: a classifier can tell the classes apart by shape alone, and
the mean colours of foreground and background tell whether a model kept the colours or washed
them out. The tests and ``benchmarks/train_own_images.py`` train ``maskgit train`` on it.
"""

from __future__ import annotations

import colorsys
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["ShapeClass", "SHAPE_CLASSES", "draw_shape_image", "write_shapes_folder"]

# Drawn this many times larger, then downsampled: smooth (antialiased) edges.
_SUPERSAMPLE = 4


@dataclass(frozen=True)
class ShapeClass:
    """One class: a shape (``disc``, ``square`` or ``triangle``) in a colour family (hue in
    [0, 1), HSV) on a background running between two RGB colours (0-255)."""

    name: str
    shape: str
    hue: float
    background: tuple[tuple[int, int, int], tuple[int, int, int]]


SHAPE_CLASSES: tuple[ShapeClass, ...] = (
    ShapeClass("red-disc", "disc", 0.01, ((150, 200, 245), (60, 110, 200))),  # on a blue sky
    ShapeClass("green-square", "square", 0.33, ((70, 45, 30), (25, 15, 10))),  # on dark brown
    ShapeClass("purple-triangle", "triangle", 0.76, ((245, 235, 160), (220, 190, 90))),  # on pale yellow
)


def draw_shape_image(label: int, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """One RGB ``size`` x ``size`` image of class ``SHAPE_CLASSES[label]``; every random choice
    comes from ``rng``."""
    spec = SHAPE_CLASSES[label]
    big = size * _SUPERSAMPLE
    # Background: a linear gradient between the class's two colours, in a random direction, with
    # the whole background a little lighter or darker per image.
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:big, 0:big] / (big - 1) - 0.5
    ramp = np.clip(0.5 + xs * math.cos(angle) + ys * math.sin(angle), 0, 1)[..., None]
    first, second = (np.asarray(color, dtype=np.float64) for color in spec.background)
    background = (first * (1 - ramp) + second * ramp) * rng.uniform(0.85, 1.15)
    image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8), "RGB")
    # Foreground: the class's hue, jittered, saturated and bright.
    hue = (spec.hue + rng.uniform(-0.04, 0.04)) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, rng.uniform(0.75, 1.0), rng.uniform(0.75, 1.0))
    fill = (int(red * 255), int(green * 255), int(blue * 255))
    radius = rng.uniform(0.22, 0.36) * big
    margin = radius + 0.04 * big
    cx, cy = rng.uniform(margin, big - margin, size=2)
    rotation = rng.uniform(0, 2 * math.pi)
    draw = ImageDraw.Draw(image)
    if spec.shape == "disc":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
    else:
        corners = 4 if spec.shape == "square" else 3
        points = [
            (cx + radius * math.cos(rotation + 2 * math.pi * k / corners), cy + radius * math.sin(rotation + 2 * math.pi * k / corners))
            for k in range(corners)
        ]
        draw.polygon(points, fill=fill)
    small = np.asarray(image.resize((size, size), Image.Resampling.BOX), dtype=np.float64)
    small = small + rng.normal(0.0, 4.0, small.shape)  # sensor-like noise, about 1.5 % of the range
    return Image.fromarray(np.clip(small.round(), 0, 255).astype(np.uint8), "RGB")


def write_shapes_folder(
    root: str | os.PathLike[str], *, per_class: int = 100, size: int = 32, seed: int = 0
) -> Path:
    """Write ``per_class`` PNG images of each of ``SHAPE_CLASSES`` to ``root/<class name>/`` and
    return ``root``. The same arguments always write the same pixels."""
    if per_class < 1 or size < 8:
        raise ValueError(f"need per_class >= 1 and size >= 8, got {per_class} and {size}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    for label, spec in enumerate(SHAPE_CLASSES):
        folder = root / spec.name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            draw_shape_image(label, rng, size).save(folder / f"{index:04d}.png")
    return root
