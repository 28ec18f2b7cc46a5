"""The sampler comparison's rule for a model's default sampler (benchmarks/sampler_comparison.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from maskgit import MaskGITTransformer, TransformerConfig
from maskgit.sampling import MASK_ID, SeededNoise, run_sampler

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sampler_comparison.py"
CONFIG = TransformerConfig(codebook_size=16, num_classes=3, hidden_size=32, num_layers=1, num_heads=2,
                           intermediate_size=64, latent_size=2, dropout=0.0, null_class=True)


def _comparison():
    spec = importlib.util.spec_from_file_location("sampler_comparison", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class CountingPasses(torch.nn.Module):
    """Wraps a transformer and counts the sequences it is run on."""

    def __init__(self, model: MaskGITTransformer) -> None:
        super().__init__()
        self.model, self.config, self.sequences = model, model.config, 0

    def forward(self, ids):
        self.sequences += ids.shape[0]
        return self.model(ids)


@pytest.mark.parametrize("setting", [
    {"sampler": "confidence", "num_steps": 8, "guidance": 0.0, "guidance_schedule": "constant"},
    {"sampler": "confidence", "num_steps": 8, "guidance": 2.0, "guidance_schedule": "constant"},
    {"sampler": "halton", "num_steps": 12, "guidance": 1.0, "guidance_schedule": "linear"},
    {"sampler": "random", "num_steps": 4, "guidance": 4.0, "guidance_schedule": "cosine"},
])
def test_transformer_passes_counts_what_the_engine_runs(setting):
    torch.manual_seed(0)
    counting = CountingPasses(MaskGITTransformer(CONFIG).eval())
    ids = torch.full((1, 1 + 4), MASK_ID, dtype=torch.long)
    ids[:, 0] = CONFIG.codebook_size + 1
    comparison = _comparison()
    run_sampler(counting, ids, comparison.setting_sampler(setting), SeededNoise([0]))
    assert comparison.transformer_passes(setting) == counting.sequences


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
    assert comparison.pick_best(rows, 0.05, max_passes=16) is rows[2]  # 16 unguided steps: 16 passes
    assert [row["fid"] for row in comparison.ranked(rows, max_passes=16)] == [2.5, 3.0]
    assert comparison.pick_best(rows, 0.05, max_passes=64) is rows[1]
    # A budget no setting fits leaves every setting eligible rather than none.
    assert comparison.pick_best(rows, 0.05, max_passes=4) is rows[1]
