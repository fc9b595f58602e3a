"""Charts of the Attention page: core.attention.softmax's tables in, Altair charts out. No Streamlit.

    saturation_curves(table, d=64, selected="scaled")   entropy, max weight, Jacobian norm vs d
    spread_chart(table, selected="scaled")               the same against the logits' spread
    weights_heatmap(weights, image, label, tokens)        one digit's attention, both variants
    training_curves(result, selected="scaled")            the classifiers' loss and accuracy
    gradient_charts(result, selected="scaled")            gradient norms and attention over epochs

Scaled and unscaled are always the same two colours; the variant the page's toggle selects is
drawn thicker. Every colour, shape and dash channel has an explicit domain and range (a null
scale breaks Streamlit's chart theming in the browser).
"""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from core.attention.config import D_GRID
from core.attention.softmax import SATURATED, VARIANTS, AttentionResult
from core.chart_parts import (COUNT_AXIS, LEGEND_BELOW, LOG_AXIS, MUTED, PANEL_H, PANEL_W,
                              finite, no_data, rule, source, tips)

COLORS = {"scaled": "#4c78a8", "unscaled": "#e45756"}
LABELS = {"scaled": "scaled by 1/√d", "unscaled": "unscaled"}
SWEEP_SHAPES = {"d": "circle", "logit_scale": "triangle-up"}
# Three panels side by side fit the page's main column on a laptop (820 px at a 1280 px window,
# beside the sidebar): 230 px ones ran 117 px past it (measured in Chromium).
NARROW_W = 190
DASHES = {"mean": [1, 0], "median": [5, 3], "train": [5, 3], "val": [1, 0],
          "query/key weights": [1, 0], "all other weights": [5, 3]}


def variant_color(legend: bool = True) -> alt.Color:
    return alt.Color("variant:N", title="Logits",
                     scale=alt.Scale(domain=list(VARIANTS), range=[COLORS[v] for v in VARIANTS]),
                     legend=alt.Legend(labelExpr=f"datum.label === 'scaled' ? "
                                                 f"'{LABELS['scaled']}' : datum.label")
                     if legend else None)


def _dash(field: str, domain: list[str], title: str) -> alt.StrokeDash:
    return alt.StrokeDash(f"{field}:N", title=title,
                          scale=alt.Scale(domain=domain, range=[DASHES[v] for v in domain]))


def _dashed_lines(df: pd.DataFrame, dash: alt.StrokeDash, selected: str, **enc) -> list:
    """Lines with points on them, as two layers: a line mark with `point=True` would draw the
    dash legend's symbols as dots, and dashes are what that legend must show."""
    base = alt.Chart(source(df)).encode(color=variant_color(), **enc)
    return [base.mark_line().encode(strokeWidth=_width(selected), strokeDash=dash),
            base.mark_point(filled=True, size=25)]


def _width(selected: str):
    return alt.condition(f"datum.variant === '{selected}'", alt.value(3.0), alt.value(1.4))


def _d_axis() -> alt.X:
    return alt.X("d:Q", title="Query/key width d",
                 scale=alt.Scale(type="log", base=2, domain=[D_GRID[0], D_GRID[-1]]),
                 axis=alt.Axis(values=list(D_GRID), format="d"))


# --- the saturation sweep ----------------------------------------------------------------------
def saturation_curves(table: pd.DataFrame, d: int, selected: str = "scaled") -> alt.HConcatChart:
    """Mean entropy, mean max weight and the softmax Jacobian's norm against d, both variants."""
    rows = table[table["sweep"] == "d"] if len(table) else table
    if rows.empty:
        return no_data("Softmax saturation against d")
    log_n = float(rows["log_n"].iloc[0])
    n = round(math.exp(log_n))
    panels = []
    specs = [("entropy", "Mean attention entropy (nats)", False,
              rule("y", "value", log_n, f"uniform: log {n} = {log_n:.2f}")),
             ("max_weight", "Mean largest attention weight", False,
              rule("y", "value", 1 / n, f"uniform: 1/{n}")),
             ("jacobian", "Softmax Jacobian ‖diag(p) − ppᵀ‖_F", True, [])]
    for metric, title, log, extras in specs:
        if metric == "jacobian":
            df = rows[rows["metric"].isin(["jacobian_norm", "jacobian_median"])].assign(
                statistic=lambda f: f["metric"].map({"jacobian_norm": "mean",
                                                     "jacobian_median": "median"}))
        else:
            df = rows[rows["metric"] == metric].assign(statistic="mean")
        df = finite(df, ["value"], positive=log)
        if df.empty:
            panels.append(no_data(title))
            continue
        y = alt.Y("value:Q", title=title, axis=LOG_AXIS,
                  scale=alt.Scale(type="log") if log else
                  alt.Scale(domain=[0, 1] if metric == "max_weight" else [0, log_n * 1.05]))
        lines = _dashed_lines(df, _dash("statistic", ["mean", "median"], "Over queries"),
                              selected, x=_d_axis(), y=y,
                              tooltip=tips("variant:N", "d:Q", "statistic:N",
                                           alt.Tooltip("value:Q", title=title, format=".3g")))
        here = rule("x", "d", d, f"d = {d}", align="right" if d > 64 else "left",
                    dx=-3 if d > 64 else 3)
        panels.append(alt.layer(*extras, *lines, *here, title=title, width=NARROW_W,
                                height=PANEL_H))
    return _row(panels, "Softmax saturation as the query/key width grows "
                        f"(logit scale {rows['logit_scale'].iloc[0]:g})")


