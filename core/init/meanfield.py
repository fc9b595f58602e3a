"""Mean-field theory of a deep fully connected network at initialisation.

For a plain MLP whose weights are N(0, σ_w²/fan_in) and biases N(μ_b, σ_b²), the pre-activations
of a wide layer are Gaussian with a variance q that evolves layer by layer through the *length
map* (Poole et al. 2016, "Exponential expressivity in deep neural networks through transient
chaos"):

    q_{l+1} = V(q_l) = σ_w² E_z[φ(μ_b + √q_l z)²] + σ_b²,        z ~ N(0, 1)

towards a fixed point q*, and a back-propagated gradient's squared norm is multiplied at every
layer by (Schoenholz et al. 2016, "Deep information propagation")

    χ(q) = σ_w² E_z[φ′(μ_b + √q z)²],      χ₁ = χ(q*).

χ₁ < 1: ordered, gradients vanish over ξ_∇ = 1/|ln χ₁| layers; χ₁ > 1: chaotic, they explode;
χ₁ = 1: critical, they survive any depth. Biases are usually centred (μ_b = 0); a constant bias
(`bias_init=constant`) shifts every pre-activation's mean and is handled as μ_b.

    mf = mean_field("tanh", sigma_w2=1.5, sigma_b2=0.05)
    mf.q_star, mf.chi1, mf.depth_scale, mf.phase
    critical_sigma_w2("relu")            # 2.0: He initialisation
    from_config(cfg)                     # the theory of the net `core.lab.models.build_model` builds
    trajectory("tanh", 1.0, 0.0, q1=0.25, depth=30)   # q, χ and activation std layer by layer

φ and φ′ come from `core.activations`, so the theory and the measured network share one
definition of each activation.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from numpy.polynomial.legendre import leggauss

from core import activations
from core.lab.config import RunConfig

CRITICAL_TOL = 0.02   # |χ₁ − 1| below this is "critical": under 2% gradient change per layer
Q_DIVERGED = 1e30     # a variance this large means the length map has no finite fixed point
PHASES = ("ordered", "critical", "chaotic")

# --- Gaussian expectations --------------------------------------------------------------------
# Plain Gauss–Hermite quadrature (numpy's hermegauss) puts its nodes ~0.2 apart near z = 0. In
# the chaotic phase q* reaches 10–100, and there φ′(√q z)² is a spike of width 1/√q that those
# nodes step over: at q = 100, 128-point Gauss–Hermite misses tanh's χ by 80%. Kinks (ReLU,
# SELU's jump in φ′) cost it accuracy too. So we integrate z over [−Z, Z] with a composite
# Gauss–Legendre rule whose panel edges are graded on both scales at once: the Gaussian's
# (fixed z breakpoints) and the activation's (h breakpoints 0, ±1/8 … ±64, mapped to z). It is
# within ~1e-12 of adaptive quadrature at every q we meet; the tests compare it with
# Gauss–Hermite where that is exact, with closed forms, and with Monte Carlo.
Z_MAX = 10.0          # N(0,1) mass beyond ±10 is 1.5e-23
_Z_EDGES = np.array([0.0, *(s * v for v in (0.25, 0.5, 1, 1.5, 2, 3, 4, 5, 6, 8, Z_MAX)
                            for s in (-1, 1))])
_H_EDGES = np.array([0.0, *(s * 2.0 ** k for k in range(-3, 7) for s in (-1, 1))])
_GL_X, _GL_W = leggauss(8)


def gaussian_expectation(f: Callable[[torch.Tensor], torch.Tensor], q, mean: float = 0.0
                         ) -> np.ndarray:
    """E_z[f(mean + √q z)] for every variance in `q` (array-like ≥ 0), z ~ N(0, 1).

    `f` takes and returns a float64 torch tensor (an activation or its derivative).
    """
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    s = np.sqrt(np.maximum(q, 0.0))[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        z_of_h = np.where(s > 0, (_H_EDGES[None, :] - mean) / s, Z_MAX)
    edges = np.sort(np.concatenate(
        [np.broadcast_to(_Z_EDGES, (len(q), len(_Z_EDGES))), np.clip(z_of_h, -Z_MAX, Z_MAX)],
        axis=1), axis=1)
    a, b = edges[:, :-1, None], edges[:, 1:, None]           # panels; clipped ones are empty
    z = (a + b) / 2 + (b - a) / 2 * _GL_X
    w = (b - a) / 2 * _GL_W * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    h = torch.from_numpy(mean + s[:, :, None] * z)
    with torch.no_grad():
        values = f(h).numpy()
    return (w * values).sum(axis=(1, 2))


@functools.cache
def _phi(name: str) -> torch.nn.Module:
    return activations.make(name)


def second_moment(activation: str, q, mean: float = 0.0) -> np.ndarray:
    """E[φ(h)²] for h ~ N(mean, q)."""
    phi = _phi(activation)
    return gaussian_expectation(lambda h: phi(h) ** 2, q, mean)


def slope_moment(activation: str, q, mean: float = 0.0) -> np.ndarray:
    """E[φ′(h)²] for h ~ N(mean, q)."""
    return gaussian_expectation(lambda h: activations.derivative(activation, h) ** 2, q, mean)


def activation_std(activation: str, q, mean: float = 0.0) -> np.ndarray:
    """std of φ(h) for h ~ N(mean, q): what a layer's activations' std should be."""
    phi = _phi(activation)
    m1 = gaussian_expectation(phi, q, mean)
    return np.sqrt(np.maximum(second_moment(activation, q, mean) - m1 ** 2, 0.0))


def length_map(activation: str, q, sigma_w2, sigma_b2, mean: float = 0.0) -> np.ndarray:
    """V(q) = σ_w² E[φ(μ_b + √q z)²] + σ_b²: the next layer's pre-activation variance."""
    return np.asarray(sigma_w2) * second_moment(activation, q, mean) + np.asarray(sigma_b2)


