"""Train on your own images in one command, and check what comes out: classes, colours, backgrounds.

    python benchmarks/train_own_images.py [--budget 10m] [--per-class 100] [--samples 50]
        [--work DIR] [--run DIR] [--json benchmarks/results/train-own-images.json]
        [--table benchmarks/results/train-own-images.md]

1. Writes a synthetic folder (``maskgit.data.synthetic``): ``--per-class`` 32 px colour images of
   each of three classes that differ in shape, colour and background, all varied per image.
2. Runs ``maskgit train FOLDER --out RUN --budget BUDGET`` and times it (``--run`` reuses a
   finished run instead).
3. Runs ``maskgit generate --model RUN/pipeline --class NAME --guidance 2 --num SAMPLES`` for
   every class.
4. Trains a small CNN on the folder's images (in grey, so that it judges shapes and brightness,
   not hue) and counts how many generated images of each class it recognises as that class
   (target: at least 90 % of every class).
5. Compares the colours of each class's samples with its real images: the mean colour of the
   background (the outer ring of pixels), the mean colour of the foreground (the 8 % of each
   image's pixels farthest from its background colour) and the mean chroma (largest minus
   smallest channel: 0 for grey). A class passes when its background and foreground are within
   ``BACKGROUND_TOLERANCE`` and ``FOREGROUND_TOLERANCE`` (RGB distance, range [0, 1]) and its
   chroma within ``CHROMA_RANGE`` times the data's. Two controls run through the same
   check: a fresh set of real images (must pass) and the real images washed out halfway to grey
   (must fail), which shows the check catches the washed-out colours it is there for.

Writes the numbers (with the CPU, the budget and the wall times) to ``--json`` and its generated
table beside it (``benchmarks/tables.py``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from maskgit.data.synthetic import SHAPE_CLASSES, write_shapes_folder

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/tables.py, also when loaded by path
from tables import device_name, provenance, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BACKGROUND_TOLERANCE = 0.08
FOREGROUND_TOLERANCE = 0.10
CHROMA_RANGE = (0.8, 1.25)
ACCURACY_TARGET = 0.9
SECONDS_TARGET = 15 * 60  # the whole `maskgit train --budget 10m` command
BORDER = 3
FOREGROUND_FRACTION = 0.08


# -- colours --------------------------------------------------------------------------------------


def _chroma(images: np.ndarray) -> np.ndarray:
    """Chroma (largest minus smallest channel) of float (..., 3) images in [0, 1]: 0 for grey,
    stable for dark pixels (unlike HSV saturation, which noise makes large there)."""
    return images.max(-1) - images.min(-1)


def colour_statistics(images: np.ndarray) -> dict[str, Any]:
    """Colour statistics of float (N, H, W, 3) images in [0, 1]: ``background`` (mean RGB of the
    outer ``BORDER`` pixels), ``foreground`` (mean RGB of each image's ``FOREGROUND_FRACTION`` of
    pixels farthest from its own background colour: the object's core) and ``chroma`` (mean chroma
    of all pixels)."""
    ring = np.ones(images.shape[1:3], dtype=bool)
    ring[BORDER:-BORDER, BORDER:-BORDER] = False
    backgrounds = images[:, ring].mean(axis=1)  # (N, 3)
    flat = images.reshape(len(images), -1, 3)
    distance = np.linalg.norm(flat - backgrounds[:, None], axis=-1)
    keep = max(1, int(FOREGROUND_FRACTION * flat.shape[1]))
    order = np.argsort(-distance, axis=1)[:, :keep]
    foreground = np.take_along_axis(flat, order[..., None], axis=1)
    return {
        "background": backgrounds.mean(axis=0).tolist(),
        "foreground": foreground.mean(axis=(0, 1)).tolist(),
        "chroma": float(_chroma(images).mean()),
    }


def compare_colours(samples: np.ndarray, data: np.ndarray) -> dict[str, Any]:
    """How far the samples' colours are from the data's (see the module docstring) and whether
    they pass."""
    mine, theirs = colour_statistics(samples), colour_statistics(data)
    background = float(np.linalg.norm(np.subtract(mine["background"], theirs["background"])))
    foreground = float(np.linalg.norm(np.subtract(mine["foreground"], theirs["foreground"])))
    ratio = mine["chroma"] / max(theirs["chroma"], 1e-8)
    return {
        "background_distance": background, "foreground_distance": foreground, "chroma_ratio": ratio,
        "samples": mine, "data": theirs,
        "passed": bool(background <= BACKGROUND_TOLERANCE and foreground <= FOREGROUND_TOLERANCE
                       and CHROMA_RANGE[0] <= ratio <= CHROMA_RANGE[1]),
    }


def washed_out(images: np.ndarray, amount: float = 0.5) -> np.ndarray:
    """Images moved ``amount`` of the way to their own grey (luminance): a washed-out control."""
    grey = images @ np.array([0.299, 0.587, 0.114])
    return images * (1 - amount) + grey[..., None] * amount


# -- the classifier -------------------------------------------------------------------------------


class SmallCNN(nn.Module):
    """Grey (N, 1, 32, 32) in [0, 1] → class logits: three conv blocks and a linear layer."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for width in (16, 32, 64):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(channels, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def _grey(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy((images @ np.array([0.299, 0.587, 0.114])).astype(np.float32))[:, None]


