"""Activation functions, their derivatives, and the one definition of a unit's flat region.

A unit is in its *flat region* where |f'(z)| < 6% of the largest |f'| of its activation: little
gradient passes through it. What that region is called depends on the activation, one word each:
  * *saturated* for the saturating activations (sigmoid, tanh), whose slope vanishes at both
    asymptotes: for tanh |tanh z| > 0.97, the usual threshold; for sigmoid |z| > 4.2;
  * *inactive* for the ReLU family (relu, leaky_relu, elu, selu, gelu, silu, softplus), whose
    slope vanishes on the negative side only: for ReLU every z ≤ 0, its zero region.
A unit is *dead* when it is in its flat region for every example of a fixed probe set (see
core.lab.recorder). The recorder, the charts and the Activations page all use `flat()`, so they
agree.

    f = make("tanh")                 # an nn.Module
    derivative("tanh", z)            # f'(z), closed form (checked against autograd in the tests)
    curve("sigmoid", np.linspace(-6, 6, 200))   # numpy f, f' and the saturated mask for plots

torch is imported where it is used, not at the top: Home and every settings form need only the
names below, and importing torch for them cost a cold server's first page ~1.1 s (-X importtime).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "selu", "softplus",
               "silu", "linear")

SATURATING = ("sigmoid", "tanh")   # flat at both asymptotes: their flat region is "saturated"
FLAT_FRACTION = 0.06  # |f'| below this share of max |f'|: the flat region
LEAKY_SLOPE = 0.01          # torch's default negative slope
# SELU's fixed constants (Klambauer et al. 2017), as torch.nn.SELU uses them.
SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805



def _check(name: str) -> None:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: {name!r} is not one of {', '.join(ACTIVATIONS)}")


def make(name: str) -> nn.Module:
    """A fresh torch module for the activation."""
    from torch import nn
    _check(name)
    if name == "leaky_relu":
        return nn.LeakyReLU(LEAKY_SLOPE)
    return {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU,
            "gelu": nn.GELU, "selu": nn.SELU, "softplus": nn.Softplus, "silu": nn.SiLU,
            "linear": nn.Identity}[name]()


def derivative(name: str, z: torch.Tensor) -> torch.Tensor:
    """f'(z) in closed form: cheap enough to evaluate on every recorded batch."""
    import torch
    _check(name)
    if name == "sigmoid":
        s = torch.sigmoid(z)
        return s * (1 - s)
    if name == "tanh":
        return 1 - torch.tanh(z) ** 2
    if name == "relu":
        return (z > 0).to(z.dtype)
    if name == "leaky_relu":
        return torch.where(z > 0, 1.0, LEAKY_SLOPE).to(z.dtype)
    if name == "elu":
        return torch.where(z > 0, torch.ones_like(z), torch.exp(z))
    if name == "gelu":
        pdf = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
        return cdf + z * pdf
    if name == "selu":
        return SELU_SCALE * torch.where(z > 0, torch.ones_like(z), SELU_ALPHA * torch.exp(z))
    if name == "softplus":
        return torch.sigmoid(z)
    if name == "silu":
        s = torch.sigmoid(z)
        return s * (1 + z * (1 - s))
    return torch.ones_like(z)  # linear


@functools.cache
def max_slope(name: str) -> float:
    """The largest |f'(z)| over z, found on a fine grid (exact to ~1e-6 for these functions)."""
    import torch
    z = torch.linspace(-30, 30, 600_001, dtype=torch.float64)
    return float(derivative(name, z).abs().max())


def flat_threshold(name: str) -> float:
    return FLAT_FRACTION * max_slope(name)


# |f'| of these is even in z and falls as |z| grows, so "saturated" is |z| beyond one edge.
_EVEN_FALLING = ("sigmoid", "tanh")


@functools.cache
def saturation_edge(name: str) -> float:
    """For sigmoid and tanh: the |z| beyond which |f'(z)| < the saturation threshold, found by
    bisection on the derivative itself, so the mask stays the one definition above."""
    import torch
    if name not in _EVEN_FALLING:
        raise ValueError(f"{name} has no single saturation edge")
    lo, hi, t = 0.0, 30.0, flat_threshold(name)
    for _ in range(60):
        mid = (lo + hi) / 2
        slope = float(derivative(name, torch.tensor(mid, dtype=torch.float64)).abs())
        lo, hi = (lo, mid) if slope < t else (mid, hi)
    return hi


def flat_region(name: str) -> str | None:
    """The word for the activation's flat region: "saturation" for sigmoid and tanh, "inactive"
    for the ReLU family, None for linear (it has none). It is also the recorder's metric name."""
    _check(name)
    return None if name == "linear" else "saturation" if name in SATURATING else "inactive"


def flat(name: str, z: torch.Tensor) -> torch.Tensor:
    """Boolean mask: where the unit's pre-activation z passes little gradient (saturated or
    inactive, as `flat_region` names it)."""
    import torch
    if name == "linear":
        return torch.zeros_like(z, dtype=torch.bool)
    if name == "relu":  # f' is 0 or 1, so this is the same mask in one op (it runs every step)
        return ~(z > 0)
    if name in _EVEN_FALLING:  # two passes instead of the derivative's five (a recorded step)
        return z.abs() > saturation_edge(name)
    return derivative(name, z).abs() < flat_threshold(name)


def curve(name: str, z: np.ndarray) -> dict[str, np.ndarray]:
    """f(z), f'(z) and the flat-region mask as numpy arrays, for plotting without torch."""
    import torch
    zt = torch.as_tensor(np.asarray(z, dtype=np.float64))
    with torch.no_grad():
        f = make(name)(zt)
    return {"z": zt.numpy(), "f": f.numpy(), "df": derivative(name, zt).numpy(),
            "flat": flat(name, zt).numpy()}
