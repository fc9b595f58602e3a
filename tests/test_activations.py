"""Closed-form derivatives agree with autograd; the flat regions match the textbook thresholds."""

import math

import numpy as np
import pytest
import torch

from core import activations
from core.activations import ACTIVATIONS


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_derivative_matches_autograd(name):
    z = torch.linspace(-8, 8, 2001, dtype=torch.float64, requires_grad=True)
    f = activations.make(name).double()
    (auto,) = torch.autograd.grad(f(z).sum(), z)
    closed = activations.derivative(name, z.detach())
    mask = z.detach().abs() > 1e-9  # kinks at 0 (relu & co) have a one-sided derivative
    assert torch.allclose(closed[mask], auto[mask], atol=1e-10)


def test_tanh_saturates_at_the_usual_threshold():
    z = torch.linspace(-5, 5, 200_001, dtype=torch.float64)
    sat = activations.flat("tanh", z)
    boundary = torch.tanh(z[~sat]).abs().max().item()
    assert boundary == pytest.approx(0.97, abs=0.001)  # |tanh z| > 0.97 is saturated


def test_sigmoid_threshold_and_relu_half_line():
    z = torch.linspace(-10, 10, 200_001, dtype=torch.float64)
    edge = z[~activations.flat("sigmoid", z)].abs().max().item()
    # s(1-s) = 0.06 * 0.25 solved for z: ln((1+sqrt(1-4c))/(1-sqrt(1-4c))) with c = 0.015
    c = 0.015
    expected = math.log((1 + math.sqrt(1 - 4 * c)) / (1 - math.sqrt(1 - 4 * c)))
    assert edge == pytest.approx(expected, abs=1e-3)
    relu_sat = activations.flat("relu", z)
    assert torch.equal(relu_sat, z <= 0)
    assert not activations.flat("linear", z).any()


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_the_saturation_edge_gives_the_derivative_definitions_mask(name):
    # The recorder tests |z| > edge for these; it must be the same mask as |f'(z)| < 6% max.
    z = torch.cat([torch.linspace(-12, 12, 1_000_001), torch.tensor([float("inf"),
                                                                    -float("inf"), 1e30])])
    by_definition = activations.derivative(name, z).abs() < activations.flat_threshold(name)
    assert torch.equal(activations.flat(name, z), by_definition)
    assert not activations.flat(name, torch.tensor([float("nan")])).any()
    with pytest.raises(ValueError):
        activations.saturation_edge("relu")


def test_each_activation_names_its_flat_region_once():
    assert activations.flat_region("sigmoid") == activations.flat_region("tanh") == "saturation"
    for name in ("relu", "leaky_relu", "elu", "gelu", "selu", "softplus", "silu"):
        assert activations.flat_region(name) == "inactive", name
    assert activations.flat_region("linear") is None
    with pytest.raises(ValueError):
        activations.flat_region("banana")


def test_max_slope_known_values():
    assert activations.max_slope("sigmoid") == pytest.approx(0.25)
    assert activations.max_slope("tanh") == pytest.approx(1.0)
    assert activations.max_slope("selu") == pytest.approx(activations.SELU_SCALE
                                                          * activations.SELU_ALPHA, rel=1e-4)


def test_curve_gives_numpy_for_plots():
    c = activations.curve("sigmoid", np.linspace(-6, 6, 13))
    assert c["f"][6] == pytest.approx(0.5) and c["df"][6] == pytest.approx(0.25)
    assert c["flat"][0] and not c["flat"][6]


def test_unknown_activation_is_a_clear_error():
    with pytest.raises(ValueError, match="activation: 'banana'"):
        activations.make("banana")
