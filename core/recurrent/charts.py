"""Chart builders for recurrent runs: a `RecurrentResult` in, an Altair chart out. No Streamlit.

    time_grad_heatmap(result)            ‖∂L/∂h_t‖: time step × training step, log colour
    time_grad_lines(result, epoch)       ‖∂L/∂h_t‖ against t at a few moments of training (log)
    time_ratio(result, epoch)            ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ over training (log)
    step_curves(result, epoch)           loss and pre-clip gradient norm per step, clip rate
    loss_accuracy(result, epoch)         per-epoch curves (the Training Lab's builder)

The conventions of `core.lab.charts` hold: non-finite values are dropped (a diverged run shows gaps),
values ≤ 0 are dropped before a log scale, an empty selection says "no data", a scrubbed epoch e
is the state after e epochs, and long runs are thinned to at most MAX_STEPS steps. Every colour
channel has an explicit scale: the browser's theming breaks on a null one.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from core.chart_parts import (ALERT, COUNT_AXIS, LOG_AXIS, MAX_STEPS, PANEL_H, PANEL_W, SPLITS,
                              divergence_layers, finite, loss_accuracy, no_data, rule, source,
                              state_step, step_panel, thin, tips)

__all__ = ["time_grad_heatmap", "time_grad_lines", "time_ratio", "step_curves", "loss_accuracy"]

MAX_CELLS = 20_000   # heatmap rectangles: beyond this a browser redraws sluggishly
MAX_MOMENTS = 6      # lines in the profile chart
GRAD_LABEL = "‖∂L/∂h_t‖"
# Streamlit stretches a single chart to the page's width by fitting the whole chart, title and
# axes included, into the spec's height, which squashes the plot to a sliver (measured in
# Chromium: 220 px given, 60 px of plot left). Fitting the width alone keeps the height.
FIT_WIDTH = alt.AutoSizeParams(type="fit-x", contains="padding")


def _unit(result) -> str:
    return "row" if result.config.sequence == "rows" else f"{result.config.step_size}-pixel chunk"


def time_grad_heatmap(result):
    """Time steps (t = 1 at the top) × training steps, coloured by ‖∂L/∂h_t‖ on a log scale."""
    T = result.config.seq_len
    title = (f"{GRAD_LABEL} at each time step over training (log colour; t = 1 is the first "
             f"{_unit(result)}, blank = zero)")
    df = finite(result.time_grads, ["value"], positive=True)
    if df.empty:
        return no_data(title)
    df = thin(df, min(MAX_STEPS, max(10, MAX_CELLS // T)))
    # Each cell reaches to the next recorded step, so sparse recording leaves no holes.
    steps = np.unique(df["step"])
    gap = int(np.median(np.diff(steps))) if len(steps) > 1 else 1
    df = df.assign(step_end=df["step"].map(dict(zip(steps, [*steps[1:], steps[-1] + gap]))),
                   t0=df["t"] - 0.5, t1=df["t"] + 0.5)
    heat = alt.Chart(source(df)).mark_rect().encode(
        x=alt.X("step:Q", title="Training step", axis=COUNT_AXIS, scale=alt.Scale(nice=False)),
        x2=alt.X2("step_end:Q"),
        y=alt.Y("t0:Q", title="Time step t", scale=alt.Scale(domain=[0.5, T + 0.5], nice=False,
                                                              reverse=True)),
        y2=alt.Y2("t1:Q"),
        color=alt.Color("value:Q", title=GRAD_LABEL, scale=alt.Scale(type="log",
                                                                     scheme="viridis"),
                        legend=alt.Legend(format=".0e")),
        tooltip=tips("t:Q", "step:Q", "epoch:Q", alt.Tooltip("value:Q", title=GRAD_LABEL,
                                                                 format=".3g")))
    return alt.layer(heat, *divergence_layers(result), title=title, width=2 * PANEL_W,
                     height=min(400, max(160, 6 * T)), autosize=FIT_WIDTH)


def _moments(result, tg: pd.DataFrame, epoch: int | None) -> list[tuple[int, int]]:
    """(epoch e, the recorded step showing the state after e) for a few e, always 0 and the last."""
    last = int(tg["epoch"].max())
    wanted = set(np.linspace(0, last, min(last + 1, MAX_MOMENTS - 1)).round().astype(int))
    if epoch is not None:
        wanted.add(min(max(0, int(epoch)), last))
    out = []
    for e in sorted(wanted):
        step = state_step(tg, int(e))
        if step is not None and step not in [s for _, s in out]:
            out.append((int(e), step))
    return out


def time_grad_lines(result, epoch: int | None = None):
    """‖∂L/∂h_t‖ against t (log), one line per moment of training; `epoch`'s line is thicker."""
    title = f"{GRAD_LABEL} against the time step: the vanishing-through-time picture (log scale)"
    tg = finite(result.time_grads, ["value"], positive=True)
    if tg.empty:
        return no_data(title)
    parts = []
    for e, step in _moments(result, tg, epoch):
        label = "at initialisation" if e == 0 and step == 0 else f"after epoch {e}"
        rows = tg[tg["step"] == step]
        parts.append(rows.assign(moment=f"{label} (step {step})",
                                 chosen="yes" if e == epoch else "no"))
    df = pd.concat(parts, ignore_index=True)
    labels = list(dict.fromkeys(df["moment"]))
    return alt.Chart(df).mark_line(point=result.config.seq_len <= 32).encode(
        x=alt.X("t:Q", title=f"Time step t (1 = first {_unit(result)})",
                scale=alt.Scale(domain=[1, result.config.seq_len], nice=False),
                axis=COUNT_AXIS),
        y=alt.Y("value:Q", title=f"{GRAD_LABEL} (log)", scale=alt.Scale(type="log"),
                axis=LOG_AXIS),
        color=alt.Color("moment:O", title="State", sort=labels,
                        scale=alt.Scale(domain=labels, scheme={"name": "viridis",
                                                               "extent": [0.1, 0.9]})),
        # Sorted: unsorted, Vega-Lite warned in the browser's console against a stroke width
        # on a discrete field.
        strokeWidth=alt.StrokeWidth("chosen:N", legend=None, sort=["yes", "no"],
                                    scale=alt.Scale(domain=["yes", "no"], range=[3.5, 1.5])),
        tooltip=tips("moment:N", "t:Q", alt.Tooltip("value:Q", title=GRAD_LABEL, format=".3g")),
    ).properties(title=title, width=2 * PANEL_W, height=PANEL_H + 40, autosize=FIT_WIDTH)


