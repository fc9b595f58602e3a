"""Mean-field theory against independent answers: closed forms, Gauss–Hermite where it is exact,
numpy Monte Carlo with numpy's own φ and φ′, plain iteration of the length map, and the weights
that `core.lab.models` actually draws."""

import math

import numpy as np
import pytest
import torch
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import ndtr

from core.init import meanfield as mf
from core.lab.config import RunConfig
from core.lab.models import build_model

SELU_ALPHA, SELU_SCALE = 1.6732632423543772848, 1.0507009873554804934  # Klambauer et al.
NUMPY = {  # φ and φ′ written independently of core.activations
    "tanh": (np.tanh, lambda h: 1 - np.tanh(h) ** 2),
    "relu": (lambda h: np.maximum(h, 0), lambda h: (h > 0).astype(float)),
    "sigmoid": (lambda h: 1 / (1 + np.exp(-h)),
                lambda h: np.exp(-h) / (1 + np.exp(-h)) ** 2),
    "elu": (lambda h: np.where(h > 0, h, np.expm1(np.minimum(h, 0))),
            lambda h: np.where(h > 0, 1.0, np.exp(np.minimum(h, 0)))),
    "selu": (lambda h: SELU_SCALE * np.where(h > 0, h, SELU_ALPHA * np.expm1(np.minimum(h, 0))),
             lambda h: SELU_SCALE * np.where(h > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(h, 0)))),
    "gelu": (lambda h: h * ndtr(h),
             lambda h: ndtr(h) + h * np.exp(-h * h / 2) / np.sqrt(2 * np.pi)),
    "softplus": (lambda h: np.logaddexp(0, h), lambda h: 1 / (1 + np.exp(-h))),
    "linear": (lambda h: h, lambda h: np.ones_like(h)),
    "silu": (lambda h: h / (1 + np.exp(-h)),
             lambda h: (1 + np.exp(-h) + h * np.exp(-h)) / (1 + np.exp(-h)) ** 2),
}


@pytest.fixture(scope="module")
def z():
    return np.random.default_rng(0).standard_normal(500_000)


@pytest.mark.parametrize("name", sorted(NUMPY))
@pytest.mark.parametrize("q,mean", [(0.04, 0.0), (1.0, 0.0), (9.0, 0.0), (100.0, 0.0),
                                    (1.0, 0.5), (25.0, -1.0)])
def test_moments_match_monte_carlo(z, name, q, mean):
    phi, dphi = NUMPY[name]
    h = mean + math.sqrt(q) * z
    for quad, samples in ((mf.second_moment(name, q, mean)[0], phi(h) ** 2),
                          (mf.slope_moment(name, q, mean)[0], dphi(h) ** 2)):
        se = samples.std() / math.sqrt(len(samples))
        assert abs(quad - samples.mean()) < 5 * se + 1e-12, (name, q, mean, quad, samples.mean())


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "gelu", "softplus", "silu"])
@pytest.mark.parametrize("q", [0.01, 0.3, 1.0])
def test_moments_match_gauss_hermite_where_it_is_exact(name, q):
    # Smooth integrands on the Gaussian's own scale: 120-point Gauss–Hermite is exact to ~1e-12.
    x, w = hermegauss(120)
    w = w / math.sqrt(2 * math.pi)
    phi, dphi = NUMPY[name]
    assert mf.second_moment(name, q)[0] == pytest.approx(np.sum(w * phi(math.sqrt(q) * x) ** 2),
                                                         rel=1e-10)
    assert mf.slope_moment(name, q)[0] == pytest.approx(np.sum(w * dphi(math.sqrt(q) * x) ** 2),
                                                        rel=1e-10)


def test_gauss_hermite_alone_fails_where_the_composite_rule_does_not():
    # Why the module does not use plain Gauss–Hermite: at q = 100 tanh's φ′² is a spike.
    exact = mf.slope_moment("tanh", 100.0)[0]
    x, w = hermegauss(128)
    gh = np.sum(w / math.sqrt(2 * math.pi) * (1 - np.tanh(10 * x) ** 2) ** 2)
    # E[sech⁴(10 z)] = ∫ sech⁴(u) du / (10 √(2π)) · (1 + O(1/100)) = (4/3) / (10 √(2π)) …
    assert exact == pytest.approx(4 / 3 / (10 * math.sqrt(2 * math.pi)), rel=0.02)
    assert abs(gh - exact) / exact > 0.3


@pytest.mark.parametrize("q", [1e-6, 0.3, 1.0, 50.0, 1e6])
@pytest.mark.parametrize("sw", [0.5, 2.0, 3.0])
def test_relu_and_linear_closed_forms(q, sw):
    # ReLU: E[φ′²] = 1/2 and E[φ²] = q/2 for every q; linear: 1 and q.
    assert mf.chi("relu", q, sw)[0] == pytest.approx(sw / 2, rel=1e-12)
    assert mf.second_moment("relu", q)[0] == pytest.approx(q / 2, rel=1e-12)
    assert mf.chi("linear", q, sw)[0] == pytest.approx(sw, rel=1e-12)
    assert mf.length_map("linear", q, sw, 0.1)[0] == pytest.approx(sw * q + 0.1, rel=1e-12)


