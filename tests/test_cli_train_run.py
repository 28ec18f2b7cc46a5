"""``maskgit train``: one command from a folder of images to a model that ``generate`` takes."""

from __future__ import annotations

import json

import pytest

from maskgit.cli import main
from maskgit.data.synthetic import write_shapes_folder
from train_run_helpers import TINY_SETTINGS, assert_refused, set_flags, tiny_flags


@pytest.mark.slow
def test_one_command_makes_a_model_that_generate_takes(tmp_path, shapes, capsys):
    run = tmp_path / "run"
    assert main(["train", str(shapes), "--out", str(run), "--quiet", *tiny_flags()]) == 0
    out = capsys.readouterr().out
    # The recipe is printed before training, and saved.
    assert out.index("transformer  ") < out.index("tokenizer: done")
    recipe = json.loads((run / "recipe.json").read_text())
    assert recipe["recipe"]["tokenizer"]["steps"] == 4 and recipe["data"]["class_names"] == ["green-square", "purple-triangle", "red-disc"]
    assert recipe["recipe"]["transformer"]["model"]["null_class"]
    report = json.loads((run / "report.json").read_text())
    assert set(report["stage_seconds"]) == {"tokenizer", "tokens", "transformer", "finish"}
    assert 0 < report["tokenizer"]["psnr"] < 100 and -1 <= report["tokenizer"]["ssim"] <= 1
    assert 0 <= report["transformer"]["masked_accuracy"] <= 1 and report["transformer"]["sequences"] == 3
    assert (run / "samples.png").stat().st_size > 0
    index = json.loads((run / "pipeline" / "model_index.json").read_text())
    assert index["class_names"] == ["green-square", "purple-triangle", "red-disc"]
    assert index["sampler"]["guidance"] == 2.0 and index["sampler"]["num_steps"] == 4

    # generate takes the model by class name, with guidance (class dropout is on by default).
    assert main(["generate", "--model", str(run / "pipeline"), "--class", "red-disc", "--guidance", "2", "--num", "2",
                 "--seed", "0", "--out", str(tmp_path / "samples"), "--quiet"]) == 0
    assert len(list((tmp_path / "samples" / "0002").glob("*.png"))) == 2

    # The same command again with --resume is accepted: everything is done, nothing changes.
    before = (run / "pipeline" / "transformer" / "model.safetensors").read_bytes()
    assert main(["train", str(shapes), "--out", str(run), "--quiet", "--resume", *tiny_flags()]) == 0
    assert "already done" in capsys.readouterr().out
    assert (run / "pipeline" / "transformer" / "model.safetensors").read_bytes() == before

    # Without --resume, or with other settings, it is refused.
    assert main(["train", str(shapes), "--out", str(run), "--quiet", *tiny_flags()]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", str(shapes), "--out", str(run), "--quiet", "--resume", *tiny_flags("seed=3")]) == 2
    assert "was started with other settings" in capsys.readouterr().err


@pytest.mark.parametrize("problem, message", [
    ("empty", "no images (png, jpg"),
    ("few", "6 images; at least 16 are needed"),
    ("unreadable", "1 unreadable image file: "),
])
def test_bad_data_is_one_line_and_writes_nothing(tmp_path, capsys, problem, message):
    data = tmp_path / "data"
    data.mkdir()
    if problem == "few":
        write_shapes_folder(data, per_class=2, size=16)
    elif problem == "unreadable":
        write_shapes_folder(data, per_class=6, size=16)
        (data / "red-disc" / "broken.png").write_bytes(b"nope")
    run = tmp_path / "run"
    assert main(["train", str(data), "--out", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("maskgit train: error: ") and message in err and len(err.splitlines()) == 1
    assert not run.exists()


def test_bad_requests_are_refused_before_anything_is_written(tmp_path, shapes, capsys):
    assert_refused(capsys, shapes, tmp_path / "run", [
        (["--budget", "soon"], "give a duration such as"),
        (["--image-size", "48"], "power of two from 16 to 1024"),
        (["--set", "transformer.stepz=3"], "unknown key 'stepz'"),
        (["--set", "tokenizer.model.image_size=64"], "--image-size"),
        (["--init", str(tmp_path / "absent")], "absent"),
    ])


def test_a_budget_becomes_steps_that_fit_it_and_dry_run_writes_nothing(tmp_path, shapes, capsys):
    run = tmp_path / "run"
    tiny_models = set_flags(setting for setting in TINY_SETTINGS if ".steps=" not in setting)
    assert main(["train", str(shapes), "--out", str(run), "--quiet", "--budget", "2m", "--dry-run", *tiny_models]) == 0
    out = capsys.readouterr().out
    expected = next(line for line in out.splitlines() if line.startswith("expected"))
    assert expected.startswith(("expected     1 min 5", "expected     2 min 0")) and "of a 2 min 00 s budget" in expected
    recipe = json.loads(out[out.index("{"):])
    assert recipe["tokenizer"]["steps"] > 20 and recipe["transformer"]["steps"] > 20
    assert not run.exists()
