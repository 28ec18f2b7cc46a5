"""benchmarks/reproduce_fashion_mnist.py: the targets a reproduction is held to, and its table."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
reproduce = load_script(ROOT / "benchmarks" / "reproduce_fashion_mnist.py")
tables = load_script(ROOT / "benchmarks" / "tables.py")


def _scores(accuracy: float, fid: float) -> dict:
    per_class = [{"class": 0, "name": "T-shirt/top", "accuracy": accuracy - 0.1},
                 {"class": 1, "name": "Trouser", "accuracy": 1.0}]
    return {"images": 200, "accuracy": accuracy, "fid": fid, "fid_floor": 0.4, "diversity": 0.8, "per_class": per_class}


@pytest.mark.parametrize(("accuracy", "fid", "accuracy_met", "fid_met"), [
    (0.92, 2.4, True, True),     # exactly 2 points below, exactly 1.2x
    (0.9199, 2.0, False, True),  # just over 2 points below
    (0.97, 2.41, True, False),   # better accuracy does not buy a worse FID
])
def test_a_reproduction_is_held_to_the_shipped_models_accuracy_and_fid(accuracy, fid, accuracy_met, fid_met):
    result = reproduce.compare(_scores(accuracy, fid), _scores(0.94, 2.0))
    assert (result["accuracy_met"], result["fid_met"]) == (accuracy_met, fid_met)
    assert result["fid_ratio"] == pytest.approx(fid / 2.0)


def test_the_reproduction_table_names_resumed_stages_and_adds_up_the_time():
    compared = reproduce.compare(_scores(0.93, 2.2), _scores(0.94, 2.0))
    data = {"kind": "fashion-mnist-reproduction",
            "provenance": {"device": "a test CPU", "command": "maskgit train fashion-mnist --out r", "date": "2026-01-01",
                           "code_version": "abc1234"},
            "num_per_class": 100, "seed": 0, "precision": "bf16",
            "stage_seconds": {"tokenizer": 2400.0, "transformer": 3000.0}, "total_seconds": 5400.0,
            "resumed_stages": ["transformer"], "tokenizer": {"psnr": 24.6, "ssim": 0.92},
            "transformer": {"masked_accuracy": 0.37}, "scores": _scores(0.93, 2.2),
            "shipped": {"code_version": "def5678", "scores": _scores(0.94, 2.0)},
            "targets": reproduce.TARGETS, **compared, "met": True}
    markdown, figures = tables.render("fashion-mnist-reproduction", data)
    assert "| transformer (resumed) | 50 min 0 s |" in markdown and "| **all** | **1 h 30 min 0 s** |" in markdown
    assert "| accuracy, all classes | 93.0 % | 94.0 % | at most 2 points below | yes |" in markdown
    assert "| worst class | T-shirt/top 83 % | T-shirt/top 84 % |" in markdown
    assert {"2.20", "2.00", "24.60", "0.920", "37.0"} <= figures


@pytest.mark.parametrize("value", ["transformer", "transformer=abc", "=10", "tokens=-5"])
def test_earlier_seconds_must_name_a_stage_and_a_duration(value):
    with pytest.raises(ValueError, match="STAGE=SECONDS"):
        reproduce._earlier([value])
    assert reproduce._earlier(["transformer=1482", "tokens=3.5"]) == {"transformer": 1482.0, "tokens": 3.5}