def spread_chart(table: pd.DataFrame, selected: str = "scaled") -> alt.HConcatChart:
    """Entropy share and Jacobian norm against the logits' measured spread: every setting of
    both sweeps, scaled or not, on one curve."""
    if table.empty:
        return no_data("Saturation against the logits' spread")
    wide = table.pivot_table(index=["sweep", "d", "logit_scale", "variant"], columns="metric",
                             values="value").reset_index()
    wide = wide.assign(entropy_share=wide["entropy"] / float(table["log_n"].iloc[0]))
    wide = finite(wide, ["logit_std", "entropy_share", "jacobian_norm"], positive=True)
    if wide.empty:
        return no_data("Saturation against the logits' spread")
    x = alt.X("logit_std:Q", title="Spread of the logits (std over keys)",
              scale=alt.Scale(type="log"), axis=LOG_AXIS)
    shape = alt.Shape("sweep:N", title="Swept",
                      scale=alt.Scale(domain=list(SWEEP_SHAPES), range=list(SWEEP_SHAPES.values())),
                      legend=alt.Legend(labelExpr="datum.label === 'd' ? 'width d' : "
                                                  "'logit scale'"))
    size = alt.condition(f"datum.variant === '{selected}'", alt.value(90), alt.value(45))
    tooltip = tips("variant:N", "d:Q", "logit_scale:Q",
                   alt.Tooltip("logit_std:Q", title="logit spread", format=".3g"),
                   alt.Tooltip("entropy_share:Q", title="entropy / log n", format=".0%"),
                   alt.Tooltip("jacobian_norm:Q", title="mean Jacobian norm", format=".3g"),
                   alt.Tooltip("saturated:Q", title=f"queries with max weight > {SATURATED}",
                               format=".0%"))
    base = alt.Chart(wide).mark_point(filled=True, opacity=0.8).encode(
        x=x, color=variant_color(), shape=shape, size=size, tooltip=tooltip)
    return _row([
        base.encode(y=alt.Y("entropy_share:Q", title="Mean entropy / log n",
                            scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")))
        .properties(title="Entropy", width=PANEL_W, height=PANEL_H),
        base.encode(y=alt.Y("jacobian_norm:Q", title="Mean softmax Jacobian norm",
                            scale=alt.Scale(type="log"), axis=LOG_AXIS))
        .properties(title="Jacobian norm", width=PANEL_W, height=PANEL_H)],
        "What saturates the softmax is the logits' spread, whatever made it large")


def weights_heatmap(weights: pd.DataFrame, image: pd.DataFrame, label: int,
                    tokens: str) -> alt.HConcatChart:
    """The digit, then its attention weights (query rows × key columns), scaled and unscaled."""
    noun = "row" if tokens == "rows" else "patch"
    digit = alt.Chart(image).mark_rect().encode(
        x=alt.X("col:O", title=None, axis=None), y=alt.Y("row:O", title=None, axis=None),
        color=alt.Color("value:Q", title="pixel", legend=None,
                        scale=alt.Scale(domain=[0, 16], scheme="greys")),
        tooltip=tips("row:Q", "col:Q", "value:Q"),
    ).properties(title=f"The digit (a {label})", width=PANEL_H * 2 // 3,
                 height=PANEL_H * 2 // 3)
    panels = [digit]
    for i, variant in enumerate(VARIANTS):
        df = weights[weights["variant"] == variant]
        if df.empty:
            panels.append(no_data(LABELS[variant]))
            continue
        panels.append(alt.Chart(df).mark_rect().encode(
            x=alt.X("key:O", title=f"key ({noun})"),
            y=alt.Y("query:O", title=f"query ({noun})"),
            color=alt.Color("weight:Q", title="weight",
                            scale=alt.Scale(domain=[0, 1], scheme="viridis"),
                            legend=alt.Legend() if i == len(VARIANTS) - 1 else None),
            tooltip=tips("query:Q", "key:Q", alt.Tooltip("weight:Q", format=".3f")),
        ).properties(title=f"Attention weights, {LABELS[variant]}", width=PANEL_H,
                     height=PANEL_H))
    # Independent colour scales: the pixels (0–16, greys) must not stretch the weights' (0–1).
    return alt.hconcat(*panels, title="One real digit: who attends to whom").resolve_scale(
        color="independent")


# --- the classifier ----------------------------------------------------------------------------
def training_curves(result: AttentionResult, selected: str = "scaled") -> alt.HConcatChart:
    """Loss and accuracy per epoch, scaled vs unscaled, train dashed and validation solid."""
    e = finite(result.epochs, ["value"])
    panels = []
    for metric, title in (("loss", "Loss (cross-entropy)"), ("accuracy", "Accuracy")):
        df = e[e["metric"] == metric] if len(e) else e
        if df.empty:
            panels.append(no_data(title))
            continue
        y = alt.Y("value:Q", title=title,
                  **({"scale": alt.Scale(domain=[0, 1]), "axis": alt.Axis(format="%")}
                     if metric == "accuracy" else {}))
        lines = _dashed_lines(df, _dash("split", ["train", "val"], "Split"), selected,
                              x=alt.X("epoch:Q", title="Epoch", axis=COUNT_AXIS),
                              y=y, tooltip=tips("variant:N", "split:N", "epoch:Q",
                                                alt.Tooltip("value:Q", format=".3f")))
        panels.append(alt.layer(*lines, title=title, width=PANEL_W, height=PANEL_H))
    return _row(panels, "The tiny attention classifier on digits")


def gradient_charts(result: AttentionResult, selected: str = "scaled") -> alt.HConcatChart:
    """Per-step weight-gradient norms; per-epoch gradient at the logits and attention entropy."""
    s = result.steps
    grads = s[s["metric"].isin(["grad_qk", "grad_rest"])] if len(s) else s
    grads = finite(grads, ["value"], positive=True)
    if len(grads):
        grads = grads.assign(group=grads["metric"].map({"grad_qk": "query/key weights",
                                                        "grad_rest": "all other weights"}))
    e = result.epochs
    panels = []
    if grads.empty:
        panels.append(no_data("Weight-gradient norms"))
    else:
        panels.append(alt.Chart(source(grads)).mark_line().encode(
            x=alt.X("step:Q", title="Training step", axis=COUNT_AXIS),
            y=alt.Y("value:Q", title="Gradient norm", scale=alt.Scale(type="log"),
                    axis=LOG_AXIS),
            color=variant_color(), strokeWidth=_width(selected),
            strokeDash=_dash("group", ["query/key weights", "all other weights"], "Weights"),
            tooltip=tips("variant:N", "group:N", "step:Q", "epoch:Q",
                         alt.Tooltip("value:Q", format=".3g")),
        ).properties(title="Weight-gradient norms, every step", width=NARROW_W, height=PANEL_H))
    for metric, title, log in (("grad_logits", "Gradient at the attention logits", True),
                               ("entropy", "Attention entropy (validation)", False)):
        df = e[e["metric"] == metric] if len(e) else e
        df = finite(df, ["value"], positive=log)
        if df.empty:
            panels.append(no_data(title))
            continue
        y = alt.Y("value:Q", title="mean ‖∂ℓ/∂s‖ per query" if log else "nats",
                  scale=alt.Scale(type="log") if log else
                  alt.Scale(domain=[0, result.log_n * 1.05]), axis=LOG_AXIS)
        line = alt.Chart(df).mark_line(point=True).encode(
            x=alt.X("epoch:Q", title="Epoch", axis=COUNT_AXIS), y=y,
            color=variant_color(), strokeWidth=_width(selected),
            tooltip=tips("variant:N", "epoch:Q", alt.Tooltip("value:Q", format=".3g")))
        extras = [] if log else rule("y", "value", result.log_n,
                                     f"uniform: log n = {result.log_n:.2f}", MUTED)
        panels.append(alt.layer(*extras, line, title=title, width=NARROW_W, height=PANEL_H))
    return _row(panels, "Where the gradient goes")


def _row(panels: list, title: str) -> alt.HConcatChart:
    """Panels side by side with their legends below, so the row fits beside the sidebar."""
    return alt.hconcat(*panels, title=title).configure_legend(**LEGEND_BELOW)

