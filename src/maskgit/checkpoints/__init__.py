"""Checkpoint files: the official flax msgpack reader, name mapping, and our own format."""

from maskgit.checkpoints.errors import CheckpointError
from maskgit.checkpoints.flax_msgpack import read_flax_msgpack, write_flax_msgpack
from maskgit.checkpoints.formats import detect_format, read_checkpoint

__all__ = ["CheckpointError", "read_flax_msgpack", "write_flax_msgpack", "detect_format", "read_checkpoint"]
