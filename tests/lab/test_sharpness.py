"""Sharpness: power iteration on Hessian-vector products against the exact Hessian, the
stability thresholds against torch.optim.SGD on a quadratic, and the Lab's opt-in recording."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.lab.config import RunConfig
from core.lab.doctor import diagnose
from core.lab.result import RunResult
from core.lab.sharpness import Sharpness, beyond_edge, criterion, top_eigenvalue
from core.lab.sharpness_chart import measured as sharpness_chart_applies
from core.lab.sharpness_chart import sharpness
from core.lab.trainer import train


def test_quadratic_with_a_known_spectrum():
    """½xᵀAx has Hessian A: the estimate is A's top eigenvalue."""
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    spectrum = torch.tensor([9.0, 4.0, 2.0, 1.0, 0.5, -1.0], dtype=torch.float64)
    a = q @ torch.diag(spectrum) @ q.T
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    value, v = top_eigenvalue(0.5 * x @ a @ x, [x], iterations=40)
    assert value.item() == pytest.approx(9.0, rel=1e-8)
    assert abs(float(v[0] @ q[:, 0])) == pytest.approx(1.0, rel=1e-6)


def test_tiny_mlp_against_the_exact_hessian():
    """A small tanh MLP's cross-entropy: torch.autograd.functional.hessian of the loss as a
    function of the flat parameter vector, its eigenvalues by eigvalsh."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x, y = torch.randn(16, 3, dtype=torch.float64), torch.randint(0, 3, (16,))
    shapes = [p.shape for p in model.parameters()]

    def loss_of(flat):
        params, at = {}, 0
        for (name, _), shape in zip(model.named_parameters(), shapes):
            params[name] = flat[at:at + shape.numel()].reshape(shape)
            at += shape.numel()
        return F.cross_entropy(torch.func.functional_call(model, params, (x,)), y)

    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    exact = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss_of, flat))
    top = exact[exact.abs().argmax()].item()
    estimator = Sharpness(model, every=1, iterations=200)
    estimator.measure(0, lambda: F.cross_entropy(model(x), y))
    assert estimator.table().sharpness.iloc[0] == pytest.approx(top, rel=1e-4)
    assert top == pytest.approx(exact.max().item())   # the top one is also the largest |λ|


@pytest.mark.parametrize("optimizer,beta,nesterov", [
    ("sgd", 0.0, False), ("momentum", 0.9, False), ("nesterov", 0.9, True),
    ("nesterov", 0.5, True)])
def test_thresholds_are_torch_sgds_stability_limit(optimizer, beta, nesterov):
    """On ½λx², torch.optim.SGD converges just below c/lr and diverges just above it."""
    lr = 0.1
    factor, _ = criterion(RunConfig(optimizer=optimizer, momentum=beta or 0.9, lr=lr))

    def grows(lam):
        x = nn.Parameter(torch.ones(1, dtype=torch.float64))
        opt = torch.optim.SGD([x], lr=lr, momentum=beta, nesterov=nesterov)
        for _ in range(300):
            opt.zero_grad()
            (0.5 * lam * x * x).sum().backward()
            opt.step()
        return abs(x.item()) > 1
    assert not grows(0.95 * factor / lr) and grows(1.05 * factor / lr)


def test_no_threshold_for_adaptive_optimizers():
    factor, why = criterion(RunConfig(optimizer="adam"))
    assert factor is None and "preconditioned" in why and "adam" in why


def _small(lr: float, seed: int, **kw) -> RunConfig:
    return RunConfig(optimizer="sgd", lr=lr, seed=seed, sharpness_every=2, max_train=256,
                     depth=2, width=32, epochs=2, **kw)


def test_lab_runs_train_bit_identically_with_sharpness_and_keep_it():
    """Batch norm's running statistics and dropout's random stream are restored after the
    estimate's extra forward pass."""
    cfg = _small(0.1, 0, batch_norm=True, dropout=0.2)
    plain, measured = train(cfg.replace(sharpness_every=None)), train(cfg)
    pd.testing.assert_frame_equal(plain.steps, measured.steps)
    pd.testing.assert_frame_equal(plain.layers, measured.layers)
    assert plain.sharpness.empty and measured.sharpness.step.tolist() == list(range(0, 8, 2))
    back = RunResult.from_dict(measured.to_dict())
    pd.testing.assert_frame_equal(back.sharpness, measured.sharpness, check_dtype=False)
    stored_before = {k: v for k, v in plain.to_dict().items() if k != "sharpness"}
    assert RunResult.from_dict(stored_before).sharpness.empty
    spec = sharpness(measured).to_dict()
    assert "2/lr" in str(spec) and sharpness_chart_applies(measured)
    assert not sharpness_chart_applies(plain)


@pytest.mark.parametrize("seed", range(5))
def test_doctor_tells_a_learning_rate_too_large_for_the_curvature(seed):
    """lr 4 on digits: the loss rises at once, with the sharpness far above 2/lr = 0.5 and the
    gradient not growing through depth. lr 0.5: the sharpness is above 2/lr = 4 too (SGD on
    mini-batches trains on there), but the loss falls: no finding from sharpness alone."""
    hot = train(_small(4.0, seed))
    found = {f.id: f for f in diagnose(hot)}
    assert "too_sharp" in found and "exploding" not in found
    edge = beyond_edge(hot)
    assert edge["sharpness"] >= 2 / 4.0 and edge["rise_loss"] > edge["start_loss"]
    assert f"{edge['sharpness']:.3g}" in found["too_sharp"].evidence
    assert found["too_sharp"].fixes[0].changes == {"lr": 0.4}
    calm = train(_small(0.5, seed))
    assert (calm.sharpness.sharpness >= 2 / 0.5).any()
    assert "too_sharp" not in {f.id for f in diagnose(calm)}


def test_no_finding_where_the_threshold_does_not_apply():
    run = train(_small(4.0, 0).replace(optimizer="adam", lr=1.0))
    assert beyond_edge(run) is None
    spec = sharpness(run).to_dict()
    assert spec["layer"][0]["encoding"]["color"]["scale"]["domain"] == ["sharpness"]
    assert "preconditioned" in " ".join(spec["title"]["subtitle"])
