"""runs/run.py: a run's images depend on their index only, whatever the batches and the shards; a
killed run resumes from its manifest and writes only what is missing; the seed rule; and a progress
bar whose total is the whole run's from the start."""

from __future__ import annotations

import json

import pytest
import torch

from evaluation_helpers import png_contents
from maskgit.imageio import load_image
from maskgit.runs import OutputFolder, Run, RunPlan, read_manifest, resolve_seed
from maskgit.runs.manifest import MANIFEST, GenerateSettings
from maskgit.sampling import ConfidenceSampler


@pytest.fixture(scope="module")
def sampler():
    return ConfidenceSampler(num_steps=2)


def test_images_depend_on_the_index_only_whatever_the_batches_and_shards(tmp_path, shipped_pipeline, sampler):
    run = Run(RunPlan((0, 3, 9), 3), sampler, seed=5)
    assert run.write(shipped_pipeline, tmp_path / "one", batch_size=4) == list(range(9))
    for rank in range(3):  # three "processes", one after another, with another batch size
        run.write(shipped_pipeline, tmp_path / "three", batch_size=2, rank=rank, world_size=3)
    one = png_contents(tmp_path / "one")
    assert len(one) == 9 and one == png_contents(tmp_path / "three")
    # The images are the ones generate() makes for those indices, and differ from one another.
    expected = shipped_pipeline.generate([9], sampler=sampler, seed=5, image_indices=[7])[0]
    assert torch.allclose(load_image(tmp_path / "one" / "0009" / "0001.png"), expected, atol=0.5 / 255 + 1e-6)
    assert len(set(one.values())) == 9
    # In memory, the same loop: what the sampler comparison scores.
    batches = list(run.images(shipped_pipeline, [7, 8], batch_size=1))
    assert [indices for indices, _ in batches] == [[7], [8]]
    assert torch.allclose(batches[0][1][0], expected, atol=1e-6)


def _settings(run: Run, batch_size: int) -> GenerateSettings:
    return GenerateSettings(model="fashion-mnist", batch_size=batch_size, seed=run.seed, sampler=run.sampler.to_dict(),
                            classes=run.plan.classes, per_class=run.plan.per_class,
                            class_names=tuple(f"class {c}" for c in run.plan.classes))


def test_a_killed_run_resumes_from_its_manifest_and_makes_only_what_is_missing(tmp_path, shipped_pipeline, sampler):
    run = Run(RunPlan((1, 2), 3), sampler, seed=0)
    run.write(shipped_pipeline, tmp_path / "whole", batch_size=2)
    out = tmp_path / "out"
    calls = []

    def dies_on_the_second_batch(indices, callback):
        calls.append(indices)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return run.generator(shipped_pipeline)(indices, callback)

    with pytest.raises(KeyboardInterrupt):
        with OutputFolder(out, _settings(run, 2), run.plan.paths, run.plan.paths).open():
            run.write(shipped_pipeline, out, batch_size=2, make=dies_on_the_second_batch)
    assert read_manifest(out).complete is False and sorted(png_contents(out)) == ["0001/0000.png", "0001/0001.png"]
    (out / "0001" / ".0001.png.x.tmp").write_bytes(b"half")  # what a kill during a write leaves
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}

    # Resumed with another batch size (not compared): the rest is made, and only the rest.
    folder = OutputFolder(out, _settings(run, 3), run.plan.paths, run.plan.paths, resume=True)
    with folder.open():
        assert run.write(shipped_pipeline, out, batch_size=3) == [2, 3, 4, 5]
        folder.finish()
    # The same tokens; another batch size may round a pixel of the decoder's output by one level.
    assert sorted(png_contents(out)) == sorted(png_contents(tmp_path / "whole"))
    for name in run.plan.paths:
        assert torch.allclose(load_image(out / name), load_image(tmp_path / "whole" / name), atol=1 / 255 + 1e-6)
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())  # nothing written twice
    manifest = read_manifest(out)
    assert manifest.complete and manifest.settings == _settings(run, 3) and list(manifest.outputs) == run.plan.paths
    assert not list(out.rglob("*.tmp"))
    # Without resume, every image is made again.
    assert run.write(shipped_pipeline, out, batch_size=6, resume=False) == list(range(6))


def test_the_seed_rule(tmp_path):
    assert resolve_seed(7) == (7, False)
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -1"):
        resolve_seed(-1)
    seed, drawn = resolve_seed(None, tmp_path, resume=False)
    assert drawn and 0 <= seed < 2**63
    # Resuming without a seed takes the recorded one; a folder that records none is refused.
    run = Run(RunPlan((0,), 1), ConfidenceSampler(), seed=123)
    with OutputFolder(tmp_path / "run", _settings(run, 1), run.plan.paths, run.plan.paths).open():
        pass  # the manifest is written before any image
    (tmp_path / "run" / "0000").mkdir()
    (tmp_path / "run" / "0000" / "0000.png").write_bytes(b"png")  # so that the manifest stays
    assert resolve_seed(None, tmp_path / "run", resume=True) == (123, False)
    (tmp_path / "fresh").mkdir()
    with pytest.raises(ValueError, match="fresh/manifest.json records none; give the seed that run printed"):
        resolve_seed(None, tmp_path / "fresh", resume=True)
    data = json.loads((tmp_path / "run" / MANIFEST).read_text())
    data["settings"]["seed"] = "123"
    (tmp_path / "run" / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ValueError, match="records none"):
        resolve_seed(None, tmp_path / "run", resume=True)


def test_an_editing_run_shows_every_window_of_every_batch_from_the_start(tmp_path, shipped_pipeline, capsys):
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    extend = (0, 16, 0, 16)  # 4 tokens on each side: two windows, the middle one known
    unknown = torch.ones(8, 16, dtype=torch.bool)
    unknown[:, 4:12] = False
    sampler = ConfidenceSampler(num_steps=3)
    run = Run(RunPlan((4,), 3, prefix="outpaint"), sampler, seed=2, unknown=unknown)

    def make(indices, callback):
        return shipped_pipeline.outpaint(image, extend, 4, num_samples=len(indices), image_indices=indices,
                                         sampler=sampler, seed=2, callback=callback)

    assert run.write(shipped_pipeline, tmp_path, batch_size=2, make=make, progress="outpaint") == [0, 1, 2]
    # 2 batches x 2 windows x 3 steps, counted before the first: the total never grows.
    bar = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if line.startswith("outpaint:")]
    assert " 0/12 " in bar[0] and " 12/12 " in bar[-1] and all("/12 " in line for line in bar)
    # The samples of a batch of two are those of one call making all three.
    whole = make([0, 1, 2], None)
    for index in range(3):
        assert torch.allclose(load_image(tmp_path / f"outpaint_{index:04d}.png"), whole[index], atol=1 / 255 + 1e-6)
    run.save_grid(tmp_path, tmp_path / "grid.png")
    assert load_image(tmp_path / "grid.png").shape[0] == 3
