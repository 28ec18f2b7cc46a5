"""Shared pieces of the evaluation tests: a random FID Inception state dict in the standard format,
and the PNGs of a sample set."""

from __future__ import annotations

from pathlib import Path

import torch


def standard_inception_layers() -> dict[str, tuple[int, int, int, int]]:
    """Every convolution of the 2015-12-05 graph as named in the standard file: (out, in, kh, kw).

    Written out from the published layer list (torch-fidelity's TF → torch name map), independently
    of the module under test.
    """
    layers: dict[str, tuple[int, int, int, int]] = {}

    def conv(name: str, cin: int, cout: int, kernel) -> None:
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        layers[name] = (cout, cin, kh, kw)

    for name, cin, cout, k in (("Conv2d_1a_3x3", 3, 32, 3), ("Conv2d_2a_3x3", 32, 32, 3), ("Conv2d_2b_3x3", 32, 64, 3),
                               ("Conv2d_3b_1x1", 64, 80, 1), ("Conv2d_4a_3x3", 80, 192, 3)):
        conv(name, cin, cout, k)
    for block, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
        for name, a, b, k in (("branch1x1", cin, 64, 1), ("branch5x5_1", cin, 48, 1), ("branch5x5_2", 48, 64, 5),
                              ("branch3x3dbl_1", cin, 64, 1), ("branch3x3dbl_2", 64, 96, 3),
                              ("branch3x3dbl_3", 96, 96, 3), ("branch_pool", cin, pool, 1)):
            conv(f"{block}.{name}", a, b, k)
    for name, a, b, k in (("branch3x3", 288, 384, 3), ("branch3x3dbl_1", 288, 64, 1), ("branch3x3dbl_2", 64, 96, 3),
                          ("branch3x3dbl_3", 96, 96, 3)):
        conv(f"Mixed_6a.{name}", a, b, k)
    for block, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        for name, a, b, k in (("branch1x1", 768, 192, 1), ("branch7x7_1", 768, c7, 1), ("branch7x7_2", c7, c7, (1, 7)),
                              ("branch7x7_3", c7, 192, (7, 1)), ("branch7x7dbl_1", 768, c7, 1),
                              ("branch7x7dbl_2", c7, c7, (7, 1)), ("branch7x7dbl_3", c7, c7, (1, 7)),
                              ("branch7x7dbl_4", c7, c7, (7, 1)), ("branch7x7dbl_5", c7, 192, (1, 7)),
                              ("branch_pool", 768, 192, 1)):
            conv(f"{block}.{name}", a, b, k)
    for name, a, b, k in (("branch3x3_1", 768, 192, 1), ("branch3x3_2", 192, 320, 3), ("branch7x7x3_1", 768, 192, 1),
                          ("branch7x7x3_2", 192, 192, (1, 7)), ("branch7x7x3_3", 192, 192, (7, 1)),
                          ("branch7x7x3_4", 192, 192, 3)):
        conv(f"Mixed_7a.{name}", a, b, k)
    for block, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        for name, a, b, k in (("branch1x1", cin, 320, 1), ("branch3x3_1", cin, 384, 1), ("branch3x3_2a", 384, 384, (1, 3)),
                              ("branch3x3_2b", 384, 384, (3, 1)), ("branch3x3dbl_1", cin, 448, 1),
                              ("branch3x3dbl_2", 448, 384, 3), ("branch3x3dbl_3a", 384, 384, (1, 3)),
                              ("branch3x3dbl_3b", 384, 384, (3, 1)), ("branch_pool", cin, 192, 1)):
            conv(f"{block}.{name}", a, b, k)
    return layers


def random_inception_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values in the standard file's format: conv weights, four BatchNorm tensors, fc.

    He-scaled weights and near-identity BatchNorm keep the activations finite through all 94 layers.
    """
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, shape in standard_inception_layers().items():
        fan_in = shape[1] * shape[2] * shape[3]
        state[f"{name}.conv.weight"] = torch.randn(shape, generator=generator) * (2 / fan_in) ** 0.5
        channels = shape[0]
        state[f"{name}.bn.weight"] = 1 + 0.1 * torch.randn(channels, generator=generator)
        state[f"{name}.bn.bias"] = 0.1 * torch.randn(channels, generator=generator)
        state[f"{name}.bn.running_mean"] = 0.1 * torch.randn(channels, generator=generator)
        state[f"{name}.bn.running_var"] = 1 + torch.rand(channels, generator=generator)
    state["fc.weight"] = torch.randn(1008, 2048, generator=generator) * 0.02
    state["fc.bias"] = torch.randn(1008, generator=generator)
    return state


def png_contents(folder: Path) -> dict[str, bytes]:
    """Every PNG under ``folder`` by its relative path, to compare two sample sets byte for byte."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}
