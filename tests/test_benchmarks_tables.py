"""benchmarks/tables.py: every committed results table is what the generator makes of its JSON."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _tables():
    spec = importlib.util.spec_from_file_location("tables", ROOT / "benchmarks" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tables = _tables()
RESULT_FILES = sorted(RESULTS.glob("*.json"))


def test_there_are_results_and_each_table_has_its_json():
    assert len(RESULT_FILES) >= 4
    assert {path.stem for path in RESULTS.glob("*.md")} == {path.stem for path in RESULT_FILES}


@pytest.mark.parametrize("path", RESULT_FILES, ids=lambda path: path.name)
def test_the_committed_table_is_what_the_generator_makes(path):
    markdown, figures = tables.render(path.stem, json.loads(path.read_text()))
    assert path.with_suffix(".md").read_text() == markdown, f"run: python benchmarks/tables.py ({path.name})"
    assert figures, f"{path.name}: the table prints no measured figure"


@pytest.mark.parametrize("path", RESULT_FILES, ids=lambda path: path.name)
def test_every_results_file_says_where_it_comes_from(path):
    source = json.loads(path.read_text())["provenance"]
    assert {"device", "command", "date", "code_version"} <= set(source)
    assert source["command"].startswith(("python ", "maskgit ")) or "recorded" in source.get("note", "").lower()
    # The table names the device once, in its opening line.
    assert path.with_suffix(".md").read_text().count(source["device"]) == 1


def _speed():
    path = {"device": "a test CPU", "command": "python x.py", "date": "2026-01-01", "code_version": "abc1234"}
    row = {"seconds": 2.0, "first_call_s": 3.0, "transformer_s": 1.5, "decoder_s": 0.5, "peak_rss_bytes": 2_000_000_000,
           "gflops": 1234.5, "fraction_of_peak": 0.5}
    return {"kind": "sampling-speed", "provenance": path, "torch": "2.13", "repeats": 1,
            "matmul_peak_gflops": {"fp32": 400.0},
            "cases": [{"model": "imagenet256", "size": 256, "batch": 8, "steps": 8,
                       "paths": [dict(row, path="reference", seconds=4.0), dict(row, path="fp32")]}]}


def test_a_speed_table_divides_by_the_reference_row_and_records_its_figures():
    markdown, figures = tables.render("speed", _speed())
    fp32_row = next(line for line in markdown.splitlines() if "`fp32`" in line)
    assert "| 2.00 s |" in fp32_row and "| 2.00x |" in fp32_row and "1,234 (50 %)" in fp32_row
    assert {"2.00", "4.00", "1,234", "1.50", "0.50"} <= figures
    assert "a test CPU" in markdown.splitlines()[2] and "python x.py" in markdown


@pytest.mark.parametrize("missing", ["kind", "provenance"])
def test_a_results_file_without_its_kind_or_provenance_is_refused_before_anything_is_written(tmp_path, missing):
    data = _speed()
    del data[missing]
    with pytest.raises(ValueError, match=missing):
        tables.write_results(tmp_path / "speed.json", data)
    assert not list(tmp_path.iterdir())


def test_write_results_writes_the_json_and_its_table(tmp_path):
    table = tables.write_results(tmp_path / "speed.json", _speed())
    assert json.loads((tmp_path / "speed.json").read_text()) == _speed()
    assert table.read_text() == tables.render("speed", _speed())[0]


def test_provenance_records_the_device_command_date_and_code_version():
    record = tables.provenance("a test CPU", command="python benchmarks/x.py --flag")
    assert record["device"] == "a test CPU" and record["command"] == "python benchmarks/x.py --flag"
    assert len(record["date"]) == 10 and record["code_version"]
    load = record["load_average"]  # 1, 5 and 15 minutes; it moves between two reads, so only its form is checked
    assert len(load) == 3 and all(isinstance(value, float) and value >= 0 for value in load)
    heading = tables.heading({"provenance": dict(record, load_average=[1.5, 2.0, 3.25])}, "A test")[0]
    assert "(load average 1.5, 2, 3.25 over the 1, 5 and 15 minutes before it was written)" in heading


@pytest.mark.parametrize("seconds, text", [(24.4, "24 s"), (89, "1 min 29 s"), (3249, "54 min 9 s"), (8711, "2 h 25 min 11 s")])
def test_durations_read_as_hours_minutes_and_seconds(seconds, text):
    assert tables.duration(seconds) == text


def test_the_training_record_adds_up_its_rounds():
    source = {"device": "two CPUs", "command": "maskgit train", "date": "2026-01-01", "code_version": "abc1234"}
    stage = {"stage": "tokenizer", "machine": "a", "wall_seconds": 60,
             "results": [{"measure": "test loss", "values": [2.85, 2.41]}, {"measure": "PSNR", "values": [25.0], "unit": "dB"}]}
    data = {"kind": "training-record", "provenance": source, "title": "A run", "machines": {"a": "a CPU"},
            "rounds": [{"name": "first", "stages": [stage], "wall_seconds": 60},
                       {"name": "second", "stages": [dict(stage, wall_seconds=30)], "wall_seconds": 30}]}
    markdown, figures = tables.render("record", data)
    assert "test loss 2.85 → 2.41; PSNR 25.0 dB" in markdown
    assert "| **all rounds** |  | **1 min 30 s** |" in markdown
    assert {"2.85", "2.41", "25.0", "1 min 0 s", "1 min 30 s"} <= figures


def test_an_int8_kernels_table_divides_kernels_by_fp32_onednn_and_layers_by_the_fp32_layer():
    path = {"device": "a test CPU", "command": "python x.py", "date": "2026-01-01", "code_version": "abc1234"}
    times = {"fp32 oneDNN": 0.004, "int8 oneDNN, per tensor (maskgit)": 0.001, "layer, fp32": 0.010, "layer, int8": 0.005}
    case = {"case": "ImageNet 256, batch 1", "tokens": 257, "kernels": {k: {"best_s": s} for k, s in times.items()}}
    runs = [{"isa": "native", "environment": {}, "cpu_capability": "AVX512", "int8": {"levels": 256}, "cases": [case]},
            {"isa": "AVX2", "environment": {"ONEDNN_MAX_CPU_ISA": "AVX2"}, "cpu_capability": "AVX2",
             "int8": "precision int8 refused here", "cases": [case]}]
    data = {"kind": "int8-kernels", "provenance": path, "torch": "2.13", "torchao": None, "rounds": 3, "runs": runs,
            "accuracy": [{"model": "m", "positions": 1000, "variant": "bf16", "relative_rms": 0.0123,
                          "max_relative": 0.05, "argmax_agreement": 0.995}]}
    markdown, figures = tables.render("int8-kernels", data)
    lines = markdown.splitlines()
    assert "| 1.0 (4.00x) |" in next(line for line in lines if "`int8 oneDNN, per tensor (maskgit)`" in line)
    assert "| 5.0 (2.00x) |" in next(line for line in lines if "`layer, int8`" in line)
    assert any("8-bit activations" in line for line in lines) and any("int8 refused: precision int8 refused here" in line
                                                                      for line in lines)
    assert "torchao not installed" in markdown and {"4.00", "2.00", "0.0123", "99.50"} <= figures


def test_a_comparison_held_to_an_instruction_set_says_so():
    data = json.loads((RESULTS / "sampler-comparison-int8.json").read_text())
    assert data["config"]["isa"]["isa"] == "AVX2"
    markdown, _ = tables.render("comparison", data)
    assert "on 1 thread with the kernels limited to AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2`" in markdown
    del data["config"]["isa"]
    assert "limited to" not in tables.render("comparison", data)[0]


def test_an_instruction_set_limit_gives_torch_compile_a_cache_of_its_own(tmp_path):
    # Inductor's cache does not key on ATEN_CPU_CAPABILITY: kernels built under an AVX2 limit, loaded
    # by a native process, crashed it. The limited process (started again by hold_to_isa) must not
    # share the native cache directory.
    import subprocess
    import sys

    script = tmp_path / "held.py"
    script.write_text(
        "import importlib.util, os, sys\n"
        f"spec = importlib.util.spec_from_file_location('tables', {str(ROOT / 'benchmarks' / 'tables.py')!r})\n"
        "tables = importlib.util.module_from_spec(spec); spec.loader.exec_module(tables)\n"
        "record = tables.hold_to_isa(sys.argv[1])\n"
        "print(os.environ.get('TORCHINDUCTOR_CACHE_DIR'), os.environ.get('ATEN_CPU_CAPABILITY'))\n")
    env = {k: v for k, v in os.environ.items() if k not in tables.ISA_LIMITS["AVX2"]}
    env["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path / "native-cache")
    held = subprocess.run([sys.executable, str(script), "AVX2"], env=env, capture_output=True, text=True, check=True)
    cache, capability = held.stdout.split()
    assert capability == "avx2" and cache != str(tmp_path / "native-cache") and cache.endswith("AVX2")
    native = subprocess.run([sys.executable, str(script), "native"], env=env, capture_output=True, text=True, check=True)
    assert native.stdout.split() == [str(tmp_path / "native-cache"), "None"]


def test_the_finalists_table_gives_the_guards_verdict_where_the_guard_ran():
    data = json.loads((RESULTS / "sampler-comparison-int8.json").read_text())
    confirmed = data["confirmed"]
    for index, row in enumerate(confirmed):
        row["keeps_quality"] = index == 0
    lines = tables.render("comparison", data)[0].splitlines()
    header = next(line for line in lines if line.startswith("| finalist"))
    assert header.endswith("| keeps its quality |")
    finalists = lines[lines.index(header) + 2: lines.index(header) + 2 + len(confirmed)]
    assert [line.rsplit("|", 2)[1].strip() for line in finalists] == ["yes"] + ["no"] * (len(confirmed) - 1)
    assert "only fp32 settings could win" in tables.render("comparison", data)[0]
    del confirmed[-1]["keeps_quality"]  # a run without --guard has no verdict: no column
    assert not any("keeps its quality" in line for line in tables.render("comparison", data)[0].splitlines())
