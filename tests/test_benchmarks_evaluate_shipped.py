"""benchmarks/evaluate_shipped.py: the quality guard against another evaluation of the same images,
and its table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "evaluate_shipped.py"
evaluate_shipped = load_script(SCRIPT)
tables = load_script(ROOT / "benchmarks" / "tables.py")
SHIPPED = ROOT / "benchmarks" / "results" / "fashion-mnist-evaluation.json"


def _scores(accuracy: float, worst: float, fid: float) -> dict:
    return {"accuracy": accuracy, "fid": fid,
            "per_class": [{"class": 0, "name": "Shirt", "accuracy": worst}, {"class": 1, "name": "Bag", "accuracy": 1.0}]}


@pytest.mark.parametrize(("accuracy", "worst", "fid", "kept"), [
    (0.94, 0.77, 2.2, True),      # exactly 1 point and 3 points lower, exactly 1.1x the FID
    (0.9399, 0.80, 2.0, False),   # just over 1 point lower
    (0.95, 0.7699, 2.0, False),   # the worst class just over 3 points lower
    (0.99, 0.90, 2.21, False),    # better accuracy does not buy a worse FID
])
def test_the_guard_holds_scores_to_the_reference_on_each_figure(accuracy, worst, fid, kept):
    reference = {"precision": "fp32", "scores": _scores(0.95, 0.80, 2.0)}
    verdict = evaluate_shipped.guard_verdict(_scores(accuracy, worst, fid), reference, "shipped.json")
    assert verdict["kept"] is kept
    assert verdict["reference"] == {"accuracy": 0.95, "worst_class_accuracy": 0.80, "fid": 2.0}
    assert verdict["ours"]["worst_class_accuracy"] == worst


def test_the_table_shows_the_guard_and_the_instruction_set_limit():
    data = json.loads(SHIPPED.read_text())
    data.pop("guard", None)  # an evaluation judged against none
    plain, _ = tables.render("evaluation", data)
    assert "quality guard" not in plain and "limited to" not in plain
    worse = {**data["scores"], "fid": data["scores"]["fid"] * 1.2}
    limited = {**data, "precision": "int8", "scores": worse,
               "isa": {"isa": "AVX2", "environment": tables.ISA_LIMITS["AVX2"], "cpu_capability": "AVX2"},
               "guard": evaluate_shipped.guard_verdict(worse, data, "shipped.json")}
    markdown, _ = tables.render("evaluation", limited)
    assert "int8 with the kernels limited to AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2`" in markdown
    assert "against `shipped.json` (the same images in fp32)" in markdown
    assert markdown.rstrip().endswith("Quality kept: **no**.")


def test_a_guard_against_other_images_is_refused_before_anything_runs(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--num-per-class", "7", "--guard-against", str(SHIPPED),
                             "--out", str(tmp_path / "out"), "--json", str(tmp_path / "e.json")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "not an evaluation of 7 images a class with seed 0" in result.stderr.splitlines()[-1]
    assert not (tmp_path / "out").exists() and not (tmp_path / "e.json").exists()
    (tmp_path / "broken.json").write_text("{not json")
    for bad in ("missing.json", "broken.json"):
        result = subprocess.run([sys.executable, str(SCRIPT), "--guard-against", str(tmp_path / bad), "--out",
                                 str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and f"--guard-against {tmp_path / bad}: " in result.stderr.splitlines()[-1]
        assert not (tmp_path / "out").exists()


def test_a_sampler_from_a_file_without_one_is_refused_before_anything_runs(tmp_path):
    (tmp_path / "scores.json").write_text(json.dumps({"kind": "fashion-mnist-evaluation"}))
    (tmp_path / "bad.json").write_text(json.dumps({"sampler": {"sampler": "confidence", "num_steps": -3}}))
    for name in ("scores.json", "bad.json", "missing.json"):
        result = subprocess.run([sys.executable, str(SCRIPT), "--sampler-from", str(tmp_path / name), "--out",
                                 str(tmp_path / "out"), "--json", str(tmp_path / "e.json")],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2
        assert f"--sampler-from {tmp_path / name}: no sampler an evaluation recorded" in result.stderr.splitlines()[-1]
        assert not (tmp_path / "out").exists() and not (tmp_path / "e.json").exists()


def test_the_guards_reference_figures_are_the_reference_files_not_this_tables():
    # A link to this table must not borrow a figure that only its guard quotes from the reference
    # (the README once kept the old default's FID, which the new table still printed there).
    data = json.loads(SHIPPED.read_text())
    reference = {"precision": "fp32", "scores": _scores(0.9123, 0.61, 9.87)}
    data["guard"] = evaluate_shipped.guard_verdict(data["scores"], reference, "old.json")
    markdown, figures = tables.render("evaluation", data)
    assert "| 9.87 |" in markdown and "| 91.2 % |" in markdown
    assert not {"9.87", "91.2", "61"} & figures
    assert f"{data['scores']['fid']:.2f}" in figures
