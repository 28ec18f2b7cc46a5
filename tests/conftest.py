"""Shared test fixtures. The official parity fixtures live in ../shared beside the checkout."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = (Path(__file__).resolve().parents[1] / ".." / "shared").resolve()
OFFICIAL = SHARED / "fixtures" / "official"
MASKGIT_TORCH = SHARED / "fixtures" / "maskgit-torch"

TOKENIZER_MSGPACK = OFFICIAL / "tokenizer_small128_checkpoint.msgpack"
TRANSFORMER_MSGPACK = OFFICIAL / "maskgit_small128_checkpoint.msgpack"
TOKENIZER_CKPT = MASKGIT_TORCH / "maskgit_torch_tokenizer_small128.ckpt"
TRANSFORMER_CKPT = MASKGIT_TORCH / "maskgit_torch_transformer_small128.ckpt"


def load_script(path: Path):
    """A script outside the package (tools/, benchmarks/) loaded as a module, to test its functions."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_npz(name: str) -> dict[str, np.ndarray]:
    with np.load(OFFICIAL / name) as data:
        return {key: data[key] for key in data.files}


def nhwc_to_nchw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)


def nchw_to_nhwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().permute(0, 2, 3, 1).numpy()


def official_params(path) -> dict[str, np.ndarray]:
    """The ``params`` collection of an official msgpack file, flattened to ``scope/.../name`` keys."""
    from maskgit.checkpoints.flax_msgpack import flatten_tree, read_flax_msgpack

    return flatten_tree(read_flax_msgpack(path)["params"])


def write_official_params(flat: dict[str, np.ndarray], path) -> None:
    """Write flattened ``params`` as an official msgpack file."""
    from maskgit.checkpoints.flax_msgpack import unflatten_tree, write_flax_msgpack

    write_flax_msgpack({"params": unflatten_tree(flat)}, path)


@pytest.fixture(scope="session")
def small_tokenizer():
    from maskgit import VQGAN

    return VQGAN.from_pretrained(TOKENIZER_MSGPACK)


@pytest.fixture(scope="session")
def small_transformer():
    from maskgit import MaskGITTransformer

    return MaskGITTransformer.from_pretrained(TRANSFORMER_MSGPACK)


@pytest.fixture(scope="session")
def small_pipeline(small_tokenizer, small_transformer):
    from maskgit.pipeline import MaskGIT

    return MaskGIT(small_tokenizer, small_transformer)


# -- the two forms of the models: the parity tests run on both ---------------------------------------

#: "plain": the models as they load; "fused": as ``MaskGIT.from_pretrained`` prepares them for fp32
#: inference (``maskgit.models.inference``: channels-last, in-place residual blocks, upsampling
#: without the upsampled copy and, where oneDNN runs, fused transformer layers), which must give the
#: same results within the same tolerances.
FORMS = ("plain", "fused")


@pytest.fixture(scope="session")
def fused_tokenizer(small_tokenizer):
    from maskgit.models.inference import prepare_tokenizer

    tokenizer = copy.deepcopy(small_tokenizer)
    prepare_tokenizer(tokenizer, "fp32")
    return tokenizer


@pytest.fixture(scope="session")
def fused_transformer(small_transformer):
    from maskgit.models.inference import prepare_transformer

    transformer = copy.deepcopy(small_transformer)
    prepare_transformer(transformer, "fp32")
    return transformer


@pytest.fixture(scope="session")
def fused_pipeline(small_tokenizer, small_transformer):
    from maskgit.pipeline import MaskGIT

    return MaskGIT(copy.deepcopy(small_tokenizer), copy.deepcopy(small_transformer)).to_precision("fp32")


@pytest.fixture(scope="session", params=FORMS)
def tokenizer_form(request):
    """The fixture tokenizer, plain and fused."""
    return request.getfixturevalue("small_tokenizer" if request.param == "plain" else "fused_tokenizer")


@pytest.fixture(scope="session", params=FORMS)
def transformer_form(request):
    """The fixture transformer, plain and fused."""
    return request.getfixturevalue("small_transformer" if request.param == "plain" else "fused_transformer")


@pytest.fixture(scope="session", params=FORMS)
def pipeline_form(request):
    """The fixture pipeline, over the plain and the fused models."""
    return request.getfixturevalue("small_pipeline" if request.param == "plain" else "fused_pipeline")


def runs_as_itself(model: torch.nn.Module, name: str) -> bool:
    """Whether the submodule ``name`` of ``model`` runs as a module whose output is that of the
    official scope mapped to it, so that a forward hook on it sees that output. In the fused form
    the layers inside a fused block run as functions, and a ``FusedLinear`` returns its GELU's
    output."""
    from maskgit.models.inference import FusedLayer, FusedLinear, InferenceResBlock

    modules = dict(model.named_modules())
    parents = [name.rsplit(".", depth)[0] for depth in range(1, name.count(".") + 1)]
    return not isinstance(modules[name], FusedLinear) and not any(
        isinstance(modules[parent], (FusedLayer, InferenceResBlock)) for parent in parents)


