"""The speed benchmark's FLOP counting: the fractions of peak it reports divide by these counts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sampling_speed.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("sampling_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_flash_attention_counts_as_the_two_matmuls_it_replaces():
    benchmark = _benchmark()
    q, k, v = torch.randn(3, 2, 4, 37, 24).unbind(0)
    with torch.inference_mode():
        with benchmark.flop_counter() as fused:
            F.scaled_dot_product_attention(q, k, v)
        with benchmark.flop_counter() as written_out:
            torch.softmax(q @ k.transpose(-1, -2) * 24**-0.5, -1) @ v
    assert fused.get_total_flops() == written_out.get_total_flops() == 2 * (2 * 2 * 4 * 37 * 37 * 24)
