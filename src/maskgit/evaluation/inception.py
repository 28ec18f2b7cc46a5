"""The FID Inception-v3 in plain torch: the 2015-12-05 TensorFlow graph that FID is defined with.

pytorch-fid, clean-fid, torch-fidelity and the ADM evaluator all use this network (TF's
``classify_image_graph_def.pb`` from ``inception-2015-12-05.tgz``), not torchvision's Inception-v3. It
differs from torchvision's in three places, kept here as in the graph:

- the average-pool branches of the A, C and first E blocks exclude the zero padding from the
  average (TF's ``AVG`` pooling with ``SAME`` padding);
- the last E block (``Mixed_7c``) pools with a *max*, not an average;
- the classifier has 1008 outputs (1000 classes plus 8 unused).

Input: float (B, 3, 299, 299) RGB in [0, 255] (resizing to 299 is the caller's protocol, see
``maskgit.evaluation.resize``). The graph normalises with ``(x - 128) / 128`` (pytorch-fid's
``2x - 1`` on [0, 1] differs from it by 1/255 of a step; we follow the graph). Outputs: the
2048-d ``pool3`` features that FID, KID and precision/recall use, and the 1008 logits ``pool3 @ W``
*without* the classifier bias, which is what the original Inception Score code, the ADM evaluator
and torch-fidelity feed to the softmax.

Weights: the standard published file ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid's release;
torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth`` is the same bytes), a plain state dict
with torchvision's parameter names: ``<layer>.conv.weight`` (no conv bias), ``<layer>.bn.{weight,
bias,running_mean,running_var}`` (BatchNorm eps 1e-3) and ``fc.{weight,bias}``. It is read with
``torch.load(weights_only=True)``: from a path, from the cache
(``$MASKGIT_HOME/downloads/fid-inception/``), or downloaded there once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from maskgit.checkpoints.errors import CheckpointError, DownloadError
from maskgit.checkpoints.hub import DEFAULT_TIMEOUT, default_cache_dir, download_file

__all__ = [
    "FIDInceptionV3",
    "InceptionOutput",
    "WEIGHTS_FILENAME",
    "WEIGHTS_URL",
    "inception_weights_path",
    "fetch_inception_weights",
    "load_inception",
]

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILENAME}"
# torch.hub convention: the hex in the file name is the start of the file's SHA-256.
WEIGHTS_SHA256_PREFIX = "6726825d"
URL_ENV = "MASKGIT_INCEPTION_URL"
_CACHE_SUBDIR = ("downloads", "fid-inception")


class InceptionOutput(NamedTuple):
    features: torch.Tensor  # (B, 2048) pool3
    logits: torch.Tensor  # (B, 1008) pool3 @ W, without the bias


class _ConvBN(nn.Module):
    """Convolution without bias, BatchNorm (eps 1e-3, as the graph), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TF's SAME average pool divides by the number of real (unpadded) inputs.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):
    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(in_channels, 64, 1)
        self.branch5x5_1 = _ConvBN(in_channels, 48, 1)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1)
        self.branch_pool = _ConvBN(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_tf_avg_pool(x)),
        ], 1)


class _BlockB(nn.Module):
    """Grid reduction 35 -> 17."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = _ConvBN(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], 1)


class _BlockC(nn.Module):
    """Factorised 7x7 convolutions at 17x17."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = _ConvBN(in_channels, 192, 1)
        self.branch7x7_1 = _ConvBN(in_channels, c7, 1)
        self.branch7x7_2 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _ConvBN(in_channels, c7, 1)
        self.branch7x7dbl_2 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _ConvBN(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = layer(double)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            double,
            self.branch_pool(_tf_avg_pool(x)),
        ], 1)