@pytest.fixture(scope="module")
def shipped_pipeline():
    """The Fashion-MNIST pipeline shipped in the package, on the CPU."""
    from maskgit.pipeline import MaskGIT

    return MaskGIT.from_pretrained("fashion-mnist", device="cpu")


@pytest.fixture
def studio(shipped_pipeline, tmp_path):
    """The web studio over the shipped pipeline: runs under tmp_path/runs, 4 images a run, 3 runs kept."""
    from maskgit.web.studio import Limits, Studio

    return Studio(shipped_pipeline, "fashion-mnist", tmp_path / "runs", Limits(max_images=4, max_runs_kept=3))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, small_tokenizer, small_transformer):
    """The fixture models saved as a pipeline folder with the Fashion-MNIST class names."""
    from maskgit.data import FASHION_MNIST_CLASSES
    from maskgit.pipeline import MaskGIT

    folder = tmp_path_factory.mktemp("model")
    MaskGIT(small_tokenizer, small_transformer, FASHION_MNIST_CLASSES).save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def _single_thread():
    # The test models are tiny: a second intra-op thread only adds hand-off cost, which on a
    # loaded 2-core machine made many-small-step tests up to 10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- disks that fail: a small tmpfs when this process may mount one (root), else a patched writer --


def _mount_tmpfs(folder: Path, options: str) -> bool:
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                              capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _unmount(folder: Path) -> None:
    import subprocess

    subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=10)


def _failing_writes(monkeypatch, folder: Path, code: int) -> None:
    """Make every maskgit write under ``folder`` fail with OSError ``code``, as the disk would."""
    import contextlib
    import os
    import tempfile

    import maskgit.imageio
    import maskgit.io

    original_atomic = maskgit.io.atomic_path
    original_temporary = tempfile.TemporaryFile

    def inside(path) -> bool:
        return Path(os.path.abspath(path)).is_relative_to(folder)

    @contextlib.contextmanager
    def atomic_path(path):
        if inside(path):
            raise OSError(code, os.strerror(code), str(path))
        with original_atomic(path) as temp:
            yield temp

    def temporary_file(*args, dir=None, **kwargs):
        if code != 28 and dir is not None and inside(dir):  # a full disk still creates empty files
            raise OSError(code, os.strerror(code), str(dir))
        return original_temporary(*args, dir=dir, **kwargs)

    monkeypatch.setattr(maskgit.io, "atomic_path", atomic_path)
    monkeypatch.setattr(maskgit.imageio, "atomic_path", atomic_path)
    monkeypatch.setattr(tempfile, "TemporaryFile", temporary_file)


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """A folder on a disk with no space left: a 256 KiB tmpfs filled to the brim, or (where
    mounting is not allowed) a patched writer that fails with ENOSPC under it."""
    folder = tmp_path / "full"
    if _mount_tmpfs(folder, "size=256k"):
        try:
            with open(folder / "filler", "wb") as handle:
                while True:
                    handle.write(b"\0" * 4096)
                    handle.flush()
        except OSError:
            pass
        yield folder
        _unmount(folder)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "filler").write_bytes(b"\0")
        _failing_writes(monkeypatch, folder, 28)
        yield folder


@pytest.fixture
def read_only_dir(tmp_path, monkeypatch):
    """An empty folder on a read-only file system: a read-only tmpfs, or a patched writer."""
    folder = tmp_path / "read-only"
    if _mount_tmpfs(folder, "size=64k,ro"):
        yield folder
        _unmount(folder)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        _failing_writes(monkeypatch, folder, 30)
        yield folder


# -- Fashion-MNIST evaluation inputs (tests of maskgit.evaluation.evaluate and `maskgit evaluate`) --

FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory):
    """4 real test images of every class, in class folders named by name (or by index for Bag)."""
    from maskgit.evaluation.classifier import fashion_mnist_images
    from maskgit.imageio import save_image

    root = tmp_path_factory.mktemp("real")
    images, labels = fashion_mnist_images("test")
    for label, name in enumerate(FASHION_NAMES):
        folder = root / ("0008" if name == "Bag" else name.replace("/", "_"))
        for k, index in enumerate(torch.nonzero(labels == label).flatten()[:4].tolist()):
            save_image(images[index].float() / 255, folder / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A `maskgit generate` run of the shipped model: 4 T-shirts and 4 sandals."""
    from maskgit.cli import main

    out = tmp_path_factory.mktemp("generated") / "run"
    assert main(["generate", "--model", "fashion-mnist", "--class", "0,sandal", "--num", "4", "--seed", "0",
               "--device", "cpu", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A folder of 8 synthetic 16 px images of each of three classes (``maskgit.data.synthetic``)."""
    from maskgit.data.synthetic import write_shapes_folder

    return write_shapes_folder(tmp_path_factory.mktemp("shapes"), per_class=8, size=16)