def train_classifier(images: np.ndarray, labels: np.ndarray, *, epochs: int = 40, seed: int = 0) -> SmallCNN:
    """A ``SmallCNN`` fitted to float (N, H, W, 3) images with labels, with random flips and
    shifts of up to 2 pixels."""
    torch.manual_seed(seed)
    model = SmallCNN(int(labels.max()) + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    inputs, targets = _grey(images), torch.from_numpy(labels).long()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.randperm(len(inputs), generator=generator).split(64):
            x = inputs[batch]
            if torch.rand((), generator=generator) < 0.5:
                x = x.flip(-1)
            shift = torch.randint(-2, 3, (2,), generator=generator).tolist()
            x = torch.roll(x, shifts=shift, dims=(-2, -1))
            loss = nn.functional.cross_entropy(model(x), targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def predict(model: SmallCNN, images: np.ndarray) -> np.ndarray:
    return model(_grey(images)).argmax(-1).numpy()


# -- files ----------------------------------------------------------------------------------------


def read_folder(root: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every PNG of ``root/<name>/`` as float (N, H, W, 3) in [0, 1], with the class index."""
    images, labels = [], []
    for label, name in enumerate(names):
        for path in sorted((root / name).glob("*.png")):
            images.append(np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0)
            labels.append(label)
    return np.stack(images), np.array(labels)


def _maskgit(*arguments: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "maskgit.cli", *arguments]
    process = subprocess.run(command, capture_output=True, text=True)
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{process.stdout[-3000:]}\n{process.stderr[-3000:]}")
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", default="10m")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--samples", type=int, default=50, help="generated images per class")
    parser.add_argument("--work", type=Path, default=Path("runs/train-own-images"))
    parser.add_argument("--run", type=Path, help="a finished run folder to evaluate instead of training")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "train-own-images.json")
    parser.add_argument("--note", help="a note for the results file (e.g. what else ran on the machine)")
    args = parser.parse_args()

    names = [spec.name for spec in SHAPE_CLASSES]
    data_dir = args.work / "data"
    if not data_dir.is_dir():
        write_shapes_folder(data_dir, per_class=args.per_class, size=32, seed=0)
    run_dir = args.run or args.work / "run"
    train_seconds = None
    if args.run is None:
        start = time.perf_counter()
        process = _maskgit("train", str(data_dir), "--out", str(run_dir), "--budget", args.budget, "--quiet")
        train_seconds = time.perf_counter() - start
        print(process.stdout)
    report = json.loads((run_dir / "report.json").read_text())
    samples_dir = args.work / "samples"
    arrays = {}
    for name in names:
        out = samples_dir / name
        if not out.is_dir():
            _maskgit("generate", "--model", str(run_dir / "pipeline"), "--class", name, "--guidance", "2",
                     "--num", str(args.samples), "--seed", "0", "--out", str(out), "--quiet")
        arrays[name] = np.stack([np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0
                                 for path in sorted(out.glob("*/*.png"))])

    data, labels = read_folder(data_dir, names)
    classifier = train_classifier(data, labels)
    fresh_dir = args.work / "fresh"
    if not fresh_dir.is_dir():
        write_shapes_folder(fresh_dir, per_class=args.samples, size=32, seed=1)
    fresh, fresh_labels = read_folder(fresh_dir, names)
    per_class, fresh_passed, washed_passed = {}, True, False
    for label, name in enumerate(names):
        real = data[labels == label]
        per_class[name] = {
            "accuracy": float((predict(classifier, arrays[name]) == label).mean()),
            "colours": compare_colours(arrays[name], real),
        }
        fresh_passed &= compare_colours(fresh[fresh_labels == label], real)["passed"]
        washed_passed |= compare_colours(washed_out(fresh[fresh_labels == label]), real)["passed"]
    threads = json.loads((run_dir / "recipe.json").read_text())["recipe"]["threads"]
    device = device_name("cpu", threads) if report["device"] == "cpu" else report["machine"]
    result = {
        "kind": "train-own-images",
        "provenance": provenance(device, note=args.note),
        "budget": args.budget,
        "classes": names,
        "images_per_class": args.per_class,
        "samples_per_class": args.samples,
        "train_seconds": train_seconds if train_seconds is not None else report["total_seconds"],
        "per_class": per_class,
        "controls": {"fresh_real_passed": bool(fresh_passed), "washed_out_passed": bool(washed_passed),
                     "fresh_real_accuracy": float((predict(classifier, fresh) == fresh_labels).mean())},
        "targets": {"accuracy": ACCURACY_TARGET, "background": BACKGROUND_TOLERANCE, "foreground": FOREGROUND_TOLERANCE,
                    "chroma": list(CHROMA_RANGE), "seconds": SECONDS_TARGET},
        "report": {"tokenizer": report["tokenizer"], "transformer": report["transformer"],
                   "stage_seconds": report["stage_seconds"]},
    }
    result["met"] = bool(all(row["accuracy"] >= ACCURACY_TARGET and row["colours"]["passed"] for row in per_class.values())
                         and result["train_seconds"] <= SECONDS_TARGET)
    table = write_results(args.json, result)
    print(table.read_text())

if __name__ == "__main__":
    main()