def time_ratio(result, epoch: int | None = None):
    """‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ over training (log), with a rule at 1: no decay through time."""
    T = result.config.seq_len
    title = f"First over last: ‖∂L/∂h_1‖ / ‖∂L/∂h_{T}‖ over training (log)"
    df = finite(result.time_ratio(), ["ratio"], positive=True)
    if df.empty:
        return no_data(title, "no finite, non-zero ratio recorded")
    line = alt.Chart(thin(df)).mark_line(point=df["step"].nunique() <= 60, strokeWidth=1.5,
                                         color=SPLITS["train"]).encode(
        x=alt.X("step:Q", title="Training step", axis=COUNT_AXIS),
        y=alt.Y("ratio:Q", title="‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ (log)", scale=alt.Scale(type="log"),
                axis=LOG_AXIS),
        tooltip=tips("step:Q", "epoch:Q", alt.Tooltip("ratio:Q", format=".2e")))
    extras = rule("y", "ratio", 1.0, "1: no decay through time")
    return step_panel(line, result, epoch, title, extras).properties(width=2 * PANEL_W,
                                                                     autosize=FIT_WIDTH)


def step_curves(result, epoch: int | None = None):
    """Training loss and the gradient norm before clipping, per step; with clipping on, the
    threshold and the share of clipped steps per epoch."""
    cfg = result.config
    title = (f"Per step: loss, and the gradient norm before clipping at {cfg.clip_norm:g}"
             if cfg.clip_norm else "Per step: loss and gradient norm (clipping is off)")
    cols = ["step", "epoch", "loss", "grad_norm", "clipped"]
    steps = result.steps[cols]
    panels = []
    width = PANEL_W if not cfg.clip_norm else PANEL_W * 4 // 5   # room for the clip-rate bars
    loss = thin(finite(steps[["step", "epoch", "loss"]], ["loss"], positive=True))
    if loss.empty:
        panels.append(no_data("Training loss per step"))
    else:
        v = loss["loss"]
        log = v.max() > 30 * v.min()     # a run whose loss explodes spans orders of magnitude
        chart = alt.Chart(loss).mark_line(strokeWidth=1.2, color=SPLITS["train"]).encode(
            x=alt.X("step:Q", title="Training step", axis=COUNT_AXIS),
            y=alt.Y("loss:Q", title="Training loss (batch)" + (" (log)" if log else ""),
                    scale=alt.Scale(type="log") if log else alt.Scale(zero=False),
                    axis=LOG_AXIS),
            tooltip=tips("step:Q", "epoch:Q", alt.Tooltip("loss:Q", format=".4g")))
        panels.append(step_panel(chart, result, epoch, "Training loss per step").properties(
            width=width))
    norm_title = "Gradient norm before clipping (log)"
    norms = thin(finite(steps[["step", "epoch", "grad_norm", "clipped"]],
                        ["grad_norm", "clipped"], positive=False))
    norms = norms[norms["grad_norm"] > 0] if len(norms) else norms
    if norms.empty:
        panels.append(no_data(norm_title))
    else:
        chart = alt.Chart(norms).mark_line(strokeWidth=1.2, color=SPLITS["val"]).encode(
            x=alt.X("step:Q", title="Training step", axis=COUNT_AXIS),
            y=alt.Y("grad_norm:Q", title="‖∇‖ before clipping (log)",
                    scale=alt.Scale(type="log"), axis=LOG_AXIS),
            tooltip=tips("step:Q", "epoch:Q", alt.Tooltip("grad_norm:Q", format=".4g"),
                         "clipped:Q"))
        extras = rule("y", "grad_norm", cfg.clip_norm, f"clip threshold {cfg.clip_norm:g}",
                      ALERT) if cfg.clip_norm else []
        panels.append(step_panel(chart, result, epoch, norm_title, extras).properties(
            width=width))
    if cfg.clip_norm:
        rate_title = "Clipped steps per epoch"
        clipped = finite(steps[["epoch", "clipped"]], ["clipped"])
        if clipped.empty:
            panels.append(no_data(rate_title))
        else:
            rate = clipped.groupby("epoch", as_index=False)["clipped"].mean()
            panels.append(alt.Chart(rate.assign(rate=rate["clipped"] * 100)).mark_bar(
                color=ALERT).encode(
                x=alt.X("epoch:O", title="Epoch", axis=alt.Axis(labelAngle=0)),
                y=alt.Y("rate:Q", title="Clipped steps (%)", scale=alt.Scale(domain=[0, 100])),
                tooltip=tips("epoch:Q", alt.Tooltip("rate:Q", title="% of steps clipped",
                                                    format=".1f")),
            ).properties(title=rate_title, width=PANEL_W * 2 // 5, height=PANEL_H))
    return alt.hconcat(*panels, title=title)
