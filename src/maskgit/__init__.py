"""MaskGIT in PyTorch: the official models and weights, generation, editing and training."""

from importlib.metadata import PackageNotFoundError, version

from maskgit._allocation import reuse_freed_memory
from maskgit.checkpoints import CheckpointError
from maskgit.configs import ConfigError, TokenizerConfig, TransformerConfig
from maskgit.models import VQGAN, MaskGITTransformer, load_model
from maskgit.pipeline import MaskGIT, MaskGITOutput
from maskgit.registry import list_models
from maskgit.sampling import decode

try:  # the installed distribution's version: pyproject.toml states it once
    __version__ = version("maskgit")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "VQGAN",
    "MaskGITTransformer",
    "MaskGIT",
    "MaskGITOutput",
    "decode",
    "TokenizerConfig",
    "TransformerConfig",
    "CheckpointError",
    "ConfigError",
    "load_model",
    "list_models",
    "reuse_freed_memory",
    "__version__",
]
