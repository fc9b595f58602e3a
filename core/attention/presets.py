"""Attention lessons: a configuration, what to look at, and claims checked on the real numbers.

Each claim is a function of the page's two results, the saturation sweep and (where it says so)
the trained classifiers, so the page shows ✓ or ✗ beside it and the tests assert that it holds:

    p = ATTENTION_PRESETS["saturate"]
    ev = Evidence(softmax_saturation(p.config), get_attention(p.config))
    [c.check(ev) for c in p.claims]

The thresholds leave a wide margin under what the presets' runs measure (see the comments), so
a different thread count or BLAS changes the numbers in the text, never the ✓.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from core.attention.config import AttentionConfig
from core.lessons import Claim, Preset

if TYPE_CHECKING:   # the softmax module needs torch; Home lists these presets without it
    from core.attention.softmax import AttentionResult


@dataclass(frozen=True)
class Evidence:
    """What attention's claims read: two measurements of one config."""
    saturation: pd.DataFrame                 # softmax_saturation(config)
    classifier: AttentionResult | None = None  # get_attention(config), for claims that need it


def sweep_value(table: pd.DataFrame, variant: str, metric: str, *, d: int | None = None,
                logit_scale: float | None = None) -> float:
    """One number of the saturation table: the d sweep at `d`, or the logit-scale sweep at
    `logit_scale` (NaN if absent)."""
    sweep, col, at = ("d", "d", d) if logit_scale is None else ("logit_scale", "logit_scale",
                                                                  logit_scale)
    rows = table[(table.sweep == sweep) & (table.variant == variant) & (table.metric == metric)
                 & (table[col] == at)]
    return float(rows.value.iloc[0]) if len(rows) else math.nan


def _share(ev: Evidence, variant: str, d: int) -> float:
    """Mean entropy at d as a share of its largest possible value, log n."""
    return sweep_value(ev.saturation, variant, "entropy", d=d) / float(ev.saturation.log_n.iloc[0])


def _d_curve(ev: Evidence, variant: str, metric: str) -> pd.Series:
    t = ev.saturation
    rows = t[(t.sweep == "d") & (t.variant == variant) & (t.metric == metric)]
    return rows.set_index("d").value.sort_index()


def _spread_rank_corr(ev: Evidence) -> float:
    """Spearman correlation of mean entropy with the logits' spread over every setting."""
    wide = ev.saturation.pivot_table(index=["sweep", "d", "logit_scale", "variant"],
                                     columns="metric", values="value")
    return float(wide["logit_std"].corr(wide["entropy"], method="spearman"))


def _median_j_ratio(ev: Evidence, d: int) -> float:
    t = ev.saturation
    return (sweep_value(t, "scaled", "jacobian_median", d=d)
            / sweep_value(t, "unscaled", "jacobian_median", d=d))


def _acc(ev: Evidence, variant: str) -> float:
    return ev.classifier.final(variant, "accuracy")


def _grad_logits_ratio(ev: Evidence) -> float:
    r = ev.classifier
    return r.at("scaled", "grad_logits", 0) / r.at("unscaled", "grad_logits", 0)


def _grad_qk_ratio(ev: Evidence) -> float:
    r = ev.classifier
    return r.grad("unscaled", "grad_qk", 1) / r.grad("scaled", "grad_qk", 1)


_D = 256
# 4×4 patches: 4 tokens, rarely two alike, so unscaled attention can commit to one of them.
# Measured on seeds 0-4: entropy 9-10% of log 4 unscaled, 81-86% scaled; 66-68% of unscaled
# queries saturated, none scaled; median Jacobian norm 459, 442, 337, 551, 323× smaller.
_SATURATE = AttentionConfig(tokens="patch4", d=_D)
# Rows, every d, seeds 0-4: scaled entropy 78-98% of log 8; unscaled 79-97% at d = 1,
# 11-18% at d = 512.
_SOFT = AttentionConfig(tokens="rows", d=512)
# Rows, d = 256, 10 epochs of Adam, seeds 0-4: val accuracy 85/74, 80/73, 86/79, 87/78, 82/72%
# scaled/unscaled; gradient at the logits 9, 9, 7, 6, 10× smaller unscaled at init; q/k weight
# gradients 2.6, 3.4, 3.2, 2.0, 2.5× larger.
_SLOWER = AttentionConfig(tokens="rows", d=_D)
# d = 64 with logit scale 8 = √64: scaled attention gets exactly the unscaled logits.
_TEMPERATURE = AttentionConfig(tokens="rows", d=64, logit_scale=8.0)

