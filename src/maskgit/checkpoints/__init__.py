"""Checkpoint files: the official flax msgpack reader and parameter names, config inference from
shapes, the maskgit-torch names, our own model folders, the pipeline folder (``pipeline_folder``:
two model folders and their index, and the conversion of an official checkpoint into one), and the
registry of official checkpoints with their downloads."""

from maskgit.checkpoints.errors import CheckpointError, DownloadError
from maskgit.checkpoints.flax_msgpack import read_flax_msgpack, write_flax_msgpack
from maskgit.checkpoints.formats import detect_format, read_checkpoint
from maskgit.checkpoints.hub import checkpoint_names, download_file, fetch_official, get_checkpoint

__all__ = [
    "CheckpointError",
    "DownloadError",
    "read_flax_msgpack",
    "write_flax_msgpack",
    "detect_format",
    "read_checkpoint",
    "checkpoint_names",
    "download_file",
    "fetch_official",
    "get_checkpoint",
]
