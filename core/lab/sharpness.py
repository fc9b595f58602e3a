"""Sharpness: the top eigenvalue of the loss's Hessian, by power iteration on Hessian-vector
products, and the step size it allows.

    estimator = Sharpness(model, every=10)
    estimator.measure(step, lambda: F.cross_entropy(model(x), y))   # on a due step
    estimator.table()          # step, sharpness: one host copy of everything measured since

`top_eigenvalue` differentiates the loss once with `create_graph=True` and then takes a fixed
number of Hessian-vector products by double backward (`torch.autograd.grad`), which never touches
`.grad`: the loop's own gradients, its optimizer state and (restored here) its buffers and random
state are as they were, so a run trains bit-identically with or without it. Power iteration finds
the eigenvalue of largest magnitude: the top one where the negative eigenvalues are small next
to the positive outliers, as Sagun et al. 2017 and Ghorbani et al. 2019 measured in trained
networks (and tests/lab/test_sharpness.py's tiny MLP has); a negative value would be shown as
measured. Each estimate starts from the last one's eigenvector, so a few iterations suffice once the
direction is found. No host sync: the values stay device tensors until `take()`.

The criterion (`criterion`, `thresholds`): gradient descent with step size η on a quadratic is stable along a
direction of curvature λ only while λ < 2/η; full-batch GD drives the sharpness up to 2/η and
hovers there (the *edge of stability*, Cohen et al. 2021). With heavy-ball momentum β (torch's
SGD momentum) the limit is (2+2β)/η (ibid.), with torch's Nesterov (2+2β)/((1+2β)η), from the
same linear recurrence on a quadratic; both checked with torch.optim.SGD on ½λx² in
tests/lab/test_sharpness.py. SGD's weight decay wd adds wd
to every curvature, so the loss's own sharpness is held to the limit minus wd. For adaptive
optimizers (Adam, AdamW, RMSprop, Adagrad) the raw sharpness is not the criterion: their step is
preconditioned, and it is the preconditioned sharpness that sits at (2+2β₁)/((1−β₁)η) (Cohen et
al. 2022, adaptive edge of stability), so no line is drawn and the doctor says nothing there.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.lab.config import RunConfig

ITERATIONS = 20        # Hessian-vector products per estimate (warm-started, see above)
SHARPNESS_EXAMPLES = 1024   # the Lab's fixed batch: the first training examples
WHERE_NOT = ("no threshold for {optimizer}: its step is preconditioned, so the criterion is "
             "the preconditioned sharpness against (2+2β₁)/((1−β₁)·lr) (Cohen et al. 2022), "
             "not this raw one")


def top_eigenvalue(loss: torch.Tensor, params: list[torch.Tensor], iterations: int = ITERATIONS,
                   start: list[torch.Tensor] | None = None
                   ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(λ, v): the Rayleigh quotient vᵀHv of the loss's Hessian H over `params` after
    `iterations` power steps from `start` (random when None), and the unit vector v it was taken
    at. `loss` must still have its graph. A device tensor; nothing here waits for the device."""
    grads = torch.autograd.grad(loss, params, create_graph=True, materialize_grads=True)
    v = start if start is not None else [torch.randn_like(p) for p in params]
    v = _unit(v)
    value = torch.zeros((), device=loss.device)
    for _ in range(iterations):
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True,
                                 materialize_grads=True)
        value = sum((h * u).sum() for h, u in zip(hv, v))
        v = _unit([h.detach() for h in hv])
    return value.detach(), v


def _unit(vectors: list[torch.Tensor]) -> list[torch.Tensor]:
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(vectors)))
    # A zero Hessian-vector product (a flat loss) stays zero rather than becoming NaN.
    return torch._foreach_div(vectors, norm.clamp_min(torch.finfo(norm.dtype).tiny))


