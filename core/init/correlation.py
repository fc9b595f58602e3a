"""How two inputs' correlation propagates through a deep random network, and its depth scale ξ_c
(Schoenholz et al. 2016, "Deep information propagation", after Poole et al. 2016).

Two inputs whose pre-activations have variance q* (the length map's fixed point, see
core.init.meanfield) and correlation c map to the next layer's correlation

    c_{l+1} = (σ_w² E[φ(u₁) φ(u₂)] + σ_b²) / q*,   u₁ = √q* z₁,  u₂ = √q* (c z₁ + √(1−c²) z₂)

and a small gap from its fixed point c* shrinks by χ_c = σ_w² E[φ′(u₁) φ′(u₂)] (at c = c*) per
layer: the network tells two inputs apart over about ξ_c = −1/ln χ_c layers. In the ordered
phase c* = 1 and χ_c = χ₁, so ξ_c is the gradient's depth scale ξ_∇; in the chaotic phase
c* < 1 and the two differ. ξ_c diverges at the critical line, and the paper finds networks
trainable up to about 6ξ_c layers.

    correlation_depth_scale("tanh", sigma_w2=2.5, sigma_b2=0.05)   # ≈ 11.8 layers
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from core import activations
from core.init import meanfield

# A tensor-product rule on a uniform z grid: for these Gaussian-weighted smooth integrands the
# trapezoid rule converges geometrically. 401 points agree with 1,201 to 1e-11 in ξ_c for tanh
# up to σ_w² = 8 (q* ≈ 6, where φ′'s spike is ~9 grid steps wide); the tests check against
# Monte Carlo with torch and a wide random network.
_Z = np.linspace(-9.0, 9.0, 401)
_W = np.exp(-_Z ** 2 / 2)
_W /= _W.sum()
_ROOT_STEPS = 40   # Illinois steps at most; c* settles to 1e-12 in about ten


@dataclass(frozen=True)
class Correlation:
    sigma_w2: float
    sigma_b2: float
    q_star: float
    c_star: float        # the correlation two distinct inputs settle at (1 when ordered)
    chi_c: float         # per-layer factor on a small gap from c*
    depth_scale: float   # ξ_c = −1/ln χ_c layers; inf at the critical line


def _pair_expectation(f, q: float, c: float) -> float:
    """E[f(u₁) f(u₂)] for (u₁, u₂) Gaussian with variances q and correlation c."""
    s = math.sqrt(q)
    z1, z2 = _Z[:, None], _Z[None, :]
    with torch.no_grad():
        a = f(torch.from_numpy(s * _Z)).numpy()
        b = f(torch.from_numpy(s * (c * z1 + math.sqrt(max(1 - c * c, 0.0)) * z2))).numpy()
    return float((_W[:, None] * a[:, None] * b * _W[None, :]).sum())


def correlation(activation: str, sigma_w2: float, sigma_b2: float) -> Correlation:
    """c*, χ_c and ξ_c of one (activation, σ_w², σ_b²) with centred Gaussian biases."""
    q_star = meanfield.fixed_point(activation, sigma_w2, sigma_b2)
    chi1 = float(meanfield.chi(activation, q_star, sigma_w2)[0])
    if chi1 <= 1.0:   # ordered or critical: c* = 1 is stable and χ_c = χ₁
        return Correlation(sigma_w2, sigma_b2, q_star, 1.0, chi1, meanfield.depth_scale(chi1))
    phi = activations.make(activation)
    slope = lambda h: activations.derivative(activation, h)  # noqa: E731
    # Chaotic: c = 1 repels (the map's slope there is χ₁ > 1), so the map lies below the
    # diagonal just under 1 and, at c = 0, at σ_b²/q* ≥ 0 above it: solve for the crossing
    # (regula falsi, Illinois variant, as meanfield.fixed_points).
    def gap(c: float) -> float:
        return (sigma_w2 * _pair_expectation(phi, q_star, c) + sigma_b2) / q_star - c
    lo, hi = 0.0, 1.0 - 1e-6
    g_lo, g_hi = gap(lo), gap(hi)
    c_star, side = lo, 0
    for _ in range(_ROOT_STEPS):
        c_star = hi - g_hi * (hi - lo) / (g_hi - g_lo)
        g = gap(c_star)
        if abs(g) < 1e-12:
            break
        if (g > 0) == (g_lo > 0):
            lo, g_lo = c_star, g
            g_hi = g_hi / 2 if side == -1 else g_hi
            side = -1
        else:
            hi, g_hi = c_star, g
            g_lo = g_lo / 2 if side == 1 else g_lo
            side = 1
    chi_c = sigma_w2 * _pair_expectation(slope, q_star, c_star)
    return Correlation(sigma_w2, sigma_b2, q_star, c_star, chi_c, meanfield.depth_scale(chi_c))


def correlation_depth_scale(activation: str, sigma_w2: float, sigma_b2: float) -> float:
    """ξ_c in layers (see `correlation`)."""
    return correlation(activation, sigma_w2, sigma_b2).depth_scale