# Every lesson reads both variants, so the page's scaling toggle does not leave the lesson.
_FREE = ("scaled",)
_PRESETS = (
    Preset(
        "saturate", "Unscaled logits saturate at large d", ":material/compress:",
        "4×4 patches, d = 256: without 1/√d most queries attend to one patch alone.",
        "Follow the red curves to the right: without scaling the logits' spread grows with √d, "
        "the softmax turns into an argmax for most queries, and its Jacobian diag(p) − ppᵀ, "
        "the factor every gradient to the queries and keys passes through, collapses for them "
        "(the median line). The blue (scaled) curves do not fall.",
        _SATURATE,
        (Claim(lambda ev: f"At d = {_D} unscaled attention's mean entropy is "
                          f"{_share(ev, 'unscaled', _D):.0%} of the uniform maximum log n; "
                          f"scaled, {_share(ev, 'scaled', _D):.0%}.",
               lambda ev: _share(ev, "unscaled", _D) < 0.2 and _share(ev, "scaled", _D) > 0.6),
         Claim(lambda ev: f"{sweep_value(ev.saturation, 'unscaled', 'saturated', d=_D):.0%} of "
                          f"the unscaled queries put more than 99% of their weight on one token; "
                          f"{sweep_value(ev.saturation, 'scaled', 'saturated', d=_D):.0%} of the "
                          "scaled ones do.",
               lambda ev: sweep_value(ev.saturation, "unscaled", "saturated", d=_D) > 0.5
               and sweep_value(ev.saturation, "scaled", "saturated", d=_D) < 0.01),
         Claim(lambda ev: f"The median query's softmax Jacobian norm is "
                          f"{_median_j_ratio(ev, _D):,.0f}× smaller unscaled than scaled.",
               lambda ev: _median_j_ratio(ev, _D) > 100)),
        free=_FREE,
    ),
    Preset(
        "soft", "Scaling keeps attention soft", ":material/blur_on:",
        "Digit rows from d = 1 to 512: with 1/√d the attention's entropy hardly moves.",
        "Dividing by √d cancels the growth of q·k, so the logits keep a spread of order 1 at every "
        "width and the softmax stays in its responsive range. Compare the two entropy curves "
        "and the two heatmaps.",
        _SOFT,
        (Claim(lambda ev: "Scaled, the mean entropy stays between "
                          f"{_d_curve(ev, 'scaled', 'entropy').min() / _logn(ev):.0%} and "
                          f"{_d_curve(ev, 'scaled', 'entropy').max() / _logn(ev):.0%} of log n "
                          "for every d from 1 to 512.",
               lambda ev: _d_curve(ev, "scaled", "entropy").min() / _logn(ev) > 0.6),
         Claim(lambda ev: "Unscaled, it falls from "
                          f"{_d_curve(ev, 'unscaled', 'entropy').iloc[0] / _logn(ev):.0%} at "
                          f"d = 1 to {_d_curve(ev, 'unscaled', 'entropy').iloc[-1] / _logn(ev):.0%}"
                          " at d = 512.",
               lambda ev: _d_curve(ev, "unscaled", "entropy").iloc[-1] / _logn(ev) < 0.25)),
        free=_FREE,
    ),
    Preset(
        "slower", "Unscaled attention learns slower", ":material/hourglass_bottom:",
        "The tiny classifier at d = 256, with and without 1/√d: same weights, same batches.",
        "Unscaled, the classifier starts with saturated attention, so the gradient that "
        "reaches its attention logits is several times smaller, and it learns more slowly. "
        "Note the surprise in the gradient chart: the query/key weights' gradient is not "
        "smaller, because without 1/√d the logits' derivative with respect to q and k is "
        "√d = 16 times larger, more than making up for the flatter softmax.",
        _SLOWER,
        (Claim(lambda ev: f"After {ev.classifier.config.epochs} epochs validation accuracy is "
                          f"{_acc(ev, 'unscaled'):.0%} unscaled and {_acc(ev, 'scaled'):.0%} "
                          "scaled.",
               lambda ev: _acc(ev, "scaled") - _acc(ev, "unscaled") > 0.04,
               needs="classifier"),
         Claim(lambda ev: "At initialisation the gradient reaching the attention logits is "
                          f"{_grad_logits_ratio(ev):.0f}× smaller unscaled.",
               lambda ev: _grad_logits_ratio(ev) > 4, needs="classifier"),
         Claim(lambda ev: "Yet in the first epoch the query/key weights' gradient norm is "
                          f"{_grad_qk_ratio(ev):.1f}× larger unscaled, not smaller.",
               lambda ev: _grad_qk_ratio(ev) > 1, needs="classifier")),
        free=_FREE,
    ),
    Preset(
        "temperature", "A temperature, not a width", ":material/thermostat:",
        "d = 64 with logit scale 8 = √64: scaled attention is exactly as saturated as unscaled.",
        "Scaling by 1/√d is a temperature: what saturates the softmax is the spread of the "
        "logits, whichever setting made it large. The chart against the logits' spread puts "
        "every setting, scaled or not, on one curve.",
        _TEMPERATURE,
        (Claim(lambda ev: "Scaled with logit scale 8 and unscaled with scale 1 give the same "
                          f"entropy: {_entropy_at(ev, 'scaled', 8.0):.3f} and "
                          f"{_entropy_at(ev, 'unscaled', 1.0):.3f} nats.",
               lambda ev: abs(_entropy_at(ev, "scaled", 8.0)
                              - _entropy_at(ev, "unscaled", 1.0)) < 1e-9),
         Claim(lambda ev: "Over all settings, the entropy falls as the logits' spread grows: "
                          f"rank correlation {_spread_rank_corr(ev):.2f}.",
               lambda ev: _spread_rank_corr(ev) < -0.9)),
        free=_FREE,
    ),
)


def _entropy_at(ev: Evidence, variant: str, logit_scale: float) -> float:
    return sweep_value(ev.saturation, variant, "entropy", logit_scale=logit_scale)


def _logn(ev: Evidence) -> float:
    return float(ev.saturation.log_n.iloc[0])


ATTENTION_PRESETS: dict[str, Preset[AttentionConfig, Evidence]] = {p.id: p for p in _PRESETS}
