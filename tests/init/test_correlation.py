"""ξ_c, the correlation depth scale: against a wide random network, Monte Carlo and the ordered
phase's closed relation to χ₁."""

from __future__ import annotations

import math

import pytest
import torch

from core.init import meanfield
from core.init.correlation import correlation, correlation_depth_scale

SIGMA_B2 = 0.05


@pytest.mark.parametrize("sigma_w2", [0.5, 1.0, 1.5])
def test_ordered_phase_inputs_merge_and_xi_c_is_the_gradient_s_depth_scale(sigma_w2):
    mf = meanfield.mean_field("tanh", sigma_w2, SIGMA_B2)
    c = correlation("tanh", sigma_w2, SIGMA_B2)
    assert c.c_star == 1.0 and c.chi_c == pytest.approx(mf.chi1)
    assert c.depth_scale == pytest.approx(mf.depth_scale) == pytest.approx(-1 / math.log(mf.chi1))


@pytest.mark.parametrize("sigma_w2", [2.5, 4.0])
def test_chaotic_fixed_point_and_chi_c_match_monte_carlo(sigma_w2):
    """The map's fixed point and slope from 5·10⁵ Gaussian pairs drawn by torch."""
    c = correlation("tanh", sigma_w2, SIGMA_B2)
    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(2, 500_000, generator=gen, dtype=torch.float64)
    u1 = math.sqrt(c.q_star) * z1
    u2 = math.sqrt(c.q_star) * (c.c_star * z1 + math.sqrt(1 - c.c_star ** 2) * z2)
    mapped = (sigma_w2 * torch.tanh(u1) * torch.tanh(u2) + SIGMA_B2) / c.q_star
    slope = sigma_w2 * (1 - torch.tanh(u1) ** 2) * (1 - torch.tanh(u2) ** 2)
    assert 0 < c.c_star < 1
    for sample, exact in ((mapped, c.c_star), (slope, c.chi_c)):   # within 4 standard errors
        error = float(sample.std()) / math.sqrt(len(sample))
        assert float(sample.mean()) == pytest.approx(exact, abs=4 * error)
    assert c.depth_scale == pytest.approx(-1 / math.log(c.chi_c))


def test_two_inputs_through_a_wide_random_network_settle_at_c_star():
    """Independent of the theory's integrals: 800 tanh units, 40 layers, weights N(0, σ_w²/n),
    biases N(0, σ_b²); the correlation of two inputs, averaged over the last 25 layers."""
    sigma_w2, n = 2.5, 800
    gen = torch.Generator().manual_seed(1)
    h = torch.randn(2, n, generator=gen)
    seen = []
    for layer in range(40):
        w = torch.randn(n, n, generator=gen) * math.sqrt(sigma_w2 / n)
        b = torch.randn(n, generator=gen) * math.sqrt(SIGMA_B2)
        h = torch.tanh(h) @ w.T + b
        if layer >= 15:
            seen.append(float(torch.corrcoef(h)[0, 1]))
    assert sum(seen) / len(seen) == pytest.approx(correlation("tanh", sigma_w2, SIGMA_B2).c_star,
                                                  abs=0.04)


def test_xi_c_diverges_at_the_critical_line_from_both_sides():
    critical = meanfield.critical_sigma_w2("tanh", SIGMA_B2)
    near = [correlation_depth_scale("tanh", critical + d, SIGMA_B2) for d in (-0.01, 0.01)]
    far = [correlation_depth_scale("tanh", s, SIGMA_B2) for s in (1.0, 4.0)]
    assert min(near) > 100 > 10 > max(far)
