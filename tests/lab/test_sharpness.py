"""Sharpness: power iteration on Hessian-vector products against the exact Hessian, the
stability thresholds against torch.optim.SGD on a quadratic, and the Lab's opt-in recording."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.lab.config import RunConfig
from core.lab.sharpness import Sharpness, criterion, top_eigenvalue


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
        for _ in range(600):
            opt.zero_grad()
            (0.5 * lam * x * x).sum().backward()
            opt.step()
        return abs(x.item()) > 1
    assert not grows(0.99 * factor / lr) and grows(1.01 * factor / lr)


def test_no_threshold_for_adaptive_optimizers():
    factor, why = criterion(RunConfig(optimizer="adam"))
    assert factor is None and "preconditioned" in why and "adam" in why
