"""The sampler comparison's rule for a model's default sampler (benchmarks/sampler_comparison.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "sampler_comparison.py"
RESULTS = ROOT / "benchmarks" / "results" / "sampler-comparison.json"


def _comparison():
    spec = importlib.util.spec_from_file_location("sampler_comparison", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(steps, guidance, fid, *, accuracy=0.95, speed=10.0):
    setting = {"sampler": "confidence", "num_steps": steps, "guidance": guidance, "guidance_schedule": "constant"}
    return {"setting": setting, "fid": fid, "accuracy": accuracy, "worst_class_accuracy": 0.8, "diversity": 0.9,
            "images_per_second": speed}


def test_the_default_is_the_lowest_fid_among_settings_that_meet_the_targets():
    comparison = _comparison()
    rows = [_row(8, 2.0, 3.0), _row(32, 4.0, 2.0), _row(12, 1.0, 1.5, accuracy=0.85)]  # the last misses accuracy
    assert comparison.pick_best(rows, 0.05) is rows[1]
    # Within the tolerance of the lowest FID, the fastest wins.
    rows.append(_row(16, 2.0, 2.05, speed=20.0))
    assert comparison.pick_best(rows, 0.05) is rows[3]
    assert comparison.pick_best(rows, 0.01) is rows[1]


def test_max_passes_keeps_slow_settings_from_becoming_the_default():
    comparison = _comparison()
    rows = [_row(8, 2.0, 3.0), _row(32, 4.0, 2.0), _row(16, 0.0, 2.5)]
    rule = comparison.Rule
    assert comparison.pick_best(rows, 0.05, rule(max_passes=16)) is rows[2]  # 16 unguided steps: 16 passes
    assert [row["fid"] for row in comparison.ranked(rows, rule(max_passes=16))] == [2.5, 3.0]
    assert comparison.pick_best(rows, 0.05, rule(max_passes=64)) is rows[1]
    # A budget no setting fits leaves every setting eligible rather than none.
    assert comparison.pick_best(rows, 0.05, rule(max_passes=4)) is rows[1]


def _guarded(comparison, **rule):
    default = _row(16, 2.0, 2.0, speed=4.0)
    default["worst_class_accuracy"] = 0.8
    return default, comparison.Rule(reference=comparison.key(default["setting"]), **rule)


def test_a_faster_default_must_beat_the_current_one_by_the_speedup_timed_in_the_same_run():
    comparison = _comparison()
    default, rule = _guarded(comparison, min_speedup=2.0)
    twice = _row(8, 2.0, 2.6, speed=8.0)   # exactly 2x as fast
    slower = _row(12, 2.0, 2.1, speed=7.9)  # better FID, but under 2x
    assert comparison.pick_best([default, slower, twice], 0.05, rule) is twice
    # Nothing fast enough: the current default stays, not the lowest FID of the slow ones.
    better = _row(32, 2.0, 1.5, speed=2.0)
    assert comparison.pick_best([default, better, slower], 0.05, rule) is default
    with pytest.raises(ValueError, match="reference"):
        comparison.pick_best([slower, twice], 0.05, rule)


@pytest.mark.parametrize(("accuracy", "worst", "fid", "kept"), [
    (0.94, 0.77, 2.2, True),     # 1 point, 3 points, 1.1x: at the edge
    (0.9399, 0.8, 2.0, False),   # accuracy more than a point lower
    (0.95, 0.7699, 2.0, False),  # the worst class more than 3 points lower
    (0.99, 0.9, 2.21, False),    # better classes do not buy a worse FID
])
def test_the_guard_keeps_the_current_defaults_quality(accuracy, worst, fid, kept):
    comparison = _comparison()
    default, rule = _guarded(comparison, min_speedup=1.5, guard=True)
    faster = _row(8, 2.0, fid, accuracy=accuracy, speed=6.0)
    faster["worst_class_accuracy"] = worst
    assert comparison.keeps_quality(faster, default) is kept
    assert comparison.pick_best([default, faster], 0.05, rule) is (faster if kept else default)



def test_every_stored_setting_still_builds_the_sampler_it_was_scored_with():
    # The results file holds, for every setting, the sampler that made its images: a setting that
    # built another sampler today would make the stored scores stale.
    comparison = _comparison()
    data = json.loads(RESULTS.read_text())
    rows = [*data["rows"], *data.get("confirmed", []), data["best"]]
    assert len(rows) > 100
    for row in rows:
        assert comparison.setting_sampler(row["setting"]).to_dict() == row["sampler"], row["setting"]


def test_save_default_records_the_best_sampler_in_the_pipeline_folders_index(tmp_path, small_pipeline):
    from maskgit.checkpoints.pipeline_folder import read_index
    from maskgit.sampling import HaltonSampler

    small_pipeline.save_pretrained(tmp_path / "model")
    best = HaltonSampler(num_steps=6, guidance=0.0)
    path = _comparison().save_default(tmp_path / "model", best.to_dict())
    assert path == tmp_path / "model" / "model_index.json"
    index = read_index(tmp_path / "model")
    assert index.sampler == best and index.class_names == small_pipeline.class_names
    with pytest.raises(SystemExit, match="--save-default: .*no model_index.json"):
        _comparison().save_default(tmp_path / "model" / "tokenizer", best.to_dict())


def test_context_reuse_is_an_axis_that_leaves_the_sweep_as_it_was_when_not_given():
    comparison = _comparison()
    axes = (("confidence", "halton"), (0.0, 2.0), ("constant", "linear"), (8, 16))
    plain = comparison.settings(*axes)
    assert len(plain) == 2 * (1 + 2) * 2 and all("context_reuse" not in setting for setting in plain)
    swept = comparison.settings(*axes, context_reuse=(0, 1, 3))
    assert len(swept) == 3 * len(plain)
    # Reuse 0 is the setting without the flag: a resumed sweep finds its rows already done.
    assert [s for s in swept if "context_reuse" not in s] == plain
    assert {comparison.key(s) for s in plain} <= {comparison.key(s) for s in swept}
    assert sorted({s.get("context_reuse", 0) for s in swept}) == [0, 1, 3]
    reused = next(s for s in swept if s.get("context_reuse") == 3)
    assert comparison.setting_sampler(reused).context_reuse == 3
    assert "context reuse 3" in comparison.sampler_label(reused)


def test_reuse_groups_add_the_grouped_rule_to_each_confidence_setting_with_context_reuse():
    comparison = _comparison()
    axes = (("confidence", "halton"), (2.0,), ("linear",), (8, 16))
    swept = comparison.settings(*axes, context_reuse=(0, 2))
    grouped = comparison.settings(*axes, context_reuse=(0, 2), reuse_groups=True)
    extra = [s for s in grouped if s not in swept]
    assert [s for s in grouped if not s.get("reuse_group")] == swept
    # One more for each confidence setting with reuse, none for reuse 0 or the Halton order.
    assert len(extra) == 2 and all(s["sampler"] == "confidence" and s["context_reuse"] == 2 for s in extra)
    sampler = comparison.setting_sampler(extra[0])
    assert sampler.chooses_groups and comparison.key(extra[0]) != comparison.key(dict(extra[0], reuse_group=False))
    assert comparison.sampler_label(extra[0]).endswith("context reuse 2 in groups")


def test_only_settings_in_the_pipelines_precision_can_become_the_default():
    # The default records a sampler, not a precision: an int8 row's sampler would run in fp32,
    # where it was never scored.
    comparison = _comparison()
    default = _row(16, 2.0, 2.0, speed=4.0)
    default["setting"]["precision"] = "fp32"
    rule = comparison.Rule(reference=comparison.key(default["setting"]), min_speedup=1.5, precision="fp32")
    int8 = _row(8, 2.0, 1.9, speed=9.0)
    int8["setting"]["precision"] = "int8"
    fp32 = _row(8, 2.0, 2.1, speed=7.0)
    fp32["setting"]["precision"] = "fp32"
    rows = [default, int8, fp32]
    assert comparison.pick_best(rows, 0.0, rule) is fp32
    assert comparison.pick_best(rows, 0.0, rule._replace(precision="int8")) is int8
    assert comparison.pick_best(rows, 0.0, rule._replace(precision=None)) is int8
    # Without the precision axis a setting has no field and runs in the pipeline's precision.
    plain = _row(8, 2.0, 1.8, speed=8.0)
    assert comparison.pick_best([*rows, plain], 0.0, rule) is plain


def test_the_temperature_pass_varies_only_the_temperatures():
    comparison = _comparison()
    best = {"sampler": "confidence", "num_steps": 12, "guidance": 2.0, "guidance_schedule": "linear",
            "context_reuse": 2, "reuse_group": True, "precision": "int8", "choice_temperature": 4.5}
    refined = comparison.temperature_settings(best)
    assert len(refined) == 3 * 5 and comparison.key(best) in {comparison.key(s) for s in refined}  # the same sampler
    assert {(s["softmax_temperature"], s["choice_temperature"]) for s in refined} == {
        (softmax, choice) for softmax in (0.8, 1.0, 1.2) for choice in (1.0, 2.0, 3.0, 4.5, 8.0)}
    for setting in refined:
        rest = {name: value for name, value in setting.items() if not name.endswith("temperature")}
        assert rest == {name: value for name, value in best.items() if not name.endswith("temperature")}
        assert comparison.setting_sampler(setting).reuse_group
    halton = comparison.temperature_settings({"sampler": "halton", "num_steps": 12, "guidance": 2.0,
                                              "guidance_schedule": "linear"})
    assert [s["softmax_temperature"] for s in halton] == [0.8, 1.0, 1.2]
    assert all("choice_temperature" not in s for s in halton)