def chi(activation: str, q, sigma_w2, mean: float = 0.0) -> np.ndarray:
    """χ(q) = σ_w² E[φ′(μ_b + √q z)²]: a layer's factor on the gradient's squared norm."""
    q = np.asarray(q, dtype=np.float64)
    return np.asarray(sigma_w2) * slope_moment(activation, np.minimum(q, Q_DIVERGED), mean)


# --- the fixed point --------------------------------------------------------------------------
_SCAN = 16.0 ** np.arange(1, 26)  # q0·16^±k: up to 16^25 ≈ 1e30 either way
_FROM_ZERO = np.logspace(-30, 30, len(_SCAN))
_ROOT_STEPS = 60                   # Illinois steps at most; most cells converge in ~10
_DIVERGENCE_TOL = 1e-9             # V(q) − q ≥ −1e-9·q: no crossing (quadrature noise is 1e-15)


def fixed_points(activation: str, sigma_w2, sigma_b2, *, mean: float = 0.0, q0=1.0
                 ) -> np.ndarray:
    """q* for each (σ_w², σ_b², q0) (broadcast): the fixed point that iterating V from q0 reaches.

    V is increasing in q, so iterating it moves monotonically from q0 to the nearest fixed
    point in the direction of V(q0) − q0: scan q0·16^±k that way for the first sign change of
    V(q) − q, then solve in that bracket (regula falsi, Illinois variant; all cells at once).
    No sign change upwards means q grows without bound (e.g. ReLU with σ_w² > 2, linear with
    σ_w² ≥ 1 and σ_b² > 0): q* = inf. Downwards the scan ends at q = 0, where V(0) ≥ 0 always
    holds. Iterating V instead would take thousands of layers near criticality, where q
    converges as a power law.
    """
    sw, sb, q0 = (a.astype(np.float64).ravel() for a in np.broadcast_arrays(
        np.asarray(sigma_w2, dtype=np.float64), np.asarray(sigma_b2, dtype=np.float64),
        np.asarray(q0, dtype=np.float64)))

    def gap(q: np.ndarray, rows) -> np.ndarray:  # V(q) − q; q has the cells on axis 0
        m2 = second_moment(activation, q.ravel(), mean)
        return sw[rows, None] * m2.reshape(q.shape) + sb[rows, None] - q

    every = np.arange(len(sw))
    g0 = gap(q0[:, None], every)[:, 0]
    up = g0 > 0
    grid = np.where(up[:, None], q0[:, None] * _SCAN, q0[:, None] / _SCAN)
    grid[up & (q0 == 0)] = _FROM_ZERO        # 0·16^k would stay at 0
    grid[~up, -1] = 0.0
    g = gap(grid, every)
    crossed = np.where(up[:, None], g <= -_DIVERGENCE_TOL * grid, g >= 0)
    found = crossed.any(axis=1)
    k = crossed.argmax(axis=1)
    # The bracket [lo, hi] with V − q ≥ 0 at lo and ≤ 0 at hi (V − q > 0 below the root).
    near = np.where(k == 0, q0, grid[every, np.maximum(k - 1, 0)])
    g_near = np.where(k == 0, g0, g[every, np.maximum(k - 1, 0)])
    far, g_far = grid[every, k], g[every, k]
    lo, hi = np.where(up, near, far), np.where(up, far, near)
    g_lo, g_hi = np.where(up, g_near, g_far), np.where(up, g_far, g_near)

    q_star = np.full(len(sw), np.inf)
    exact = np.abs(g0) <= 1e-12 * np.maximum(q0, 1e-300)
    q_star[exact] = q0[exact]
    todo = np.flatnonzero(found & ~exact)
    q_star[todo] = np.where(g_lo[todo] == 0, lo[todo], hi[todo])
    todo = todo[(g_lo[todo] != 0) & (g_hi[todo] != 0)]
    last = np.zeros(len(sw))                   # which end moved last (Illinois bookkeeping)
    for _ in range(_ROOT_STEPS):
        if not len(todo):
            break
        a, b, fa, fb = lo[todo], hi[todo], g_lo[todo], g_hi[todo]
        c = np.clip((a * fb - b * fa) / (fb - fa), a, b)
        fc = gap(c[:, None], todo)[:, 0]
        left = fc > 0                          # the root is right of c: c becomes lo
        lo[todo] = np.where(left, c, a)
        g_lo[todo] = np.where(left, fc, np.where(last[todo] == -1, fa / 2, fa))
        hi[todo] = np.where(left, b, c)
        g_hi[todo] = np.where(left, np.where(last[todo] == 1, fb / 2, fb), fc)
        last[todo] = np.where(left, 1, -1)
        q_star[todo] = c
        done = (fc == 0) | (hi[todo] - lo[todo] <= 1e-13 * hi[todo])
        todo = todo[~done]
    # Where V(0) = 0 (tanh-like φ(0) = 0, no bias), q* = 0 is a fixed point, and a root within
    # rounding of it (tanh at σ_w² = 1 approaches it as 1/(2l)) is that point.
    v0 = sw * float(second_moment(activation, 0.0, mean)[0]) + sb
    q_star[(v0 == 0) & (q_star <= 1e-12 * np.maximum(q0, 1.0))] = 0.0
    return q_star


