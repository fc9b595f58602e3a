"""The Lab's network drawn as layers of units, coloured by what the run measured at each epoch.

    network_diagram(result, epoch)     # two panels: gradient norm and saturated/inactive share

Width and depth are to scale: every drawn unit stands for the same number of real units (the
title says how many), so a 784-pixel input is taller than a 64-unit layer. Unit counts come from
the run's records: a layer's weight histogram counts fan_in × fan_out weights. Each layer is
coloured at the scrubbed epoch's state (see core.lab.charts) by its back-propagated gradient norm
‖∂L/∂z‖ on a log scale and by its share of saturated or inactive units, both scales spanning
every epoch, so colour changes are real changes. The input layer has no such measure: grey.
"""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from core.chart_parts import (
    LOG_LABELS, MUTED, PANEL_H, SHOWN, epoch_param, epoch_title, finite, last_epoch, no_data,
    source, state_step, tips,
)
from core.lab.metrics import CATALOGUE

MAX_DOTS = 12   # drawn units in the widest layer: more would blur into a bar at this size
INPUT = "input"


def layer_units(result) -> dict[str, int] | None:
    """Units per layer, input first, from the first weight histogram of each layer (fan_in ×
    fan_out weights, each layer's fan_in being the previous layer's units); None if missing."""
    h = result.histograms
    weights = h[(h["kind"] == "weight") & (h["epoch"] == h["epoch"].min())] if len(h) else h
    counts = weights.groupby("layer")["count"].sum() if len(weights) else pd.Series(dtype=float)
    names = list(result.layer_names)
    if not names or any(n not in counts for n in names):
        return None
    width = result.config.width
    units = {INPUT: int(round(counts[names[0]] / width))}
    units |= {n: width for n in names[:-1]}
    units[names[-1]] = int(round(counts[names[-1]] / width))
    return units


def _per_epoch(result, metric: str, factor: float, positive: bool) -> pd.DataFrame:
    """(epoch, layer, value) at each epoch's state; a diverged run's later states show the last
    step whose value is finite."""
    rows = finite(result.layers[result.layers["metric"] == metric][["step", "layer", "value"]],
                  ["value"], positive=positive)
    frames = []
    for e in range(last_epoch(result) + 1):
        step = state_step(result.layers, e)
        before = rows if step is None else rows[rows["step"] <= step]
        if len(before):
            at = before[before["step"] == before.groupby("layer")["step"].transform("max")]
            frames.append(at.assign(epoch=e, value=at["value"] * factor))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["step", "layer", "value", "epoch"])


def network_diagram(result, epoch: int | None = None):
    """Layers as columns of units, edges between neighbours, coloured per layer at the
    scrubbed epoch: by ‖∂L/∂z‖ (log) and, for a non-linear activation, by its flat share."""
    title = "The network, layer by layer"
    if result.config.model == "cnn":
        return no_data(title, "drawn for the dense networks (mlp, residual_mlp)")
    units = layer_units(result)
    if units is None:
        return no_data(title)
    per_dot = max(1, math.ceil(max(units.values()) / MAX_DOTS))
    nodes, capped = [], []
    for x, (layer, n) in enumerate(units.items()):
        dots = max(1, math.ceil(n / per_dot))
        nodes += [(layer, x, j - (dots - 1) / 2, n) for j in range(dots)]
        capped.append((layer, x, (dots - 1) / 2 + 0.9, f"{n} units" if layer != INPUT else
                       f"{n} inputs"))
    nodes = pd.DataFrame(nodes, columns=["layer", "x", "y", "units"])
    labels = pd.DataFrame(capped, columns=["layer", "x", "y", "label"])
    # Every drawn unit of a layer joined to every drawn unit of the next.
    pairs = [(a.x, a.y, b.y) for xa in range(len(units) - 1)
             for a in nodes[nodes["x"] == xa].itertuples()
             for b in nodes[nodes["x"] == xa + 1].itertuples()]
    edges = pd.DataFrame(pairs, columns=["x", "y", "y2"]).assign(x2=lambda d: d["x"] + 1)
    height = max(PANEL_H, 18 * (nodes["y"].max() - nodes["y"].min() + 3))
    scale_x = alt.Scale(domain=[-0.5, len(units) - 0.5], nice=False)
    scale_y = alt.Scale(domain=[float(nodes["y"].min()) - 1, float(labels["y"].max()) + 0.6],
                        nice=False)
    no_axis = dict(axis=None)
    base = [alt.Chart(edges).mark_rule(color=MUTED, opacity=0.25, strokeWidth=0.6).encode(
                x=alt.X("x:Q", scale=scale_x, **no_axis), x2=alt.X2("x2:Q"),
                y=alt.Y("y:Q", scale=scale_y, **no_axis), y2=alt.Y2("y2:Q")),
            alt.Chart(labels).mark_text(color=MUTED, fontSize=10, baseline="top").encode(
                x=alt.X("x:Q"), y=alt.Y("y:Q"), text=alt.Text("label:N"))]
    names = list(units)
    panels = []
    for metric, legend_title, log in _measures(result):
        m = CATALOGUE[metric]
        values = _per_epoch(result, metric, 100.0 if m.share else 1.0, positive=log)
        if values.empty:
            continue
        dots = nodes.merge(values[["epoch", "layer", "value", "step"]], on="layer",
                           how="left").assign(metric=metric)
        # Layers without the measure (the input; the output has no activation) in grey, as
        # their own mark: a continuous colour scale drops rows with no value.
        unmeasured = alt.Chart(dots[dots["value"].isna()][["layer", "x", "y", "units"]]) \
            .mark_circle(size=90, color="#cccccc", stroke="#333333", strokeWidth=0.5,
                         opacity=1).encode(x=alt.X("x:Q"), y=alt.Y("y:Q"),
                                           tooltip=tips("layer:N", "units:Q"))
        domain = [0.0, 100.0] if m.share else [float(values["value"].min()),
                                               float(values["value"].max())]
        marks = alt.Chart(source(dots.dropna(subset=["value"]))).transform_filter(
            SHOWN).mark_circle(size=90, stroke="#333333", strokeWidth=0.5, opacity=1).encode(
            x=alt.X("x:Q"), y=alt.Y("y:Q"),
            color=alt.Color("value:Q", title=legend_title, scale=alt.Scale(
                type="log" if log else "linear", scheme="viridis", domain=domain),
                legend=alt.Legend(labelExpr=LOG_LABELS) if log else alt.Legend()),
            tooltip=tips("layer:N", "units:Q", alt.Tooltip("value:Q", title=m.label,
                                                            format=".3g"), "step:Q"))
        panels.append(alt.layer(*base, unmeasured, marks, title=m.title, width=max(
            200, 46 * len(names)), height=height))
    if not panels:
        return no_data(title)
    chart = panels[0] if len(panels) == 1 else alt.hconcat(*panels).resolve_scale(
        color="independent")
    skip = " (skip connections not drawn)" if result.config.model == "residual_mlp" else ""
    return chart.properties(title=epoch_title(
        f"{title} after epoch ", f"; one dot = {per_dot} unit{'s' if per_dot > 1 else ''}{skip}"),
    ).add_params(epoch_param(result, epoch))


def _measures(result) -> list[tuple[str, str, bool]]:
    """(metric, legend title, log scale) of each panel: the gradient, then the flat share."""
    out = [("out_grad_norm", "‖∂L/∂z‖ (log)", True)]
    if result.flat_metric is not None:
        out.append((result.flat_metric, f"{CATALOGUE[result.flat_metric].label} (%)", False))
    return out