def test_tanh_at_sigma_w2_one_is_critical_with_q_star_zero():
    m = mf.mean_field("tanh", 1.0, 0.0)
    assert m.q_star == pytest.approx(0.0, abs=1e-12)
    assert m.chi1 == pytest.approx(1.0, abs=1e-9)
    assert m.phase == "critical" and math.isinf(m.depth_scale)


@pytest.mark.parametrize("sw", [0.3, 0.7, 0.95])
def test_tanh_below_one_orders_to_zero_with_chi_sigma_w2(sw):
    m = mf.mean_field("tanh", sw, 0.0)
    assert m.q_star == pytest.approx(0.0, abs=1e-12)
    assert m.chi1 == pytest.approx(sw, rel=1e-9)   # φ′(0) = 1
    assert m.phase == "ordered"
    assert m.depth_scale == pytest.approx(-1 / math.log(sw))


@pytest.mark.parametrize("name,sw,sb,q_star", [
    ("relu", 1.5, 0.1, 0.1 / (1 - 1.5 / 2)),        # q = (σ_w²/2) q + σ_b²
    ("linear", 0.8, 0.1, 0.1 / (1 - 0.8)),          # q = σ_w² q + σ_b²
    ("relu", 2.0, 0.0, 1.0),                        # every q is fixed: stays at q0
])
def test_fixed_point_closed_forms(name, sw, sb, q_star):
    assert mf.fixed_point(name, sw, sb) == pytest.approx(q_star, rel=1e-9)


@pytest.mark.parametrize("name,sw,sb,chi1", [("relu", 2.5, 0.1, 1.25), ("linear", 1.2, 0.0, 1.2),
                                            ("linear", 1.0, 0.1, 1.0), ("relu", 2.0, 0.1, 1.0)])
def test_diverging_variance_is_reported_not_crashed(name, sw, sb, chi1):
    m = mf.mean_field(name, sw, sb)
    assert math.isinf(m.q_star) and m.diverges
    assert m.chi1 == pytest.approx(chi1, rel=1e-9)
    assert m.phase == ("critical" if chi1 == 1.0 else "chaotic")


@pytest.mark.parametrize("name,sw,sb", [("tanh", 1.5, 0.05), ("tanh", 4.0, 0.3),
                                        ("sigmoid", 4.0, 0.0), ("elu", 1.5, 0.2),
                                        ("gelu", 2.0, 0.1), ("selu", 1.0, 0.0),
                                        ("relu", 1.2, 0.5)])
def test_fixed_point_is_where_plain_iteration_settles(name, sw, sb):
    q, previous = 1.0, math.nan
    for _ in range(1000):  # the slow way: far from criticality it converges
        q, previous = float(mf.length_map(name, q, sw, sb)[0]), q
    assert q == pytest.approx(previous, rel=1e-12)  # it has settled
    assert mf.fixed_point(name, sw, sb) == pytest.approx(q, rel=1e-9)


def test_fixed_point_from_zero_variance():
    # sigmoid(0) = 1/2: a layer of zeros still passes σ_w²/4 on, so q leaves 0.
    assert mf.fixed_point("sigmoid", 1.0, 0.0, q0=0.0) == pytest.approx(
        mf.fixed_point("sigmoid", 1.0, 0.0, q0=1e-9), rel=1e-9)
    assert mf.fixed_point("tanh", 1.5, 0.0, q0=0.0) == 0.0  # tanh(0) = 0: 0 stays fixed


def test_vectorised_fixed_points_equal_one_at_a_time():
    sw = np.array([0.5, 1.0, 1.8, 3.0, 6.0])
    sb = np.array([0.0, 0.02, 0.05, 0.1, 1.0])
    many = mf.fixed_points("tanh", sw, sb, q0=0.7)
    one = [mf.fixed_point("tanh", w, b, q0=0.7) for w, b in zip(sw, sb)]
    np.testing.assert_allclose(many, one, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name,sb,expected", [("tanh", 0.0, 1.0), ("relu", 0.0, 2.0),
                                              ("relu", 0.5, 2.0), ("linear", 0.0, 1.0),
                                              ("leaky_relu", 0.0, 2 / (1 + 0.01 ** 2))])
def test_critical_sigma_w2_known_values(name, sb, expected):
    assert mf.critical_sigma_w2(name, sb) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name,sb", [("tanh", 0.05), ("tanh", 1.0), ("elu", 0.3),
                                     ("selu", 0.1)])
