"""The speed benchmark's FLOP counting (the fractions of peak it reports divide by these counts), its
context reuse paths, and their table."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import load_script

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


def test_paths_name_their_context_reuse():
    benchmark = _benchmark()
    assert benchmark._parse_path("fp32+ctx2") == ("fp32", set(), 2, False)
    assert benchmark._parse_path("bf16+compile+ctx1+reuse") == ("bf16", {"compile", "reuse"}, 1, False)
    assert benchmark._parse_path("bf16+reuse") == ("bf16", {"reuse"}, 0, False)
    assert benchmark._parse_path("int8+ctx2g") == ("int8", set(), 2, True)
    for bad in ("fp32+ctx", "fp32+ctx0", "fp32+ctx0g", "fp32+ctxN", "fp32+ctx1+ctx2g", "reference+ctx1"):
        with pytest.raises(SystemExit, match="modifiers are"):
            benchmark._parse_path(bad)


def test_a_path_sets_the_context_reuse_whatever_the_cases_sampler_has():
    from maskgit.sampling import ConfidenceSampler, HaltonSampler

    benchmark = _benchmark()
    grouped = ConfidenceSampler(num_steps=12, context_reuse=2, reuse_group=True)  # a default that reuses in groups
    assert benchmark._with_reuse(grouped, 0, False) == grouped.replace(context_reuse=0, reuse_group=False)
    assert benchmark._with_reuse(grouped, 2, False) == grouped.replace(reuse_group=False)
    assert benchmark._with_reuse(grouped, 2, True) == grouped
    assert benchmark._with_reuse(ConfidenceSampler(), 1, True) == ConfidenceSampler(context_reuse=1, reuse_group=True)
    assert benchmark._with_reuse(HaltonSampler(num_steps=8), 2, False) == HaltonSampler(num_steps=8, context_reuse=2)


def test_a_context_reuse_paths_flops_are_the_work_its_cheap_steps_do():
    benchmark = _benchmark()
    case = {"model": "fashion-mnist", "size": 32, "batch": 80, "steps": None}
    full, reused = benchmark.count_flops(case), benchmark.count_flops(case, 2)
    # Guided steps, the cheap ones over the tokens masked at the last full evaluation: less work,
    # and never less than the full evaluations alone (6 of the default's 16 steps).
    assert full * 6 / 16 < reused < full
    # In groups, the cheap steps recompute only the tokens their full evaluation chose for them.
    assert full * 6 / 16 < benchmark.count_flops(case, 2, True) < reused


def test_the_speed_table_compares_a_reuse_path_with_the_path_without_it():
    sampling_speed = load_script(SCRIPT.parent / "tables.py").sampling_speed

    def row(path, seconds):
        return {"path": path, "seconds": seconds, "first_call_s": seconds, "transformer_s": seconds - 1,
                "decoder_s": 1.0, "peak_rss_bytes": 1e9, "gflops": 10.0, "fraction_of_peak": 0.5}

    data = {"repeats": 1, "matmul_peak_gflops": {"fp32": 100.0}, "torch": "2.13.0",
            "provenance": {"device": "a CPU", "command": "python benchmarks/sampling_speed.py", "date": "today",
                           "code_version": "abc"},
            "cases": [{"model": "imagenet256", "size": 256, "batch": 8, "steps": 8,
                       "paths": [row("fp32", 6.0), row("fp32+ctx2", 4.0), row("bf16", 3.0), row("fp32+ctx2g", 2.4)]}]}
    text = "\n".join(sampling_speed(data, lambda figure: figure))
    assert "vs no reuse |" in text and "| `fp32+ctx2` | 4.00 s |" in text
    assert text.count("1.50x") == 1  # fp32 over fp32+ctx2; the other paths have no reuse to compare
    assert text.count("2.50x") == 1  # fp32 over fp32+ctx2g: reuse in groups is reuse too


def test_an_instruction_set_limit_holds_every_process_and_is_recorded(tmp_path):
    # No cases: the run measures only the fp32 matmul peak, in a process started again with the limit.
    out = tmp_path / "avx2.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--isa", "AVX2", "--sizes", "--no-shipped", "--paths", "fp32",
                             "--threads", "1", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["isa"] == {"isa": "AVX2", "environment": load_script(SCRIPT.parent / "tables.py").ISA_LIMITS["AVX2"],
                           "cpu_capability": "AVX2"}
    assert set(data["matmul_peak_gflops"]) == {"fp32"}  # only the precisions the paths use
    assert "kernels limited to AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2`" in out.with_suffix(".md").read_text()


def test_rounds_alternate_the_order_and_keep_each_paths_median_round():
    benchmark = _benchmark()
    calls, seconds = [], {"a": [9.0, 3.0, 6.0], "b": [4.0, None, 2.0], "c": [None, None, None]}

    def run(path):
        calls.append(path)
        value = seconds[path][sum(call == path for call in calls) - 1]
        return None if value is None else {"seconds": value, "peak_rss_bytes": value * 1e9, "call": len(calls)}

    rows = dict(benchmark.in_rounds(["a", "b", "c"], 3, run))
    assert calls == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]  # a slowing machine weighs on every path alike
    assert list(rows) == ["a", "b"]  # c never ran
    assert rows["a"]["seconds"] == 6.0 and rows["a"]["call"] == 7  # the median round's own result
    assert rows["a"]["round_seconds"] == [9.0, 3.0, 6.0] and rows["a"]["peak_rss_bytes"] == 9e9  # the highest peak
    assert rows["b"]["seconds"] == 2.0 and rows["b"]["round_seconds"] == [4.0, None, 2.0]  # the lower middle of two
    one = dict(benchmark.in_rounds(["d"], 1, lambda path: {"seconds": 1.0, "peak_rss_bytes": 1}))
    assert one["d"] == {"seconds": 1.0, "peak_rss_bytes": 1}  # one round: the result as it was


def test_a_ratio_of_rounds_is_the_median_of_each_rounds_own_ratio():
    speed_ratio = load_script(SCRIPT.parent / "tables.py").speed_ratio
    # The machine slows down through the run: each round's ratio is 2, the ratio of the medians is not.
    slow = {"seconds": 20.0, "round_seconds": [10.0, 20.0, 40.0, None]}
    fast = {"seconds": 10.0, "round_seconds": [5.0, 10.0, 20.0, 1.0]}
    assert speed_ratio(slow, fast) == 2.0
    slow["round_seconds"][1] = 80.0  # one round far off does not move the median of three
    assert speed_ratio(slow, fast) == 2.0
    assert speed_ratio(slow, {"seconds": 8.0}) == 20.0 / 8.0  # a row without rounds: the ratio of the times


def test_a_table_of_rounds_gives_each_ratios_lowest_and_highest_round():
    sampling_speed = load_script(SCRIPT.parent / "tables.py").sampling_speed

    def row(path, rounds):
        seconds = sorted(rounds)[1]
        return {"path": path, "seconds": seconds, "first_call_s": seconds, "transformer_s": seconds - 1, "decoder_s": 1.0,
                "peak_rss_bytes": 1e9, "gflops": 10.0, "fraction_of_peak": 0.5, "round_seconds": rounds}

    data = {"repeats": 1, "rounds": 3, "matmul_peak_gflops": {"fp32": 100.0}, "torch": "2.13.0",
            "provenance": {"device": "a CPU", "command": "python benchmarks/sampling_speed.py --rounds 3", "date": "today",
                           "code_version": "abc"},
            "cases": [{"model": "imagenet256", "size": 256, "batch": 8, "steps": 8,
                       "paths": [row("maskgit-torch", [30.0, 20.0, 50.0]), row("int8", [10.0, 10.0, 25.0])]}]}
    text = "\n".join(sampling_speed(data, lambda figure: figure))
    assert "the median of 3 rounds" in text
    # The rounds' ratios are 3, 2 and 2: their median, not the 3.00x of the median times (30 s / 10 s).
    assert "| `int8` | 10.00 s |" in text and "| 2.00x (2.00–3.00) |" in text
    assert "| 1.00x |" in text  # a path against itself has no spread to give
