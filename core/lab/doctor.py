"""The gradient doctor: findings computed from a run's records, each with evidence and fixes.

    for f in diagnose(result):
        f.title, f.evidence          # "Vanishing gradients", "first layer's gradient is 1e-6 …"
        f.fixes[0].apply(result.config)   # a new RunConfig with the fix applied

Every number in a finding comes from the run's own tables; the thresholds are the usual rules of
thumb and are named here, once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.lab.config import ConfigError, RunConfig
from core.lab.metrics import CATALOGUE, SATURATED_WHEN, power
from core.lab.result import RunResult

VANISHING_RATIO = 1e-3     # first/last layer gradient norm below this: vanishing
EXPLODING_RATIO = 1e3      # … above this: exploding towards the input
SATURATED_SHARE = 0.3      # share of saturated (unit, example) pairs worth a warning
DEAD_SHARE = 0.25          # share of dead units worth a warning
UPDATE_DATA = CATALOGUE["update_data_ratio"]
UPDATE_RATIO_HIGH = 3e-2   # update:data far above its rule of thumb (UPDATE_DATA.target)
UPDATE_RATIO_LOW = 1e-5
CLIPPED_SHARE = 0.5        # clipping on more than half the steps hides a scale problem
SATURATING = {"sigmoid", "tanh", "softplus"}
RELU_LIKE = {"relu", "leaky_relu", "elu", "gelu", "selu", "silu"}


@dataclass(frozen=True)
class Fix:
    label: str
    changes: dict[str, Any] = field(hash=False)

    def apply(self, cfg: RunConfig) -> RunConfig:
        return cfg.replace(**self.changes)


@dataclass(frozen=True)
class Finding:
    id: str
    severity: str            # "error" | "warning" | "info"
    title: str
    evidence: str
    fixes: tuple[Fix, ...] = ()


def diagnose(result: RunResult) -> list[Finding]:
    """Findings, most serious first. An empty list means nothing looks wrong."""
    cfg = result.config
    found: list[Finding] = []
    if result.diverged:
        d = result.divergence
        found.append(Finding(
            "diverged", "error", "The run diverged",
            f"Loss or activations became NaN/inf at step {d['step']} (epoch {d['epoch']})"
            + (f", first in the {d['where']} of {d['layer']}" if d.get("layer") else "")
            + f". The largest gradient norm before that was {_max_grad(result):.2e}.",
            _valid(cfg, Fix("Clip the gradient norm at 1.0", {"clip_norm": 1.0,
                                                              "clip_value": None}),
                   Fix(f"Lower the learning rate to {cfg.lr / 10:g}", {"lr": cfg.lr / 10}),
                   Fix("Use He initialisation", {"init": "he_normal"})
                   if cfg.init in ("normal_large", "mean_field") else None),
        ))
    ratio = _grad_ratio(result)
    if ratio is not None and ratio < VANISHING_RATIO:
        found.append(Finding(
            "vanishing", "error", "Vanishing gradients",
            f"The first layer's gradient norm is {ratio:.1e} of the last layer's "
            f"(median over training): the first layers barely learn.",
            _valid(cfg,
                   Fix("Switch to ReLU + He init", {"activation": "relu", "init": "he_normal"})
                   if cfg.activation not in RELU_LIKE else None,
                   Fix("Enable batch norm", {"batch_norm": True}) if not cfg.batch_norm else None,
                   Fix("Add residual connections", {"model": "residual_mlp"})
                   if cfg.model == "mlp" else None),
        ))
    elif ratio is not None and ratio > EXPLODING_RATIO and not result.diverged:
        found.append(Finding(
            "exploding", "error", "Exploding gradients",
            f"The first layer's gradient norm is {ratio:.1e} times the last layer's.",
            _valid(cfg, Fix("Clip the gradient norm at 1.0", {"clip_norm": 1.0,
                                                              "clip_value": None}),
                   Fix("Use He initialisation", {"init": "he_normal"})
                   if cfg.init != "he_normal" else None,
                   Fix("Enable batch norm", {"batch_norm": True}) if not cfg.batch_norm else None),
        ))
    sat = _last_mean(result, "saturation")
    if sat is not None and sat > SATURATED_SHARE and cfg.activation in SATURATING:
        found.append(Finding(
            "saturated", "warning", "Saturated units",
            f"{sat:.0%} of the hidden units' outputs sit where {SATURATED_WHEN} "
            f"(last record, mean over layers): little gradient passes through them.",
            _valid(cfg, Fix("Enable batch norm", {"batch_norm": True})
                   if not cfg.batch_norm else None,
                   Fix("Use Xavier initialisation", {"init": "xavier_normal"})
                   if cfg.init not in ("xavier_normal", "xavier_uniform") else None,
                   Fix("Switch to ReLU + He init", {"activation": "relu", "init": "he_normal"})),
        ))
    dead = _last_mean(result, "dead")
    if dead is not None and dead > DEAD_SHARE and cfg.activation in RELU_LIKE | SATURATING:
        unit = "ReLUs" if cfg.activation == "relu" else "units"
        found.append(Finding(
            "dead", "warning", f"Dead {unit}",
            f"{dead:.0%} of the hidden {unit} are inactive for every example of a batch "
            f"(last record, mean over layers): such a unit passes no gradient to its own "
            f"weights, and revives only if updates elsewhere shift its input.",
            _valid(cfg, Fix("Switch to leaky ReLU", {"activation": "leaky_relu"})
                   if cfg.activation == "relu" else None,
                   Fix(f"Lower the learning rate to {cfg.lr / 10:g}", {"lr": cfg.lr / 10}),
                   Fix("Enable batch norm", {"batch_norm": True}) if not cfg.batch_norm else None),
        ))
    upd = _median(result, "update_data_ratio")
    if upd is not None and not result.diverged:
        if upd > UPDATE_RATIO_HIGH:
            found.append(Finding(
                "steps_too_big", "warning", "Steps too large",
                f"The median {UPDATE_DATA.label} is {upd:.1e}; about "
                f"{power(UPDATE_DATA.target)} is the usual healthy size. Training is likely unstable.",
                _valid(cfg, Fix(f"Lower the learning rate to {cfg.lr / 10:g}",
                                {"lr": cfg.lr / 10})),
            ))
        elif upd < UPDATE_RATIO_LOW and not any(f.id == "vanishing" for f in found):
            # With vanishing gradients the tiny steps are a symptom: a larger learning rate
            # would blow up the last layers long before the first ones move.
            found.append(Finding(
                "steps_too_small", "warning", "Steps too small",
                f"The median {UPDATE_DATA.label} is {upd:.1e}; about "
                f"{power(UPDATE_DATA.target)} is the usual healthy size. Training crawls.",
                _valid(cfg, Fix(f"Raise the learning rate to {cfg.lr * 10:g}",
                                {"lr": cfg.lr * 10})),
            ))
    clip_rate = float(result.steps.clipped.mean()) if len(result.steps) else 0.0
    if clip_rate > CLIPPED_SHARE and not result.diverged:
        norm = float(np.nanmedian(result.steps.grad_norm))
        found.append(Finding(
            "always_clipped", "info", "Clipping on almost every step",
            f"Clipping triggered on {clip_rate:.0%} of the steps; the median gradient norm before "
            f"clipping is {norm:.1e}. Clipping keeps the run alive, but the gradients' scale "
            f"problem is still there.",
            _valid(cfg, Fix("Use He initialisation", {"init": "he_normal"})
                   if cfg.init != "he_normal" else None,
                   Fix("Enable batch norm", {"batch_norm": True}) if not cfg.batch_norm else None),
        ))
    acc = result.final("val", "accuracy")
    n_classes = int(result.dataset.get("n_classes", 10))
    if not result.diverged and math.isfinite(acc) and acc < 1.5 / n_classes:
        found.append(Finding(
            "not_learning", "info", "Not learning",
            f"Validation accuracy is {acc:.0%}, about chance ({1 / n_classes:.0%}).",
            _valid(cfg, Fix("Use Adam at 1e-3", {"optimizer": "adam", "lr": 1e-3})
                   if cfg.optimizer != "adam" else None),
        ))
    gap = result.final("train", "accuracy") - acc
    if math.isfinite(gap) and gap > 0.1:
        found.append(Finding(
            "overfitting", "info", "Overfitting",
            f"Training accuracy is {gap:.0%} above validation accuracy.",
            _valid(cfg, Fix("Add dropout 0.3", {"dropout": 0.3}) if cfg.dropout == 0 else None,
                   Fix("Add weight decay 1e-4", {"weight_decay": 1e-4})
                   if cfg.weight_decay == 0 else None,
                   Fix("Stop early (patience 5)", {"patience": 5})
                   if cfg.patience is None else None),
        ))
    return found


def _valid(cfg: RunConfig, *fixes: Fix | None) -> tuple[Fix, ...]:
    """Only fixes that change something and give a valid config (e.g. lr stays in range)."""
    out = []
    for fix in fixes:
        if fix is None:
            continue
        try:
            if fix.apply(cfg) != cfg:
                out.append(fix)
        except ConfigError:
            continue
    return tuple(out)


def _grad_ratio(result: RunResult) -> float | None:
    g = result.layer_metric("weight_grad_norm")
    if g.empty or g.shape[1] < 2:
        return None
    ratio = (g.iloc[:, 0] / g.iloc[:, -1]).replace([np.inf, -np.inf], np.nan).dropna()
    ratio = ratio[ratio > 0]
    return float(ratio.median()) if len(ratio) else None


def _hidden(result: RunResult, metric: str):
    rows = result.layers[(result.layers.metric == metric) & (result.layers.layer != "output")]
    return rows[np.isfinite(rows.value)]


def _last_mean(result: RunResult, metric: str) -> float | None:
    rows = _hidden(result, metric)
    if rows.empty:
        return None
    return float(rows[rows.step == rows.step.max()].value.mean())


def _median(result: RunResult, metric: str) -> float | None:
    rows = _hidden(result, metric)
    rows = rows[rows.value > 0]
    return float(rows.value.median()) if len(rows) else None


def _max_grad(result: RunResult) -> float:
    g = result.steps.grad_norm.to_numpy()
    g = g[np.isfinite(g)]
    return float(g.max()) if g.size else math.nan