def fixed_point(activation: str, sigma_w2: float, sigma_b2: float = 0.0, *, mean: float = 0.0,
                q0: float = 1.0) -> float:
    """q* for one setting (see `fixed_points`); inf when the pre-activations' variance diverges."""
    return float(fixed_points(activation, sigma_w2, sigma_b2, mean=mean, q0=q0)[0])


# --- the facts the page shows -----------------------------------------------------------------
def depth_scale(chi1: float) -> float:
    """ξ_∇ = 1/|ln χ₁|: layers over which ‖δ‖² changes by a factor e; inf at criticality.

    (Schoenholz et al. write ξ_∇ = −1/ln χ₁, negative in the chaotic phase; the phase says the
    direction here, so the scale is always ≥ 0.)
    """
    log = abs(math.log(chi1)) if chi1 > 0 else math.inf
    return math.inf if log < 1e-12 else 1.0 / log  # 1e-12: the quadrature's rounding


def phase(chi1: float, tol: float = CRITICAL_TOL) -> str:
    if abs(chi1 - 1.0) <= tol:
        return "critical"
    return "ordered" if chi1 < 1.0 else "chaotic"


@dataclass(frozen=True)
class MeanField:
    """What mean-field theory says about one (activation, σ_w², σ_b²)."""

    activation: str
    sigma_w2: float
    sigma_b2: float
    bias_mean: float     # μ_b: non-zero only for constant biases
    q_star: float        # fixed point of the length map; inf when the variance diverges
    chi1: float          # χ(q*): per-layer factor on ‖δ‖² once q has settled
    depth_scale: float   # 1/|ln χ₁| layers; inf at criticality
    phase: str           # ordered (vanishing) | critical | chaotic (exploding)

    @property
    def diverges(self) -> bool:
        return math.isinf(self.q_star)

    def to_dict(self) -> dict:
        return asdict(self)


