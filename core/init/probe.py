"""The network at initialisation, measured and set beside mean-field theory. No training.

`probe(cfg)` builds exactly the network `core.lab.models.build_model(cfg, …)` builds for training
(same init, same seed), feeds it a batch of real standardised inputs from `cfg.dataset`, back-
propagates the training loss, and records per hidden layer what mean-field theory predicts
(`core.init.meanfield`): the pre-activations' and activations' std, the gradient norm at each
pre-activation and how much it changes per layer, next to the prediction for this net. It also
returns the singular values of the hidden stack's input–output Jacobian (Pennington et al.
2017, "Resurrecting the sigmoid in deep learning through dynamical isometry").

    p = probe(RunConfig(depth=50, width=256, activation="tanh", init="orthogonal"))
    p.layers            # layer, name, metric, value, predicted (metrics: preact_std,
                        # activation_std, preact_grad_norm, weight_grad_norm, grad_factor)
    p.singular_values   # example, index, singular_value, zero
    p.mean_field        # q*, χ₁, depth scale, phase

Over many networks at once: core.init.phase (the (σ_w², σ_b²) phase diagram) and
core.init.spectra (Gaussian vs orthogonal, tanh vs ReLU). The command line prints the same: `python -m core probe --depth 50 --activation tanh`.
"""

from __future__ import annotations

import functools
import json
import math
import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from core.activations import derivative
from core.data.datasets import load_splits
from core.init import meanfield
from core.init.meanfield import MeanField
from core.budget import LAYER_STEP_COST, REQUEST_BASE, Estimate, refuse
from core.lab.config import FIELDS, ConfigError, RunConfig
from core.lab.models import Network, build_model, network_macs, network_sizes

# The RunConfig fields that change the network at initialisation or what it is fed. The others
# (optimiser, epochs, dropout, …) only matter once training starts: dropout's masks are
# training-time noise, so the probe looks at the network function without them.
PROBE_FIELDS = ("dataset", "noise", "model", "depth", "width", "activation", "init", "sigma_w2",
                "bias_init", "bias_value", "batch_norm", "seed")
METRICS = {  # the `layers` table's metrics and their labels (the charts use these too)
    "preact_std": "Pre-activation std √q",
    "activation_std": "Activation std",
    "preact_grad_norm": "Gradient norm at the pre-activation ‖∂L/∂z‖",
    "weight_grad_norm": "Weight-gradient norm ‖∇W‖",
    "grad_factor": "Per-layer gradient factor ‖δₗ‖²/‖δₗ₊₁‖²",
}
JACOBIAN_WORK = 100 * 512 ** 3   # depth·width³ of the largest Jacobian `probe` takes unasked
JACOBIAN = ("∂x_L/∂x_1: from the first hidden layer's output to the last one's, the product "
            "D_l W_l over the square hidden layers l = 2…L (Pennington et al.'s J, whose input "
            "layer is square too)")


