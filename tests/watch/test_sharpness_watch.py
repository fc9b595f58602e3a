"""watch(sharpness_every=N): the estimate leaves the user's training exactly as it was."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.watch import watch


def _train(sharpness_every):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2),
                          nn.Linear(8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    data = torch.Generator().manual_seed(1)
    with watch(model, optimizer, every=3, sharpness_every=sharpness_every) as w:
        for _ in range(7):
            x, y = torch.randn(16, 4, generator=data), torch.randint(0, 3, (16,), generator=data)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            w.after_backward(loss, lambda: F.cross_entropy(model(x), y))
            optimizer.step()
    return model, w.result()


def test_weights_bit_identical_with_and_without_sharpness():
    plain, run = _train(None)
    measured, sharp_run = _train(2)
    for a, b in zip(plain.state_dict().values(), measured.state_dict().values()):
        assert torch.equal(a, b)   # weights, batch-norm statistics; and so the optimizer's steps
    assert run.sharpness.empty
    assert sharp_run.sharpness.step.tolist() == [0, 2, 4, 6]
    assert (sharp_run.sharpness.sharpness > 0).all()
    assert sharp_run.config.momentum == 0.9 and not sharp_run.config.nesterov
    back = type(sharp_run).from_dict(sharp_run.to_dict())
    assert back.sharpness.equals(sharp_run.sharpness)


def test_a_due_step_without_closure_says_what_to_pass():
    model = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="closure"):
        with watch(model, sharpness_every=1) as w:
            loss = model(torch.ones(1, 2)).sum()
            loss.backward()
            w.after_backward(loss)
    with pytest.raises(ValueError, match="sharpness_every"):
        watch(model, sharpness_every=0)
