"""Datasets: image folders, Fashion-MNIST and MNIST (idx files), their transforms, and token files
(images encoded once by the tokenizer for transformer training)."""

from maskgit.data.datasets import IMAGE_EXTENSIONS, ImageDataset, ImageFolder, build_dataset, load_image
from maskgit.data.idx import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ROOT,
    MNIST_CLASSES,
    IdxImages,
    load_fashion_mnist,
    load_mnist,
    read_idx,
)
from maskgit.data.tokens import TokenDataset, TokenFileWriter, extract_tokens, write_token_file
from maskgit.data.transforms import eval_transform, train_transform

__all__ = [
    "read_idx",
    "IdxImages",
    "load_fashion_mnist",
    "load_mnist",
    "FASHION_MNIST_ROOT",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "ImageFolder",
    "IMAGE_EXTENSIONS",
    "load_image",
    "train_transform",
    "eval_transform",
    "build_dataset",
    "ImageDataset",
    "write_token_file",
    "TokenFileWriter",
    "TokenDataset",
    "extract_tokens",
]