def mean_field(activation: str, sigma_w2: float, sigma_b2: float = 0.0, *,
               bias_mean: float = 0.0, q0: float = 1.0) -> MeanField:
    """q*, χ₁, depth scale and phase; q0 is the first layer's variance (the start of the map)."""
    q_star = fixed_point(activation, sigma_w2, sigma_b2, mean=bias_mean, q0=q0)
    chi1 = float(chi(activation, q_star, sigma_w2, bias_mean)[0])
    return MeanField(activation, float(sigma_w2), float(sigma_b2), float(bias_mean), q_star,
                     chi1, depth_scale(chi1), phase(chi1))


# --- the critical line ------------------------------------------------------------------------
# From q* = 1e-8, not 0: at q = 0 exactly a kinked φ′ takes its value at the kink (leaky
# ReLU's 0.01), not the limit (1 + 0.01²)/2 that q → 0 approaches.
_CURVE_Q = np.logspace(-8, 8, 161)
_EPS = 1e-4  # relative step of the finite difference for V′(q*)


@functools.lru_cache(maxsize=64)
def _critical_curve(activation: str, mean: float) -> pd.DataFrame:
    """The critical line parametrised by q* (as Poole et al. draw it): χ(q*) = 1 and V(q*) = q*
    give σ_w² = 1/E[φ′²] and σ_b² = q* − σ_w² E[φ²] with no root finding.

    Only the fixed points that iterating V settles on count (V′(q*) ≤ 1): GELU and SiLU also
    have χ(0) = 1 at σ_w² = 4, σ_b² = 0, but q runs away from that q* = 0.
    """
    q = _CURVE_Q
    with np.errstate(divide="ignore", invalid="ignore"):
        sw = 1.0 / slope_moment(activation, q, mean)
        sb = q - sw * second_moment(activation, q, mean)
        up, down = (second_moment(activation, q * f, mean) for f in (1 + _EPS, 1 - _EPS))
        slope = sw * (up - down) / (2 * _EPS * q)
    # 1e-9: GELU's V′(1e-8) is 1 + 4e-8; the finite difference is good to ~1e-11.
    ok = (slope <= 1 + 1e-9) & np.isfinite(sw) & np.isfinite(sb)
    return pd.DataFrame({"q_star": q[ok], "sigma_w2": sw[ok], "sigma_b2": sb[ok]})