def test_critical_sigma_w2_is_where_chi1_crosses_one(name, sb):
    # Found on the parametric line; checked with the fixed-point route (a second computation).
    sw = mf.critical_sigma_w2(name, sb)
    assert mf.mean_field(name, sw, sb).chi1 == pytest.approx(1.0, abs=1e-6)
    assert mf.mean_field(name, sw * 0.9, sb).chi1 < 1 < mf.mean_field(name, sw * 1.1, sb).chi1


def test_critical_line_interpolates_the_exact_values():
    line = mf.critical_line("tanh", [0.0, 0.05, 0.5])
    exact = [mf.critical_sigma_w2("tanh", b) for b in (0.0, 0.05, 0.5)]
    np.testing.assert_allclose(line["sigma_w2"], exact, rtol=1e-3)
    assert line["sigma_w2"].is_monotonic_increasing


def test_trajectory_follows_the_length_map_and_multiplies_chi():
    t = mf.trajectory("tanh", 1.7, 0.05, q1=0.9, depth=12)
    assert t["q"].iloc[0] == 0.9
    for a, b in zip(t["q"].iloc[:-1], t["q"].iloc[1:]):
        assert b == pytest.approx(1.7 * np.mean(np.tanh(math.sqrt(a) * _Z) ** 2) + 0.05,
                                  rel=5e-3)  # Monte Carlo with numpy
    g = t["grad_norm"].to_numpy()
    assert g[-1] == 1.0
    np.testing.assert_allclose(g[:-1] ** 2 / g[1:] ** 2, t["chi"].iloc[:-1], rtol=1e-10)
    assert t["q"].iloc[-1] == pytest.approx(mf.fixed_point("tanh", 1.7, 0.05), rel=0.05)


_Z = np.random.default_rng(1).standard_normal(400_000)


@pytest.mark.parametrize("init,expected", [("xavier_normal", 1.0), ("xavier_uniform", 1.0),
                                           ("he_normal", 2.0), ("he_uniform", 2.0),
                                           ("orthogonal", 1.0), ("normal_large", 256.0),
                                           ("normal_small", 256e-4), ("mean_field", 3.3),
                                           ("pytorch_default", 1 / 3)])
def test_init_sigma_w2_matches_the_weights_models_draws(init, expected):
    cfg = RunConfig(depth=3, width=256, init=init, sigma_w2=3.3)
    assert mf.init_sigma_w2(init, 256, 256, 3.3) == pytest.approx(expected)
    model = build_model(cfg, (64,), 10)
    w = model.layers["hidden2"].linear.weight.detach().double()  # square: 256 → 256
    assert float(256 * w.pow(2).mean()) == pytest.approx(expected, rel=0.03)
    w1 = model.layers["hidden1"].linear.weight.detach().double()  # 64 → 256
    assert float(64 * w1.pow(2).mean()) == pytest.approx(
        mf.init_sigma_w2(init, 64, 256, 3.3), rel=0.05)


def test_from_config_reads_init_and_biases():
    m = mf.from_config(RunConfig(activation="tanh", init="mean_field", sigma_w2=1.5,
                                 bias_init="normal", bias_value=0.05))
    assert (m.sigma_w2, m.sigma_b2, m.bias_mean) == (1.5, 0.05, 0.0)
    assert m.chi1 == pytest.approx(mf.mean_field("tanh", 1.5, 0.05).chi1)
    c = mf.from_config(RunConfig(activation="relu", bias_init="constant", bias_value=0.3))
    assert (c.sigma_w2, c.sigma_b2, c.bias_mean) == (2.0, 0.0, 0.3)
    # A constant bias shifts the mean: more of each ReLU's input is positive, χ > σ_w²/2.
    assert c.chi1 > 1.0


def test_pytorch_default_biases_have_the_variance_of_torchs_own():
    # U(±1/√n) has variance 1/(3n); torch's own nn.Linear draws the biases compared with.
    cfg = RunConfig(init="pytorch_default", bias_init="pytorch_default", width=128)
    for fan_in in (64, 128):
        torch.manual_seed(0)
        b = torch.nn.Linear(fan_in, 100_000).bias.detach().double()
        assert mf.bias_moments(cfg, fan_in) == (0.0, pytest.approx(float(b.var()), rel=0.02))
        assert mf.bias_moments(cfg, fan_in)[1] == pytest.approx(1 / (3 * fan_in))
    m = mf.from_config(cfg)
    assert (m.sigma_w2, m.sigma_b2) == (pytest.approx(1 / 3), pytest.approx(1 / 384))


def test_phase_names():
    assert [mf.phase(c) for c in (0.5, 0.99, 1.01, 1.5)] == [
        "ordered", "critical", "critical", "chaotic"]
    assert mf.depth_scale(0.0) == 0.0 and mf.depth_scale(math.e) == pytest.approx(1.0)


def test_quadrature_is_float64_torch_free_of_grad():
    # The theory must not leave autograd state behind (it runs next to a probe's backward).
    with torch.enable_grad():
        v = mf.second_moment("tanh", [0.5, 2.0])
    assert v.dtype == np.float64 and v.shape == (2,)