class _BlockD(nn.Module):
    """Grid reduction 17 -> 8."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = _ConvBN(in_channels, 192, 1)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(in_channels, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tower = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), tower, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _BlockE(nn.Module):
    """Expanded filter bank at 8x8. ``max_pool``: the graph's last block pools with a max."""

    def __init__(self, in_channels: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _ConvBN(in_channels, 320, 1)
        self.branch3x3_1 = _ConvBN(in_channels, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _ConvBN(in_channels, 448, 1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _ConvBN(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _tf_avg_pool(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(single), self.branch3x3_2b(single),
            self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double),
            self.branch_pool(pooled),
        ], 1)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3 (module names as torchvision's, so the standard state dict loads as is).

    ``forward``: float (B, 3, 299, 299) in [0, 255] → ``InceptionOutput(features (B, 2048),
    logits (B, 1008))``, float32. Build it with ``load_inception`` (weights required: random
    weights give meaningless features).
    """

    INPUT_SIZE = 299
    FEATURE_DIM = 2048
    NUM_LOGITS = 1008

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.Mixed_5b = _BlockA(192, pool_features=32)
        self.Mixed_5c = _BlockA(256, pool_features=64)
        self.Mixed_5d = _BlockA(288, pool_features=64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, channels_7x7=128)
        self.Mixed_6c = _BlockC(768, channels_7x7=160)
        self.Mixed_6d = _BlockC(768, channels_7x7=160)
        self.Mixed_6e = _BlockC(768, channels_7x7=192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, max_pool=False)
        self.Mixed_7c = _BlockE(2048, max_pool=True)
        # The bias is part of the standard file; the logits we return leave it out (see the module doc).
        self.fc = nn.Linear(self.FEATURE_DIM, self.NUM_LOGITS)
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> InceptionOutput:
        if images.dim() != 4 or images.shape[1:] != (3, self.INPUT_SIZE, self.INPUT_SIZE):
            raise ValueError(f"FID Inception input must be (B, 3, 299, 299), got {tuple(images.shape)}")
        x = (images.to(self.fc.weight.dtype) - 128) / 128
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        features = x.mean(dim=(2, 3))
        return InceptionOutput(features.float(), (features @ self.fc.weight.T).float())

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], source: str = "state dict") -> FIDInceptionV3:
        """Build the network from a state dict in the standard format; every name must map.

        ``*.num_batches_tracked`` entries (written by some converters) are accepted and ignored.
        Raises CheckpointError naming ``source`` and the missing, unexpected or misshapen keys.
        """
        model = cls()
        expected = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        given = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
        missing, unexpected = sorted(expected.keys() - given.keys()), sorted(given.keys() - expected.keys())
        if missing or unexpected:
            raise CheckpointError(
                f"{source} is not an FID Inception-v3 state dict ({WEIGHTS_FILENAME} format): "
                f"{len(missing)} missing key(s) {_first(missing)}, {len(unexpected)} unexpected key(s) {_first(unexpected)}"
            )
        for key, value in given.items():
            if not isinstance(value, torch.Tensor) or value.shape != expected[key].shape:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise CheckpointError(f"{source}: {key} has shape {shape}, expected {tuple(expected[key].shape)}")
        model.load_state_dict(given, strict=False)  # strict=False only for num_batches_tracked
        return model


def _first(keys: list[str], count: int = 5) -> str:
    shown = ", ".join(keys[:count]) + (", ..." if len(keys) > count else "")
    return f"[{shown}]"


def inception_weights_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the weights file is looked for and downloaded to: ``<cache>/downloads/fid-inception/<file>``."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return cache.joinpath(*_CACHE_SUBDIR, WEIGHTS_FILENAME)


def fetch_inception_weights(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    url: str | None = None,
    sha256_prefix: str | None = WEIGHTS_SHA256_PREFIX,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """The cached weights file, downloaded from ``url`` first when it is not there.

    ``url`` defaults to ``$MASKGIT_INCEPTION_URL`` (a mirror), else ``WEIGHTS_URL``. A fresh download must have a SHA-256 starting with ``sha256_prefix`` (else it is deleted). On
    failure, DownloadError says where to put a copy of the file by hand.
    """
    destination = inception_weights_path(cache_dir)
    if destination.is_file():
        return destination
    url = url or os.environ.get(URL_ENV) or WEIGHTS_URL
    try:
        download_file(url, destination, progress=progress, timeout=timeout)
    except DownloadError as error:
        raise DownloadError(
            f"the FID Inception weights are not in the cache and could not be downloaded ({error}).\n"
            f"Download {url}\n    -> put it at {destination}\n"
            "(or pass its path with --inception-weights; the cache folder is $MASKGIT_HOME, else ~/.cache/maskgit)"
        ) from error
    if sha256_prefix is not None:
        digest = hashlib.sha256(destination.read_bytes()).hexdigest()
        if not digest.startswith(sha256_prefix.lower()):
            destination.unlink()
            raise DownloadError(f"{url}: SHA-256 {digest} does not start with {sha256_prefix}; the file was deleted")
    return destination


def load_inception(
    weights: str | os.PathLike[str] | Mapping[str, torch.Tensor] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    device: str | torch.device = "cpu",
) -> FIDInceptionV3:
    """The FID Inception-v3 with the standard weights, in eval mode, gradients off.

    ``weights``: a state dict, a path to the ``.pth`` file, or None for the cache (downloading the
    file when ``download`` and it is missing). Raises CheckpointError / DownloadError /
    FileNotFoundError with the path to use.
    """
    if isinstance(weights, Mapping):
        return FIDInceptionV3.from_state_dict(weights).to(device)
    if weights is None:
        path = fetch_inception_weights(cache_dir) if download else inception_weights_path(cache_dir)
        if not path.is_file():
            raise FileNotFoundError(f"FID Inception weights not found at {path}: download {WEIGHTS_URL} and put it "
                                    "there, or pass its path with --inception-weights")
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such Inception weights file (expected {WEIGHTS_FILENAME} from {WEIGHTS_URL})")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch.load raises many types for a bad file
        raise CheckpointError(f"{path}: cannot read the Inception weights ({type(error).__name__}: {error})") from None
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, found a {type(state_dict).__name__}")
    return FIDInceptionV3.from_state_dict(state_dict, source=str(path)).to(device)