def critical_sigma_w2(activation: str, sigma_b2: float = 0.0, *, bias_mean: float = 0.0,
                      refine: bool = True) -> float:
    """The σ_w² at which χ₁ = 1 for this σ_b² (tanh, σ_b² = 0 → 1; ReLU → 2); NaN if none.

    The smallest q* on the parametric critical line whose σ_b²(q*) is the one asked for, solved
    exactly (`refine`) or interpolated between the line's points (plenty for drawing it).
    Homogeneous activations (ReLU, leaky ReLU, linear) have χ independent of q: their line is
    σ_b²(q*) = 0 for every q*, and for σ_b² > 0 q diverges while χ₁ stays 1, so the σ_w² of
    q* → ∞ is checked for that case.
    """
    curve = _critical_curve(activation, float(bias_mean))
    q, sw = curve["q_star"].to_numpy(), curve["sigma_w2"].to_numpy()
    d = curve["sigma_b2"].to_numpy() - sigma_b2
    hit = np.abs(d) <= 1e-12 * max(1.0, abs(sigma_b2))
    cross = np.concatenate([(d[:-1] * d[1:] < 0) & ~hit[1:], [False]])
    if (hit | cross).any():
        i = int(np.argmax(hit | cross))
        if hit[i]:
            return float(sw[i])
        if not refine:  # the root's q* interpolated log–log (σ_b² ∝ q*³ near 0), σ_w² there
            sb = d[i:i + 2] + sigma_b2
            t = (math.log(sigma_b2 / sb[0]) / math.log(sb[1] / sb[0]) if min(*sb, sigma_b2) > 0
                 else d[i] / (d[i] - d[i + 1]))
            q_root = q[i] * (q[i + 1] / q[i]) ** t
            return float(1.0 / slope_moment(activation, q_root, bias_mean)[0])

        def gap(log_q: float) -> float:
            qq = math.exp(log_q)
            w = 1.0 / float(slope_moment(activation, qq, bias_mean)[0])
            return qq - w * float(second_moment(activation, qq, bias_mean)[0]) - sigma_b2
        # Imported here: only a refined edge needs it, and scipy.optimize costs the page that
        # first imports this module ~0.5 s.
        from scipy.optimize import brentq
        root = brentq(gap, math.log(q[i]), math.log(q[i + 1]), xtol=1e-12)
        return float(1.0 / slope_moment(activation, math.exp(root), bias_mean)[0])
    candidate = float(1.0 / slope_moment(activation, Q_DIVERGED, bias_mean)[0])
    if math.isfinite(candidate) and abs(
            mean_field(activation, candidate, sigma_b2, bias_mean=bias_mean).chi1 - 1) < 1e-6:
        return candidate
    return math.nan


def critical_line(activation: str, sigma_b2_values, *, bias_mean: float = 0.0) -> pd.DataFrame:
    """Columns sigma_b2, sigma_w2: the critical σ_w² for each σ_b² (rows without one dropped)."""
    rows = [(float(b), critical_sigma_w2(activation, float(b), bias_mean=bias_mean,
                                         refine=False)) for b in sigma_b2_values]
    df = pd.DataFrame(rows, columns=["sigma_b2", "sigma_w2"])
    return df[np.isfinite(df["sigma_w2"])].reset_index(drop=True)


# --- layer by layer, at a finite depth --------------------------------------------------------
def trajectories(activation: str, sigma_w2, sigma_b2, q1, depth: int, *, mean: float = 0.0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(q, χ) per cell (rows, broadcast over σ_w², σ_b², q1) and layer (columns 1..depth).

    q_l is layer l's pre-activation variance from the length map started at q1 (inf once past
    Q_DIVERGED); χ(q_l) is the factor ‖δ_l‖²/‖δ_{l+1}‖², since δ_l = φ′(h_l) ⊙ W_{l+1}ᵀ δ_{l+1}
    and W_{l+1} has variance σ_w²/width.
    """
    sw, sb, q = (a.astype(np.float64).ravel() for a in np.broadcast_arrays(
        np.asarray(sigma_w2, dtype=np.float64), np.asarray(sigma_b2, dtype=np.float64),
        np.asarray(q1, dtype=np.float64)))
    qs = np.empty((len(sw), depth))
    for i in range(depth):
        qs[:, i] = q
        q = sw * second_moment(activation, np.minimum(q, Q_DIVERGED), mean) + sb
        q = np.where((q > Q_DIVERGED) | np.isinf(qs[:, i]), np.inf, q)
    chis = sw[:, None] * slope_moment(activation, np.minimum(qs, Q_DIVERGED).ravel(),
                                      mean).reshape(qs.shape)
    return qs, chis


def grad_profile(chis: np.ndarray) -> np.ndarray:
    """‖δ_l‖/‖δ_L‖ = √∏_{k=l}^{L−1} χ_k for each row of per-layer χ's (last column = 1)."""
    # A reversed cumulative sum of logs: the product spans hundreds of decades at depth 100.
    with np.errstate(divide="ignore"):
        log_chi = np.log(chis[:, :-1])
    tail = np.cumsum(log_chi[:, ::-1], axis=1)[:, ::-1]
    with np.errstate(over="ignore"):
        return np.exp(np.concatenate([tail, np.zeros((len(chis), 1))], axis=1) / 2)


