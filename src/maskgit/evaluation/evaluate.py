"""Scores of generated Fashion-MNIST images, measured with the shipped classifier.

The classifier is a feature network like any other (``maskgit.evaluation.features``): a
``ClassifierFeatures`` gives every image's features and logits, and everything below is computed
from those.

- **accuracy**: the share of images that the classifier assigns to the class they were generated
  for, per class and overall; beside it, the classifier's accuracy on the real test images of that
  class (what a perfect generator would score).
- **FID** in the classifier's feature space (``ImageClassifier.features``) against the real test
  images of the evaluated classes, beside the **floor**: the FID of as many real *training* images,
  drawn with the same count per class, against the same test images. A generator whose images were
  real would score about the floor.
- **per-class FID**: the same within each class (a class's images against its test images), and
  their mean, the **intra-FID** of class-conditional GANs (Miyato & Koyama, 2018), each beside its
  floor. The overall FID can hide a class that is off if the others make up for it; the per-class
  FIDs show where the distance comes from. With few images a class (fewer than the 128 features)
  both a class's FID and its floor are mostly sampling noise, so read them as a ratio.
- **diversity** per class: the mean pairwise feature distance among the generated images of a class,
  as a fraction of the same mean over the real test images of that class (1.0 = as varied as real
  images); overall, the mean over classes.
- optionally a tokenizer's reconstruction **PSNR** and **SSIM** on the test set
  (``maskgit.evaluation.reconstruction.evaluate_tokenizer``), and the FID of its reconstructions of
  the floor's training images: the FID that samples would score if the transformer produced exactly
  the tokens of real images, so the tokenizer's share of the FID.

``evaluate_folder`` reads the output of ``maskgit generate`` or ``maskgit sample`` (its
``manifest.json``, ``maskgit.runs.read_manifest``, gives the requested class of every image) or a
folder with one subfolder per class.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskgit.data.datasets import ImageFolder
from maskgit.data.idx import FASHION_MNIST_ROOT
from maskgit.evaluation.classifier import fashion_mnist_images
from maskgit.evaluation.features import ClassifierFeatures, build_feature_extractor, extract_features, float_images
from maskgit.evaluation.reconstruction import evaluate_tokenizer, psnr, reconstruct
from maskgit.evaluation.statistics import FeatureStatistics, frechet_distance
from maskgit.imageio import load_image
from maskgit.runs import RunPlan, read_manifest
from maskgit.runs.manifest import GenerateSettings, SampleSettings

__all__ = [
    "MAX_IMAGES",
    "load_generated",
    "GenerationEvaluator",
    "evaluate_images",
    "evaluate_folder",
    "format_report",
]

# Bound on the images one evaluation reads (each is held in memory as float32).
MAX_IMAGES = 100_000
_FLOOR_SEED = 0


def _class_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _class_of_folder(name: str, class_names: tuple[str, ...], folder: Path) -> int:
    """A class folder's class: its index (``3``, ``0003``) or its name, case and punctuation
    ignored (``t-shirt_top`` is ``T-shirt/top``)."""
    if name.isdigit() and int(name) < len(class_names):
        return int(name)
    keys = [_class_key(known) for known in class_names]
    if _class_key(name) in keys:
        return keys.index(_class_key(name))
    raise ValueError(
        f"{folder / name}: class folder is neither a class index below {len(class_names)} nor one of "
        f"{', '.join(class_names)}"
    )


def _load_images(paths: list[Path], image_size: int) -> torch.Tensor:
    if len(paths) > MAX_IMAGES:
        raise ValueError(f"{len(paths)} images: at most {MAX_IMAGES} are evaluated at once")
    images = []
    for path in paths:
        image = load_image(path)
        if tuple(image.shape[-2:]) != (image_size, image_size):
            raise ValueError(
                f"{path}: is {image.shape[1]}x{image.shape[2]}, the classifier takes {image_size}x{image_size} images"
            )
        images.append(image)
    return torch.stack(images)


def _from_manifest(folder: Path, class_names: tuple[str, ...]) -> tuple[list[Path], list[int]]:
    manifest = read_manifest(folder)
    source = folder / "manifest.json"
    settings = manifest.settings
    if not isinstance(settings, (GenerateSettings, SampleSettings)):
        raise ValueError(f"{source}: written by `maskgit {settings.command}`, not `maskgit generate` or "
                         "`maskgit sample`: no requested classes")
    if not manifest.complete:
        raise ValueError(f"{source}: the run is incomplete (interrupted?); finish it with `maskgit "
                         f"{settings.command} --resume`")
    plan = RunPlan(settings.classes, settings.per_class)
    if list(manifest.outputs) != plan.paths:
        raise ValueError(f"{source}: its outputs are not those of {len(plan.classes)} classes x {plan.per_class} "
                         "images")
    labels = plan.labels
    if min(labels) < 0 or max(labels) >= len(class_names):
        raise ValueError(f"{source}: classes {list(settings.classes)} are not all below the classifier's "
                         f"{len(class_names)}")
    if [_class_key(n) for n in settings.class_names] != [_class_key(class_names[c]) for c in settings.classes]:
        raise ValueError(
            f"{source}: the run's classes {list(settings.class_names)} are not the classifier's "
            f"({', '.join(class_names)})"
        )
    return [folder / output for output in manifest.outputs], labels


def load_generated(folder: str | os.PathLike[str], class_names: tuple[str, ...], image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The images of a ``maskgit generate`` output folder (with ``manifest.json``) or of a folder
    with one subfolder per class, and the class each was generated for.

    Returns float32 (N, 3, S, S) in [0, 1] and int64 (N,). Every image must be S x S. Raises
    ``FileNotFoundError`` / ``ValueError`` naming the folder, the manifest or the file at fault.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    if (folder / "manifest.json").is_file():
        paths, labels = _from_manifest(folder, class_names)
    else:
        if not any(entry.is_dir() and not entry.name.startswith(".") for entry in folder.iterdir()):
            raise ValueError(
                f"{folder}: no manifest.json and no class subfolders: put the images of each class in "
                "a subfolder named by its index or name"
            )
        found = ImageFolder(folder)
        folder_class = [_class_of_folder(name, class_names, folder) for name in found.class_names]
        paths = [found.path(i) for i in range(len(found))]
        labels = [folder_class[label] for label in found.labels.tolist()]
    return _load_images(paths, image_size), torch.tensor(labels, dtype=torch.long)


def _mean_or_none(values: list[float | None]) -> float | None:
    """The mean of ``values``, or None if any is None (an intra-FID needs every class's FID)."""
    return None if not values or any(v is None for v in values) else float(np.mean(values))


def _mean_pairwise_distance(features: torch.Tensor) -> float | None:
    """Mean L2 distance over all pairs of distinct rows of (N, D); None below 2 rows."""
    count = len(features)
    if count < 2:
        return None
    distances = torch.cdist(features, features)
    return float(distances.sum() / (count * (count - 1)))


# The floor of a class mix: its FID and each class's (None below 2 images).
Floor = tuple[float, dict[int, float | None]]


class GenerationEvaluator:
    """A classifier's features with the real images' computed once, to score many sets of samples.

    ``features`` is the classifier as a feature network (default: the shipped Fashion-MNIST
    classifier, ``build_feature_extractor("fashion-mnist")``, on the CPU).
    ``evaluator(images, labels)`` is ``evaluate_images``; the test set's features and statistics
    and the floor's scores (per class counts) are kept between calls, so a sweep over samplers pays
    for them once.
    """

    def __init__(
        self, features: ClassifierFeatures | None = None, *, data_root: str | os.PathLike[str] = FASHION_MNIST_ROOT
    ) -> None:
        if features is None:
            features = build_feature_extractor("fashion-mnist")
        if not isinstance(features, ClassifierFeatures):
            raise TypeError(f"the evaluator needs a classifier's features (ClassifierFeatures), got {type(features).__name__}")
        self.features = features
        self.data_root = data_root
        self._test: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._floors: dict[tuple[tuple[int, int], ...], Floor] = {}
        self._statistics: dict[tuple[int, ...], FeatureStatistics] = {}
        self._spreads: dict[int, float | None] = {}

    def _features_and_predictions(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """float64 features (N, D) and predicted classes int64 (N,) of uint8 or float (N, 3, S, S) images."""
        result = extract_features(self.features, images, batch_size=500, progress=False)
        return result.features.double(), result.logits.argmax(1)

    def _test_set(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Test labels, features and predictions (computed on first use)."""
        if self._test is None:
            images, labels = fashion_mnist_images("test", self.data_root, self.features.image_size)
            features, predictions = self._features_and_predictions(images)
            self._test = labels, features, predictions
        return self._test

    def _real_spread(self, label: int) -> float | None:
        """Mean pairwise feature distance among the test images of one class (computed once)."""
        if label not in self._spreads:
            labels, features, _ = self._test_set()
            self._spreads[label] = _mean_pairwise_distance(features[labels == label])
        return self._spreads[label]

    def _floor_images(self, counts: tuple[tuple[int, int], ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` seeded training images of each ``(class, count)``: uint8 (N, 3, S, S) and their
        int64 (N,) labels, the same images on every call."""
        train_images, train_labels = fashion_mnist_images("train", self.data_root, self.features.image_size)
        generator = torch.Generator().manual_seed(_FLOOR_SEED)
        index = []
        for label, count in counts:
            pool = torch.nonzero(train_labels == label).flatten()
            if count > len(pool):
                raise ValueError(
                    f"{count} images of class {label}: the floor needs as many training images, there are {len(pool)}"
                )
            index.append(pool[torch.randperm(len(pool), generator=generator)[:count]])
        chosen = torch.cat(index)
        return train_images[chosen], train_labels[chosen]

    def _fid(self, features: torch.Tensor, classes: tuple[int, ...]) -> float:
        """FID of float64 features (N, D) against the test images of ``classes`` (their statistics
        computed once per class set)."""
        if classes not in self._statistics:
            labels, test_features, _ = self._test_set()
            chosen = torch.isin(labels, torch.tensor(classes))
            self._statistics[classes] = FeatureStatistics.from_features(test_features[chosen].numpy())
        return frechet_distance(FeatureStatistics.from_features(features.numpy()), self._statistics[classes])

    def _class_fids(self, features: torch.Tensor, labels: torch.Tensor) -> dict[int, float | None]:
        """FID of each class's rows of ``features`` (N, D) against the test images of that class;
        None for a class with fewer than 2 rows (no covariance)."""
        return {
            label: self._fid(features[labels == label], (label,)) if count >= 2 else None
            for label, count in self._class_counts(labels)
        }

    def _floor(self, counts: tuple[tuple[int, int], ...]) -> Floor:
        """The floor's FID and per-class FIDs for ``counts`` (``_floor_images`` scored like
        samples), computed once per ``counts``."""
        if counts not in self._floors:
            images, labels = self._floor_images(counts)
            features = self._features_and_predictions(images)[0]
            classes = tuple(label for label, _ in counts)
            self._floors[counts] = self._fid(features, classes), self._class_fids(features, labels)
        return self._floors[counts]

    @staticmethod
    def _class_counts(labels: torch.Tensor) -> tuple[tuple[int, int], ...]:
        return tuple((label, int((labels == label).sum())) for label in sorted(set(labels.tolist())))

    def reconstruction(self, tokenizer: torch.nn.Module, labels: torch.Tensor, batch_size: int = 250) -> dict[str, Any]:
        """The tokenizer's share of the FID: the floor's training images (as many of each class as
        ``labels`` int64 (N,) holds) encoded to ids and decoded by ``tokenizer`` (a ``VQGAN``, or any
        module with ``encode_to_ids`` and ``decode_ids``; ``maskgit.evaluation.reconstruction.reconstruct``),
        rounded to uint8 as saved samples are, and scored against the test set like samples.

        A transformer that produced exactly the tokens of real images would score this FID; a perfect
        tokenizer would score ``fid_floor``, which uses the same images unchanged. Returns
        ``{images, fid, fid_floor, intra_fid, intra_fid_floor, accuracy, psnr, per_class}``:
        accuracy, the reconstructions classified as their class; psnr, their mean PSNR (dB) against
        the originals; per_class, ``{class, fid, fid_floor}`` of each class (see ``__call__``).
        """
        counts = self._class_counts(labels)
        real, real_labels = self._floor_images(counts)
        reconstructed = torch.cat([
            reconstruct(tokenizer, float_images(real[start : start + batch_size]), quantize=True)[1].cpu()
            for start in range(0, len(real), batch_size)
        ])
        features, predictions = self._features_and_predictions(reconstructed)
        fid_floor, floors = self._floor(counts)
        fids = self._class_fids(features, real_labels)
        return {
            "images": len(real),
            "fid": self._fid(features, tuple(label for label, _ in counts)),
            "fid_floor": fid_floor,
            "intra_fid": _mean_or_none(list(fids.values())),
            "intra_fid_floor": _mean_or_none(list(floors.values())),
            "accuracy": float((predictions == real_labels).double().mean()),
            "psnr": float(psnr(reconstructed, float_images(real)).mean()),
            "per_class": [{"class": label, "fid": fids[label], "fid_floor": floors[label]} for label in fids],
        }

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        """Scores of ``images`` float (N, 3, S, S) in [0, 1] generated for ``labels`` int64 (N,)."""
        names = self.features.class_names
        if images.dim() != 4 or len(images) != len(labels) or len(images) == 0:
            raise ValueError(f"need N >= 1 images (N, 3, S, S) and N labels, got {tuple(images.shape)} and {tuple(labels.shape)}")
        if int(labels.min()) < 0 or int(labels.max()) >= len(names):
            raise ValueError(f"labels must be in [0, {len(names)}), got values in [{int(labels.min())}, {int(labels.max())}]")
        counts = self._class_counts(labels)
        classes = tuple(label for label, _ in counts)
        test_labels, _, test_predictions = self._test_set()
        in_classes = torch.isin(test_labels, torch.tensor(classes))
        test_labels, test_predictions = test_labels[in_classes], test_predictions[in_classes]
        # The floor: as many real training images, with the same count per class, seeded.
        fid_floor, floors = self._floor(counts)
        generated_features, predictions = self._features_and_predictions(images)
        fids = self._class_fids(generated_features, labels)

        per_class = []
        for label in classes:
            chosen, real = labels == label, test_labels == label
            spread = _mean_pairwise_distance(generated_features[chosen])
            real_spread = self._real_spread(label)
            per_class.append({
                "class": label,
                "name": names[label],
                "images": int(chosen.sum()),
                "accuracy": float((predictions[chosen] == label).double().mean()),
                "real_accuracy": float((test_predictions[real] == label).double().mean()),
                "diversity": None if spread is None or not real_spread else spread / real_spread,
                "fid": fids[label],
                "fid_floor": floors[label],
            })
        diversities = [entry["diversity"] for entry in per_class if entry["diversity"] is not None]
        return {
            "images": len(images),
            "accuracy": float((predictions == labels).double().mean()),
            "real_accuracy": float((test_predictions == test_labels).double().mean()),
            "fid": self._fid(generated_features, classes),
            "fid_floor": fid_floor,
            "fid_reference_images": len(test_labels),
            "intra_fid": _mean_or_none(list(fids.values())),
            "intra_fid_floor": _mean_or_none(list(floors.values())),
            "diversity": float(np.mean(diversities)) if diversities else None,
            "per_class": per_class,
        }


def evaluate_images(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    features: ClassifierFeatures | None = None,
    data_root: str | os.PathLike[str] = FASHION_MNIST_ROOT,
) -> dict[str, Any]:
    """Accuracy, FID (with its train-vs-test floor) and diversity of generated ``images``.

    ``images`` float (N, 3, S, S) in [0, 1] (or uint8 in [0, 255]), ``labels`` int64 (N,): the class
    each was generated for. ``features``: the classifier (default: the shipped one). Returns a
    JSON-able dict: ``images``, ``accuracy``, ``real_accuracy`` (of the test images of the evaluated
    classes), ``fid``, ``fid_floor``, ``fid_reference_images``, ``intra_fid`` and ``intra_fid_floor``
    (the mean of the per-class FIDs; None if a class has fewer than 2 images), ``diversity`` and
    ``per_class``: a list of ``{class, name, images, accuracy, real_accuracy, diversity, fid,
    fid_floor}`` (fid: the class's images against its test images, None below 2 images). To score
    many sets, build one ``GenerationEvaluator`` and call it.
    """
    return GenerationEvaluator(features, data_root=data_root)(images, labels)


def evaluate_folder(
    folder: str | os.PathLike[str],
    *,
    features: ClassifierFeatures | None = None,
    tokenizer: torch.nn.Module | None = None,
    tokenizer_name: str = "tokenizer",
    tokenizer_images: int = 1000,
    data_root: str | os.PathLike[str] = FASHION_MNIST_ROOT,
) -> dict[str, Any]:
    """``evaluate_images`` on a folder (see ``load_generated``), with ``features`` the classifier
    (default: the shipped one, on the CPU). With a ``tokenizer`` (a ``VQGAN``), also, under
    ``"tokenizer"``: ``model`` (``tokenizer_name``), its mean ``psnr`` and ``ssim`` on the first
    ``tokenizer_images`` test images (``evaluate_tokenizer``, the clipped float reconstructions) and
    their count ``images``, and, under ``"reconstruction"``, the FID of its reconstructions of the
    floor's images (``GenerationEvaluator.reconstruction``). Adds ``source``."""
    if tokenizer_images < 1:
        raise ValueError(f"tokenizer_images must be >= 1, got {tokenizer_images}")
    evaluator = GenerationEvaluator(features, data_root=data_root)
    images, labels = load_generated(folder, evaluator.features.class_names, evaluator.features.image_size)
    results: dict[str, Any] = {"source": str(folder)}
    results.update(evaluator(images, labels))
    if tokenizer is not None:
        test_images, _ = fashion_mnist_images("test", data_root, tokenizer.config.image_size)
        scores = evaluate_tokenizer(tokenizer, test_images, max_images=tokenizer_images, batch_size=100)
        results["tokenizer"] = {
            "model": tokenizer_name,
            "psnr": scores.psnr,
            "ssim": scores.ssim,
            "images": scores.images,
            "reconstruction": evaluator.reconstruction(tokenizer, labels),
        }
    return results


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ratio(value: float | None, floor: float | None) -> str:
    return "-" if value is None or floor is None else f"{value / max(floor, 1e-12):.2f}"


def format_report(results: dict[str, Any]) -> str:
    """A readable table of ``evaluate_folder``'s results."""
    width = max(len(f"{e['class']} {e['name']}") for e in results["per_class"]) + 2
    tokenizer = results.get("tokenizer")
    # The tokenizer's per-class FID sits beside the samples': the part of each class's FID that
    # the tokenizer alone would cost.
    reconstructed = {e["class"]: e["fid"] for e in tokenizer["reconstruction"]["per_class"]} if tokenizer else {}
    header = f"{'class':<{width}}{'images':>7}{'accuracy':>11}{'real acc.':>11}{'diversity':>11}{'FID':>8}{'floor':>8}"
    lines = [f"{results.get('source', 'images')}: {results['images']} images", "",
             header + (f"{'tok. FID':>10}" if tokenizer else "")]
    for entry in results["per_class"]:
        lines.append(
            f"{entry['class']} {entry['name']:<{width - len(str(entry['class'])) - 1}}{entry['images']:>7}"
            f"{_percent(entry['accuracy']):>11}{_percent(entry['real_accuracy']):>11}{_percent(entry['diversity']):>11}"
            f"{_number(entry['fid']):>8}{_number(entry['fid_floor']):>8}"
            + (f"{_number(reconstructed.get(entry['class'])):>10}" if tokenizer else "")
        )
    lines.append(
        f"{'all':<{width}}{results['images']:>7}{_percent(results['accuracy']):>11}"
        f"{_percent(results['real_accuracy']):>11}{_percent(results['diversity']):>11}"
        f"{_number(results['fid']):>8}{_number(results['fid_floor']):>8}"
        + (f"{_number(tokenizer['reconstruction']['fid']):>10}" if tokenizer else "")
    )
    lines += [
        "",
        f"FID (classifier features, vs {results['fid_reference_images']} test images): {results['fid']:.2f}"
        f"   floor ({results['images']} training images): {results['fid_floor']:.2f}"
        f"   ratio {_ratio(results['fid'], results['fid_floor'])}",
        f"intra-FID (the mean of the classes' FIDs, each against its test images): {_number(results['intra_fid'])}"
        f"   floor {_number(results['intra_fid_floor'])}   ratio {_ratio(results['intra_fid'], results['intra_fid_floor'])}",
        "accuracy: classified as the requested class; real acc.: the same on real test images; "
        "diversity: mean pairwise feature distance within a class, relative to real test images; "
        "floor: as many real training images, scored the same way"
        + ("; tok. FID: the tokenizer's reconstructions of the floor's images" if tokenizer else ""),
    ]
    if tokenizer:
        rec = tokenizer["reconstruction"]
        lines += [
            f"tokenizer {tokenizer['model']}: PSNR {tokenizer['psnr']:.2f} dB, SSIM {tokenizer['ssim']:.4f} ({tokenizer['images']} test images)",
            f"  its reconstructions of the floor's {rec['images']} training images: FID {rec['fid']:.2f}"
            f"   floor {rec['fid_floor']:.2f}   ratio {_ratio(rec['fid'], rec['fid_floor'])}"
            f"   intra-FID {_number(rec['intra_fid'])}   accuracy {_percent(rec['accuracy'])}"
            " (what samples of real images' tokens would score)",
        ]
    return "\n".join(lines)
