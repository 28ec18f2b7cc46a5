"""training/ema.py: the warmed-up exponential moving average of a model's weights."""

from __future__ import annotations

import pytest
import torch

from maskgit.training.ema import EMA


def test_ema_warms_up_and_tracks_the_weights():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.99)
    initial = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # the first decay is min(0.99, 1/10) = 0.1
    torch.testing.assert_close(ema.model.weight, 0.1 * initial + 0.9)
    assert ema.num_updates == 1 and ema.current_decay() == pytest.approx(2 / 11)
    for _ in range(2000):
        ema.update(model)
    assert ema.current_decay() == 0.99
    torch.testing.assert_close(ema.model.weight, torch.ones(2, 2))
    restored = EMA(torch.nn.Linear(2, 2), decay=0.99)
    restored.load_state_dict(ema.state_dict())
    assert restored.num_updates == 2001 and torch.equal(restored.model.weight, ema.model.weight)


def test_without_warmup_each_update_is_the_polyak_formula():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.9, warmup=False)
    average = {name: value.clone() for name, value in model.state_dict().items()}
    for step in range(3):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter))
        ema.update(model)
        for name, value in model.state_dict().items():
            average[name] = 0.9 * average[name] + 0.1 * value
            torch.testing.assert_close(ema.model.state_dict()[name], average[name], rtol=0, atol=1e-6)
        assert ema.current_decay() == 0.9 and ema.num_updates == step + 1


def test_the_average_is_a_frozen_eval_copy_and_integer_buffers_are_copied():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)).train()
    ema = EMA(model, decay=0.5, warmup=False)
    assert not ema.model.training and all(not p.requires_grad for p in ema.model.parameters())
    assert ema.model[0].weight.data_ptr() != model[0].weight.data_ptr()
    model(torch.randn(4, 2))  # BatchNorm counts a batch: an int64 buffer
    model(torch.randn(4, 2))
    ema.update(model)
    assert ema.model[1].num_batches_tracked.item() == 2  # copied, not averaged to 1
    expected = 0.5 * torch.ones(2) + 0.5 * model[1].running_var
    torch.testing.assert_close(ema.model[1].running_var, expected)


@pytest.mark.parametrize("decay", [1.0, -0.1, 1.5])
def test_a_decay_outside_zero_to_one_is_refused(decay):
    with pytest.raises(ValueError, match=f"EMA decay must be in \\[0, 1\\), got {decay}"):
        EMA(torch.nn.Linear(1, 1), decay=decay)