@dataclass(frozen=True, eq=False)
class Probe:
    config: RunConfig
    dataset: dict[str, Any]           # name, source, notice, n_inputs
    layers: pd.DataFrame              # layer, name, metric, value, predicted
    singular_values: pd.DataFrame     # example, index, singular_value, zero
    mean_field: MeanField             # the hidden stack's theory, from this net's q1
    q1: float                         # predicted variance of hidden1's pre-activations
    sv_predicted_rms: float           # RMS singular value of J that theory predicts
    theory: str | None                # None where the plain-MLP theory applies, else why not
    seconds: float

    def metric(self, name: str) -> pd.DataFrame:
        return self.layers[self.layers["metric"] == name].reset_index(drop=True)

    def grad_ratio(self, column: str = "value") -> float:
        """‖δ_1‖/‖δ_L‖: first over last hidden layer's gradient norm at the pre-activation."""
        g = self.metric("preact_grad_norm")[column].to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(g[0] / g[-1])

    def measured_chi(self, first: int | None = None, last: int | None = None) -> float:
        """The geometric mean of the measured per-layer factors over layers first..last (by
        default the middle half: away from the input's transient and from the output)."""
        f = self.metric("grad_factor")
        depth = self.config.depth
        first = first if first is not None else max(1, depth // 4)
        last = last if last is not None else max(first, depth - max(2, depth // 4))
        v = f[(f["layer"] >= first) & (f["layer"] <= last)]["value"].to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.exp(np.mean(np.log(v)))) if len(v) else math.nan

    def summary(self) -> dict[str, Any]:
        sv = self.singular_values
        s = sv["singular_value"].to_numpy()
        nz = s[~sv["zero"].to_numpy()] if len(sv) else s
        mf = self.mean_field
        return {
            "q1": self.q1, "q_star": mf.q_star, "chi1": mf.chi1, "depth_scale": mf.depth_scale,
            "phase": mf.phase, "sigma_w2": mf.sigma_w2, "sigma_b2": mf.sigma_b2,
            "measured_chi": self.measured_chi(),
            "grad_ratio": self.grad_ratio(),
            "predicted_grad_ratio": self.grad_ratio("predicted"),
            "sv_rms": float(np.sqrt(np.mean(s ** 2))) if len(s) else math.nan,
            "sv_predicted_rms": self.sv_predicted_rms,
            "sv_median": float(np.median(s)) if len(s) else math.nan,
            "sv_max": float(s.max()) if len(s) else math.nan,
            "sv_min_nonzero": float(nz.min()) if len(nz) else math.nan,
            "sv_zero": int(sv["zero"].sum()) if len(sv) else 0,
            "sv_log10_spread": float(np.std(np.log10(nz))) if len(nz) else math.nan,
            "theory": self.theory, "seconds": self.seconds,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "dataset": self.dataset,
                "summary": self.summary(), "mean_field": self.mean_field.to_dict(),
                "jacobian": JACOBIAN,
                "layers": self.layers.to_dict("list"),
                "singular_values": self.singular_values.to_dict("list")}

    def to_json(self, **kwargs: Any) -> str:
        """Strict JSON: non-finite numbers (q* = inf, an overflowed layer) become null."""
        return json.dumps(_strict(self.to_dict()), allow_nan=False, **kwargs)


def _strict(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def probe_text(p: Probe) -> str:
    """The probe as text, for `python -m core probe`."""
    s, mf = p.summary(), p.mean_field
    f = "{:.3g}".format
    lines = [f"probe at initialisation  {p.config.changed() or 'defaults'}",
             f"data       {p.dataset['name']}, {p.dataset['n_inputs']} inputs: "
             f"{p.dataset['source']}   ({p.seconds:.2f} s)"]
    if p.dataset.get("notice"):
        lines.append(f"notice     {p.dataset['notice']}")
    lines += [f"mean field σ_w² {f(mf.sigma_w2)}  σ_b² {f(mf.sigma_b2)}"
              + (f"  μ_b {f(mf.bias_mean)}" if mf.bias_mean else "")
              + f"  q1 {f(p.q1)}  q* {f(mf.q_star)}  χ₁ {mf.chi1:.4f}  depth scale "
              f"{f(mf.depth_scale)} layers  phase {mf.phase}",
              f"measured   per-layer gradient factor {s['measured_chi']:.4f} (middle layers)   "
              f"‖δ₁‖/‖δ_L‖ {f(s['grad_ratio'])} (theory {f(s['predicted_grad_ratio'])})"]
    if p.theory:
        lines.append(f"theory     {p.theory}")
    e, e10 = ">11.3e", ">10.3e"
    columns = [("preact std", "value", "preact_std", e),
               ("(theory)", "predicted", "preact_std", e10),
               ("act std", "value", "activation_std", e),
               ("(theory)", "predicted", "activation_std", e10),
               ("‖∂L/∂z‖", "value", "preact_grad_norm", e),
               ("(theory)", "predicted", "preact_grad_norm", e10),
               ("‖∇W‖", "value", "weight_grad_norm", e),
               ("factor", "value", "grad_factor", ">9.4f"),
               ("(χ)", "predicted", "grad_factor", ">8.4f")]
    table = p.layers.pivot(index="name", columns="metric", values=["value", "predicted"])
    lines += ["", f"{'layer':<10}" + "".join(f"{t:>{int(fmt[1:].split('.')[0])}}"
                                             for t, *_, fmt in columns)]
    for name in p.layers.drop_duplicates("layer")["name"]:
        row = table.loc[name]
        lines.append(f"{name:<10}" + "".join(format(row.get((kind, metric), math.nan), fmt)
                                             for _, kind, metric, fmt in columns))
    sv = p.singular_values["singular_value"].to_numpy()
    lines.append("")
    if len(sv):
        q = np.quantile(sv, [0, 0.1, 0.5, 0.9, 1])
        lines += [f"Jacobian   {JACOBIAN}",
                  f"           {len(sv)} singular values ({s['sv_zero']} numerically zero): "
                  f"min {q[0]:.3g}  10% {q[1]:.3g}  median {q[2]:.3g}  90% {q[3]:.3g}  "
                  f"max {q[4]:.3g}",
                  f"           RMS {f(s['sv_rms'])} (theory {f(s['sv_predicted_rms'])}),  "
                  f"spread of log10 (non-zero) {s['sv_log10_spread']:.2f}"]
    else:
        lines.append("Jacobian   none (depth 1, --jacobian 0, or values overflowed)")
    return "\n".join(lines)


# --- inputs and the network -------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _batch(dataset: str, seed: int, noise: float, n: int):
    """The first n training examples, standardised as the trainer does (cached: MNIST takes
    ~0.3 s and Fashion-MNIST ~1 s to load, a probe ~0.1 s)."""
    splits = load_splits(dataset, seed=seed, noise=noise)
    x = torch.as_tensor(splits.x_train[:n]).float()
    x = (x - torch.as_tensor(splits.mean).float()) / torch.as_tensor(splits.std).float()
    y = torch.as_tensor(splits.y_train[:n]).long()
    return x, y, splits.info


def inputs(cfg: RunConfig, n: int) -> tuple[torch.Tensor, torch.Tensor, Any]:
    x, y, info = _batch(cfg.dataset, cfg.seed, cfg.noise, int(n))
    return x.clone(), y.clone(), info


def _check(cfg: RunConfig, n_inputs: int) -> None:
    if cfg.model == "cnn":
        raise ConfigError("model", "the initialisation probe analyses dense networks "
                                   "(mlp, residual_mlp), not a cnn")
    if not isinstance(n_inputs, int) or n_inputs < 2:
        raise ValueError(f"n_inputs must be an integer ≥ 2, got {n_inputs!r}")


def _theory_gap(cfg: RunConfig) -> str | None:
    if cfg.model == "residual_mlp":
        return ("residual connections add each layer's input back, so the plain length map "
                "does not apply: measured values only")
    if cfg.batch_norm:
        return "batch norm resets every layer's scale: measured values only"
    return None


@dataclass
class _Pass:
    """One forward pass, layer by layer (hidden layers only), and its logits."""

    preact: list[torch.Tensor]     # h_l (after batch norm, where there is one)
    act: list[torch.Tensor]        # φ(h_l)
    linear: list[torch.Tensor]     # W_l x + b_l (before batch norm)
    logits: torch.Tensor


def forward(model: Network, x: torch.Tensor) -> _Pass:
    """`Layer.forward` step by step, keeping h_l for the gradient; dropout left out."""
    preact, act, linear = [], [], []
    for name, layer in model.layers.items():
        inp = x.flatten(1) if layer.flatten_input else x
        u = layer.linear(inp)
        h = layer.norm(u) if layer.norm is not None else u
        if name == "output":
            return _Pass(preact, act, linear, h)
        if h.requires_grad:
            h.retain_grad()
        a = layer.act(h)
        x = inp + a if layer.residual else a
        preact.append(h), act.append(a), linear.append(u)
    raise ValueError("the network has no output layer")  # pragma: no cover


# --- the probe --------------------------------------------------------------------------------
# Multiply-adds that drawing a weight costs (the RNG, counted as arithmetic that takes as
# long), and an orthogonal init's QR per layer, as multiples of width³: `init=orthogonal` at
# depth 100, width 1024 took 17 s of one core here.
DRAW_COST = 50
QR_COST = 2.0


def _jacobians(v: Mapping[str, Any]) -> int:
    return (v["n_jacobian"] if v["n_jacobian"] is not None
            else int(v["depth"] * v["width"] ** 3 <= JACOBIAN_WORK))


def probe_work(v: Mapping[str, Any]) -> float:
    """Estimated multiply-adds of `probe` with a RunConfig's fields and n_inputs, n_jacobian:
    drawing the weights, one forward and backward pass, the Jacobians (float64, ~2×) and their
    SVDs."""
    depth, width = v["depth"], v["width"]
    _, _, params, _ = network_sizes(v["model"], depth, width, v["dataset"], v["batch_norm"])
    init = params * DRAW_COST + (QR_COST * depth * width ** 3 if v["init"] == "orthogonal" else 0)
    passes = 3 * network_macs(v["model"], depth, width, v["dataset"]) * v["n_inputs"]
    return (init + passes + _jacobians(v) * (2 * depth * width ** 3 + 10 * width ** 3)
            + depth * LAYER_STEP_COST)


def probe_memory(v: Mapping[str, Any]) -> float:
    """Peak bytes `probe` adds: weights, gradients and an init's temporaries; every layer's
    pre-activation, activation and their gradients kept for the measurements; a Jacobian's
    float64 products; REQUEST_BASE."""
    n_in, outputs, params, _ = network_sizes(v["model"], v["depth"], v["width"], v["dataset"],
                                             v["batch_norm"])
    weights = 4 * (3 * params + 4 * v["width"] ** 2)
    activations = 4 * v["n_inputs"] * (8 * sum(outputs) + 2 * n_in)
    jacobian = 8 * 4 * v["width"] ** 2 * max(1, _jacobians(v))
    return REQUEST_BASE + weights + activations + jacobian


def probe_estimate(cfg: RunConfig, n_inputs: int = 256, n_jacobian: int | None = None) -> Estimate:
    """What `probe(cfg)` costs, for the compute and memory budgets (core.budget)."""
    return Estimate(
        f"this probe ({cfg.depth} layers of {cfg.width}, {n_inputs} inputs, init {cfg.init})",
        {**cfg.to_dict(), "n_inputs": n_inputs, "n_jacobian": n_jacobian}, probe_work,
        (("width", "lower"), ("depth", "lower")), FIELDS,
        memory=probe_memory, memory_knobs=(("width", "lower"), ("depth", "lower")))


def probe(cfg: RunConfig, *, n_inputs: int = 256, n_jacobian: int | None = None) -> Probe:
    """Measure the network `cfg` describes at initialisation, beside mean-field theory.

    The first `n_jacobian` inputs get their Jacobian's singular values; None: one input where
    that is affordable (depth·width³ ≤ JACOBIAN_WORK, about 1 s), none beyond. Cost: about
    0.3 s at depth 100, width 256 with 256 inputs, plus 0.15 s per Jacobian there; the
    forward and backward pass grow as depth·width²·n_inputs, a Jacobian as depth·width³.
    A probe over the compute or memory budget (`probe_estimate`) is refused with a ConfigError.
    """
    _check(cfg, n_inputs)
    refuse(probe_estimate(cfg, n_inputs, n_jacobian))   # ConfigError over a budget
    start = time.perf_counter()
    x, y, info = inputs(cfg, n_inputs)
    model = build_model(cfg, info.input_shape, info.n_classes)
    model.train()  # batch norm uses the batch's statistics, as on the first training step
    run = forward(model, x)
    # The training loss on real labels, so the gradient norms are the first step's. The
    # mean-field factor ‖δ_l‖²/‖δ_{l+1}‖² does not depend on the loss: the papers' choice of a
    # random output gradient would give the same ratios and different absolute norms.
    F.cross_entropy(run.logits, y).backward()

    names = [n for n in model.layers if n != "output"]
    with torch.no_grad():
        measured = {
            "preact_std": [h.std(correction=0).item() for h in run.preact],
            "activation_std": [a.std(correction=0).item() for a in run.act],
            "preact_grad_norm": [h.grad.norm().item() for h in run.preact],
            "weight_grad_norm": [model.layers[n].linear.weight.grad.norm().item()
                                 for n in names],
        }
    g = np.asarray(measured["preact_grad_norm"])
    with np.errstate(divide="ignore", invalid="ignore"):
        measured["grad_factor"] = list((g[:-1] / g[1:]) ** 2)

    gap = _theory_gap(cfg)
    facts, q1, theory = _theory(cfg, x)
    predicted = {}
    if gap is None:
        predicted = {
            "preact_std": theory["preact_std"].to_numpy(),
            "activation_std": theory["activation_std"].to_numpy(),
            # Theory gives ratios between layers; the scale is the loss's, so it is anchored
            # at the last hidden layer's measured norm.
            "preact_grad_norm": theory["grad_norm"].to_numpy() * g[-1],
            "grad_factor": theory["chi"].to_numpy()[:-1],
        }
    sv_rms = _predicted_rms(theory) if gap is None else math.nan

    rows = []
    for metric, values in measured.items():
        pred = predicted.get(metric, [math.nan] * len(values))
        rows += [(i + 1, names[i], metric, float(v), float(p))
                 for i, (v, p) in enumerate(zip(values, pred))]
    layers = pd.DataFrame(rows, columns=["layer", "name", "metric", "value", "predicted"])
    if n_jacobian is None:
        n_jacobian = int(cfg.depth * cfg.width ** 3 <= JACOBIAN_WORK)
    examples = min(int(n_jacobian), len(x))
    svals = jacobian_spectrum(model, cfg, run, range(examples))
    return Probe(cfg, {"name": info.name, "source": info.source, "notice": info.notice,
                       "n_inputs": len(x)},
                 layers, svals, facts, q1, sv_rms, gap, time.perf_counter() - start)


def _theory(cfg: RunConfig, x: torch.Tensor, gain: float = 1.0
            ) -> tuple[MeanField, float, pd.DataFrame]:
    """Mean-field facts, hidden1's predicted variance q1 and the layer-by-layer prediction.

    `gain` multiplies every weight after init (as nn.init's gain argument would): σ_w² × gain².
    """
    n_in = x[0].numel()
    mean, sigma_b2 = meanfield.bias_moments(cfg, cfg.width)
    sigma_b2_1 = meanfield.bias_moments(cfg, n_in)[1]
    sw1 = gain ** 2 * meanfield.init_sigma_w2(cfg.init, n_in, cfg.width, cfg.sigma_w2)
    sw = gain ** 2 * meanfield.init_sigma_w2(cfg.init, cfg.width, cfg.width, cfg.sigma_w2)
    # hidden1 sees the data: Var(W x) per unit is σ_w1² · (mean square of the inputs).
    q1 = sw1 * float(x.double().pow(2).mean()) + sigma_b2_1
    facts = meanfield.mean_field(cfg.activation, sw, sigma_b2, bias_mean=mean, q0=q1)
    theory = meanfield.trajectory(cfg.activation, sw, sigma_b2, q1, cfg.depth, mean=mean)
    return facts, q1, theory


def _predicted_rms(theory: pd.DataFrame) -> float:
    # (1/N) tr JJᵀ = ∏_{l=2..L} χ(q_l): each layer of J multiplies the mean square by its χ.
    chi = theory["chi"].to_numpy()[1:]
    return float(np.sqrt(np.prod(chi))) if len(chi) else math.nan


def jacobian_spectrum(model: Network, cfg: RunConfig, run: _Pass, examples) -> pd.DataFrame:
    """Singular values of J = ∂x_L/∂x_1 = ∏_{l=L..2} J_l for each example (see JACOBIAN).

    J_l = D_l S_l W_l, D_l = diag φ′(h_l), S_l = batch norm's per-unit scale γ/√(σ²_B + ε)
    (the batch's statistics held fixed for one example); residual layers add I. In float64:
    at depth 100 the values span many decades. `zero` marks values below the rank tolerance
    σ_max·N·ε_64, i.e. exact zeros up to rounding (ReLU's D_l has zeros on its diagonal).
    """
    cols = ["example", "index", "singular_value", "zero"]
    layers = [layer for name, layer in model.layers.items() if name != "output"][1:]
    examples = list(examples)
    if not layers or not examples or not all(
            torch.isfinite(h[examples]).all() for h in run.preact):
        return pd.DataFrame(columns=cols)  # an overflowed forward pass has no Jacobian to show
    with torch.no_grad():
        n = cfg.width
        jac = torch.eye(n, dtype=torch.float64).repeat(len(examples), 1, 1)
        for layer, h, u in zip(layers, run.preact[1:], run.linear[1:]):
            d = derivative(cfg.activation, h[examples].double())
            if layer.norm is not None:
                var = u.double().var(0, correction=0)
                d = d * layer.norm.weight.double() / torch.sqrt(var + layer.norm.eps)
            step = d[:, :, None] * (layer.linear.weight.double() @ jac)
            jac = jac + step if layer.residual else step
        if not torch.isfinite(jac).all():
            return pd.DataFrame(columns=cols)
        s = torch.linalg.svdvals(jac).numpy()
    tol = s.max(axis=1, keepdims=True) * n * np.finfo(np.float64).eps
    k = len(examples)
    return pd.DataFrame({"example": np.repeat(np.arange(k), n), "index": np.tile(np.arange(n), k),
                         "singular_value": s.ravel(), "zero": (s <= tol).ravel()})
