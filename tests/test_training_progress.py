"""What a training run shows: metric windows, the JSONL log (and its truncation on resume), image grids."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit.training.progress import MetricsLog, MetricWindow, save_image_grid


def test_metric_window_sums_each_metric_over_the_steps_that_reported_it():
    window = MetricWindow()
    window.add({"loss": torch.tensor(2.0), "d_loss": torch.tensor(1.0, dtype=torch.float64)})
    window.add({"loss": torch.tensor(4.0)})
    assert window.steps == 2
    assert window.counts == {"loss": 2, "d_loss": 1}
    assert float(window.sums["loss"]) == 6.0
    assert window.sums["d_loss"].dtype == torch.float32
    assert window.elapsed() > 0


def test_metrics_log_writes_plain_json_and_truncates_after_a_step(tmp_path):
    log = MetricsLog(tmp_path / "run" / "metrics.jsonl")
    for step in (1, 2, 3):
        log.write(step, {"loss": torch.tensor(float(step)), "grad_norm": float("inf")})
    with (tmp_path / "run" / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 4, "loss"')  # a line cut by a crash
    log.truncate_after(2)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines == [{"step": 1, "loss": 1.0, "grad_norm": "inf"}, {"step": 2, "loss": 2.0, "grad_norm": "inf"}]
    log.close()


def test_image_grid_places_images_row_major_with_padding(tmp_path):
    images = torch.zeros(3, 3, 4, 5)
    images[1] = 1.0
    images[2, 0] = 2.0  # clipped to 1
    save_image_grid(images, tmp_path / "grid.png", columns=2, padding=1)
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (2 * 5 + 1, 2 * 6 + 1, 3)
    assert (grid[1:5, 1:6] == 0).all()
    assert (grid[1:5, 7:12] == 255).all()
    assert (grid[6:10, 1:6] == [255, 0, 0]).all()
    assert (grid[0] == 0).all() and (grid[6:10, 7:12] == 0).all()  # padding and the empty cell
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        save_image_grid(images[:, :1], tmp_path / "bad.png", columns=2)


def test_run_display_counts_planned_seconds_across_stages():
    from maskgit.training.progress import RunDisplay

    display = RunDisplay({"tokenizer": 30.0, "tokens": 5.0, "transformer": 60.0, "finish": 5.0}, enabled=False)
    bar = display.stage_bar("tokenizer", total=10, initial=4)  # a resumed stage starts where it was
    assert display.done == pytest.approx(12.0)
    bar.update(6)
    bar.set_postfix(loss="0.1234")
    assert display.done == pytest.approx(30.0) and display.description == "[1/4] tokenizer step 10/10 loss 0.1234"
    display.begin("tokens")
    assert display.description == "[2/4] tokens"
    display.end("tokens")
    assert display.done == pytest.approx(35.0)
    resumed = RunDisplay({"tokenizer": 30.0, "tokens": 5.0, "transformer": 60.0}, stages_done=("tokenizer", "tokens"),
                         enabled=False)
    assert resumed.done == 35.0


def test_a_resumed_stage_does_not_count_its_earlier_steps_towards_the_pace():
    from maskgit.training.progress import RunDisplay

    display = RunDisplay({"tokenizer": 100.0}, enabled=True)
    display.stage_bar("tokenizer", total=100, initial=90)  # 90 steps were done by an earlier process
    bar = display._bar
    bar.start_t -= 10.0  # this process then ran for 10 s ...
    display.update(1)  # ... and did one step
    meter = bar.format_dict
    assert meter["n"] == pytest.approx(91.0) and meter["initial"] == pytest.approx(90.0)
    rate = (meter["n"] - meter["initial"]) / meter["elapsed"]
    assert rate == pytest.approx(0.1, rel=0.05)  # one planned second per 10 s, so 9 steps take ~90 s
    assert "01:3" in str(bar)  # [.. elapsed, 01:30 left] give or take the test's own time
    display.finish()