def trajectory(activation: str, sigma_w2: float, sigma_b2: float, q1: float, depth: int, *,
               mean: float = 0.0) -> pd.DataFrame:
    """The theory of one network, layer by layer, from its first layer's variance q1.

    Columns: layer (1..depth), q, preact_std (√q), activation_std, chi (χ(q_l)), grad_norm
    (‖δ_l‖/‖δ_L‖). Once q has settled at q*, grad_norm changes by √χ₁ per layer; before
    that the transient (e.g. tanh's q ≈ 1/(2l) decay towards q* = 0) is part of the prediction.
    """
    qs, chis = trajectories(activation, sigma_w2, sigma_b2, q1, depth, mean=mean)
    q = qs[0]
    return pd.DataFrame({
        "layer": np.arange(1, depth + 1), "q": q, "preact_std": np.sqrt(q),
        "activation_std": np.where(np.isinf(q), np.inf, activation_std(
            activation, np.minimum(q, Q_DIVERGED), mean)),
        "chi": chis[0], "grad_norm": grad_profile(chis)[0],
    })


# --- what each RunConfig init means as σ_w² ---------------------------------------------------
def init_sigma_w2(init: str, fan_in: int, fan_out: int, sigma_w2: float = 2.0) -> float:
    """σ_w² (= fan_in · Var(W_ij)) of a fan_in → fan_out layer under `core.lab.models`' schemes.

    Mean-field theory needs only the variance (the pre-activations are Gaussian by the central
    limit theorem), so the uniform schemes match their normal twins.
    """
    match init:
        case "zeros":
            return 0.0
        case "normal_small":
            return 1e-4 * fan_in                         # std 0.01
        case "normal_large":
            return float(fan_in)                         # std 1
        case "xavier_normal" | "xavier_uniform":
            return 2.0 * fan_in / (fan_in + fan_out)     # Var = 2/(fan_in + fan_out)
        case "he_normal" | "he_uniform":
            return 2.0                                   # Var = 2/fan_in
        case "orthogonal":
            # Orthonormal rows (fan_out ≤ fan_in): Var = 1/fan_in. Orthonormal columns
            # (fan_out > fan_in): Var = 1/fan_out.
            return min(1.0, fan_in / fan_out)
        case "mean_field":
            return float(sigma_w2)
        case "pytorch_default":
            return 1.0 / 3.0                             # U(±1/√fan_in): Var = 1/(3·fan_in)
    raise ValueError(f"init: unknown scheme {init!r}")


def bias_moments(cfg: RunConfig, fan_in: int) -> tuple[float, float]:
    """(μ_b, σ_b²) of the biases of a layer with `fan_in` inputs per unit, as
    `core.lab.models._init_bias` draws them."""
    match cfg.bias_init:
        case "constant":
            return float(cfg.bias_value), 0.0
        case "normal":
            return 0.0, max(float(cfg.bias_value), 0.0)
        case "pytorch_default":
            return 0.0, 1.0 / (3.0 * fan_in)             # U(±1/√fan_in)
    return 0.0, 0.0


def from_config(cfg: RunConfig, *, q0: float = 1.0) -> MeanField:
    """The theory of the config's hidden stack (its square width → width layers)."""
    mean, sigma_b2 = bias_moments(cfg, cfg.width)
    sigma_w2 = init_sigma_w2(cfg.init, cfg.width, cfg.width, cfg.sigma_w2)
    return mean_field(cfg.activation, sigma_w2, sigma_b2, bias_mean=mean, q0=q0)