class Sharpness:
    """Every `every` steps, the top Hessian eigenvalue of a loss the caller recomputes."""

    def __init__(self, model: nn.Module, every: int, iterations: int = ITERATIONS):
        self.model, self.every, self.iterations = model, every, iterations
        self.params = [p for p in model.parameters() if p.requires_grad]
        self._vector: list[torch.Tensor] | None = None   # the last eigenvector: the next start
        self._pending: list[tuple[int, torch.Tensor]] = []
        self._host: list[tuple[int, float]] = []

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def measure(self, step: int, closure: Callable[[], torch.Tensor]) -> None:
        """The sharpness of `closure()`'s loss at the model's current weights, kept for step.
        Batch-norm running statistics and the random state (dropout) are restored after the
        extra forward pass, so the training that follows is the one without it."""
        if not callable(closure):
            raise TypeError("closure: sharpness needs a function that recomputes the step's "
                            "loss; with watch(sharpness_every=...), call "
                            "w.after_backward(loss, lambda: loss_fn(model(x), y))")
        buffers = [b.detach().clone() for b in self.model.buffers()]
        device = self.params[0].device
        if self._vector is None:   # a fixed start, drawn from a generator of its own
            draw = torch.Generator(device).manual_seed(0)
            self._vector = [torch.randn(p.shape, generator=draw, device=device, dtype=p.dtype)
                            for p in self.params]
        # Dropout in the closure draws from the global streams: they are put back as they were.
        on = [] if device.type == "cpu" else [device]
        with torch.random.fork_rng(on, device_type=device.type if on else "cuda"), \
                torch.enable_grad():
            value, self._vector = top_eigenvalue(closure(), self.params, self.iterations,
                                                 self._vector)
        if buffers:
            with torch.no_grad():
                torch._foreach_copy_(list(self.model.buffers()), buffers)
        self._pending.append((step, value.float()))

    def pending(self) -> list[torch.Tensor]:
        """The device values not yet copied (for a caller that copies them with its own)."""
        return [v.reshape(1) for _, v in self._pending]

    def take(self, host_values: list[float] | None = None) -> None:
        """Move the pending values to the host: from `host_values` (the caller's copy of
        `pending()`), else with one copy of their own."""
        if not self._pending:
            return
        if host_values is None:
            host_values = torch.cat(self.pending()).tolist()
        self._host += [(step, float(v)) for (step, _), v in zip(self._pending, host_values)]
        self._pending = []

    def table(self, last_step: float = math.inf) -> pd.DataFrame:
        """step, sharpness: every estimate up to `last_step` (a diverged run's last good one)."""
        self.take()
        rows = [(s, v) for s, v in self._host if s <= last_step]
        return pd.DataFrame({"step": np.array([s for s, _ in rows], dtype=np.int64),
                             "sharpness": np.array([v for _, v in rows], dtype=np.float64)})


def criterion(config) -> tuple[float | None, str]:
    """(c, label): the loss's sharpness is stable while below c/lr − weight_decay for this run's
    update rule, c's formula as the chart's legend writes it; (None, why not) where the raw
    sharpness is not the criterion. `config`: a RunConfig, or a watched loop's WatchedConfig
    (whose "sgd" carries the optimizer's own momentum and nesterov flag)."""
    optimizer = config.optimizer
    lab = isinstance(config, RunConfig)
    if optimizer not in ("sgd", "momentum", "nesterov"):
        return None, WHERE_NOT.format(optimizer=optimizer or "a loop without an optimizer")
    beta = float(config.momentum) if optimizer != "sgd" or not lab else 0.0
    if optimizer == "nesterov" or getattr(config, "nesterov", False):
        return (2 + 2 * beta) / (1 + 2 * beta), f"(2+2β)/((1+2β)·lr), β = {beta:g}"
    return (2 + 2 * beta, "2/lr") if beta == 0 else (2 + 2 * beta, f"(2+2β)/lr, β = {beta:g}")


def thresholds(steps: pd.DataFrame, config) -> pd.Series | None:
    """The stability threshold of the loss's sharpness at every step, from the step's own
    learning rate (a schedule moves it), indexed by step; None where none applies."""
    factor, _ = criterion(config)
    if factor is None or steps.empty:
        return None
    lr = steps.set_index("step")["lr"].astype(float)
    return factor / lr - float(getattr(config, "weight_decay", 0.0))


def beyond_edge(result) -> dict | None:
    """The first estimate at or above the threshold after which, before the next estimate, the
    training loss rose above its value at the first step (or stopped being finite): {step,
    sharpness, threshold, label, rise_step, rise_loss, start_loss}; None where none did, or
    where no threshold applies. A sharpness above the line alone is not reported: SGD on
    mini-batches trains on above it (measured: 2/lr = 4 on digits, sharpness 5-13, loss falling)."""
    limit = thresholds(result.steps, result.config)
    if limit is None or result.sharpness.empty or result.steps.empty:
        return None
    loss = result.steps.set_index("step")["loss"].astype(float)
    start = float(loss.iloc[0])
    measured = result.sharpness.set_index("step")["sharpness"].astype(float)
    ends = [*measured.index[1:], math.inf]
    for (step, value), end in zip(measured.items(), ends):
        line = float(limit.get(step, math.nan))
        if not value >= line:
            continue
        window = loss[(loss.index > step) & (loss.index <= end)]
        risen = window[~(window < start)]   # above the start, or NaN/inf
        if len(risen):
            _, label = criterion(result.config)
            return {"step": int(step), "sharpness": float(value), "threshold": line,
                    "label": label, "rise_step": int(risen.index[0]),
                    "rise_loss": float(risen.iloc[0]), "start_loss": start}
    return None
