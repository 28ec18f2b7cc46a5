"""Evaluation: the numbers of the papers' tables, under documented protocols.

- ``statistics``: feature mean/covariance files (pytorch-fid layout) and the Fréchet distance (FID).
- ``metrics``: Inception Score, KID, precision/recall on feature vectors.
- ``inception``: the FID Inception-v3 (2015-12-05 graph) in plain torch, its weights file and cache.
- ``resize``: the ``clean`` and ``legacy`` ways of bringing images to 299 px.
- ``features``: the feature-network interface and the networks by name (``inception``,
  ``fashion-mnist``, a TorchScript file, registered ones); every feature computation runs through it.
- ``sources``: image folders, ADM-style ``.npz`` files and statistics files as inputs.
- ``compare``: one input against another (what ``maskgit fid`` runs).
- ``reconstruction``: the one PSNR, SSIM, and the one tokenizer evaluation (``evaluate_tokenizer``:
  PSNR, SSIM, codebook use and reconstruction FID).
- ``classifier``: the shipped Fashion-MNIST classifier (``--features fashion-mnist``) and its
  images, and ``evaluate``: the scores ``maskgit evaluate`` reports with it (import them from their
  modules). The classifier is trained by ``maskgit.training.classifier_trainer``.
"""

from maskgit.evaluation.compare import Comparison, MetricOptions, compare
from maskgit.evaluation.features import (
    FeatureExtractor,
    FeatureOptions,
    build_feature_extractor,
    extract_features,
    register_feature_extractor,
)
from maskgit.evaluation.inception import FIDInceptionV3, load_inception
from maskgit.evaluation.metrics import (
    MeanStd,
    PrecisionRecall,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)
from maskgit.evaluation.reconstruction import TokenizerScores, evaluate_tokenizer, psnr, ssim
from maskgit.evaluation.resize import RESIZE_PROTOCOLS, resize_for_inception
from maskgit.evaluation.sources import open_input
from maskgit.evaluation.statistics import FeatureStatistics, frechet_distance, load_statistics

__all__ = [
    "FeatureStatistics",
    "frechet_distance",
    "load_statistics",
    "inception_score",
    "kernel_inception_distance",
    "precision_recall",
    "MeanStd",
    "PrecisionRecall",
    "FIDInceptionV3",
    "load_inception",
    "RESIZE_PROTOCOLS",
    "resize_for_inception",
    "FeatureExtractor",
    "FeatureOptions",
    "build_feature_extractor",
    "extract_features",
    "register_feature_extractor",
    "open_input",
    "Comparison",
    "MetricOptions",
    "compare",
    "evaluate_tokenizer",
    "TokenizerScores",
    "psnr",
    "ssim",
]
