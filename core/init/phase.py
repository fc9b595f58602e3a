"""The (σ_w², σ_b²) phase diagram of a network at initialisation: predicted and measured
‖δ_1‖/‖δ_L‖ cell by cell, with the critical line where χ₁ = 1 (Poole et al. 2016; Schoenholz
et al. 2016). No training.

    d = phase_diagram(cfg, [0.5, 1, 2, 4], [0, 0.05, 0.5])
    d.cells, d.critical
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from core.activations import derivative
from core.init import meanfield
from core.init.probe import _check, inputs
from core.lab.config import RunConfig
from core.lab.models import Network, build_model


@dataclass(frozen=True, eq=False)
class PhaseDiagram:
    # sigma_w2, sigma_b2, predicted, measured (‖δ_1‖/‖δ_L‖), log10_predicted, log10_measured,
    # chi1, q_star, phase: one row per cell
    cells: pd.DataFrame
    critical: pd.DataFrame      # sigma_b2, sigma_w2: where χ₁ = 1
    config: RunConfig           # the network of every cell, with σ_w² = σ_b² = 1
    seconds: float


def phase_config(cfg: RunConfig, sigma_w2: float, sigma_b2: float) -> RunConfig:
    """The plain MLP of `cfg` with W ~ N(0, σ_w²/fan_in) and b ~ N(0, σ_b²): one cell."""
    return cfg.replace(model="mlp", batch_norm=False, init="mean_field", sigma_w2=sigma_w2,
                       bias_init="normal", bias_value=sigma_b2)


def phase_diagram(cfg: RunConfig, sigma_w2_values: Sequence[float],
                  sigma_b2_values: Sequence[float], *, n_inputs: int = 32,
                  width: int | None = None) -> PhaseDiagram:
    """Predicted and measured ‖δ_1‖/‖δ_L‖ over a (σ_w², σ_b²) grid at cfg's depth and width.

    Every cell is `phase_config(cfg, σ_w², σ_b²)`, built with cfg's seed. nn.init draws the same
    standard normals whatever the std, so cell (σ_w², σ_b²)'s weights are √σ_w² times, and its
    biases √σ_b² times, those of the σ_w² = σ_b² = 1 network: one network is built and all the
    cells run side by side as a batch (the tests check a cell against `probe`). Cost grows as
    cells × depth × width² × n_inputs: a 10×10 grid at depth 30, width 128 takes ~0.4 s;
    `width` overrides cfg.width (theory does not depend on it) to keep big nets immediate.
    """
    start = time.perf_counter()
    grid = [(float(w), float(b)) for b in sigma_b2_values for w in sigma_w2_values]
    if not grid:
        raise ValueError("phase_diagram needs at least one σ_w² and one σ_b²")
    for w, b in grid:
        phase_config(cfg, w, b)  # ConfigError names the field of a value out of range
    base = phase_config(cfg, 1.0, 1.0)
    if width is not None:
        base = base.replace(width=width)
    _check(base, n_inputs)
    x, y, info = inputs(base, n_inputs)
    model = build_model(base, info.input_shape, info.n_classes)
    sw = np.array([w for w, _ in grid])
    sb = np.array([b for _, b in grid])
    measured = _grad_ratios(model, base.activation, x, y, sw, sb)

    q1 = sw * float(x.double().pow(2).mean()) + sb
    _, chis = meanfield.trajectories(base.activation, sw, sb, q1, base.depth)
    predicted = meanfield.grad_profile(chis)[:, 0]
    q_star = meanfield.fixed_points(base.activation, sw, sb, q0=q1)
    chi1 = meanfield.chi(base.activation, q_star, sw)
    with np.errstate(divide="ignore", invalid="ignore"):
        cells = pd.DataFrame({
            "sigma_w2": sw, "sigma_b2": sb, "predicted": predicted, "measured": measured,
            "log10_predicted": np.log10(predicted), "log10_measured": np.log10(measured),
            "chi1": chi1, "q_star": q_star, "phase": [meanfield.phase(c) for c in chi1]})
    b_lo, b_hi = float(sb.min()), float(sb.max())
    line_b = np.linspace(b_lo, b_hi, 41) if b_hi > b_lo else [b_lo]
    critical = meanfield.critical_line(base.activation, line_b)
    return PhaseDiagram(cells, critical, base, time.perf_counter() - start)


_CHUNK = 1 << 23  # floats of stored pre-activations per batch of cells (32 MB)


def _grad_ratios(model: Network, activation: str, x: torch.Tensor, y: torch.Tensor,
                 sw: np.ndarray, sb: np.ndarray) -> np.ndarray:
    """‖∂L/∂h_1‖/‖∂L/∂h_L‖ of every cell's network (weights × √σ_w², biases × √σ_b²).

    Forward and backward by hand, the cells stacked on a leading axis: the same chain rule as
    autograd (δ_l = φ′(h_l) ⊙ W_{l+1}ᵀ δ_{l+1}) without one graph per cell.
    """
    layers = list(model.layers.values())
    weights = [layer.linear.weight.detach() for layer in layers]
    biases = [layer.linear.bias.detach() for layer in layers]
    n, depth = len(x), len(layers) - 1
    per_cell = n * max(w.shape[0] for w in weights) * depth
    step = max(1, _CHUNK // per_cell)
    phi = layers[0].act
    out = []
    with torch.no_grad():
        for lo in range(0, len(sw), step):
            w_scale = torch.tensor(np.sqrt(sw[lo:lo + step]), dtype=torch.float32)[:, None, None]
            b_scale = torch.tensor(np.sqrt(sb[lo:lo + step]), dtype=torch.float32)[:, None, None]
            a = x.flatten(1).expand(len(w_scale), -1, -1)
            hs = []
            for w, b in zip(weights, biases):
                h = w_scale * (a @ w.T) + b_scale * b
                hs.append(h)
                a = phi(h)
            logits = hs.pop()
            # d(mean cross-entropy)/d logits, per cell: (softmax − one-hot) / n.
            delta = torch.softmax(logits, dim=-1)
            delta[:, torch.arange(n), y] -= 1.0
            delta = delta / n
            norms = []
            for i in range(depth - 1, -1, -1):
                delta = derivative(activation, hs[i]) * (w_scale * (delta @ weights[i + 1]))
                if i in (0, depth - 1):
                    norms.append(delta.flatten(1).norm(dim=1))
            last, first = norms
            out.append((first / last).numpy().astype(np.float64))
    return np.concatenate(out)
