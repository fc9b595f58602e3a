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
from urllib.parse import quote

import altair as alt
import pandas as pd

from core.chart_parts import (
    EPOCH, LOG_LABELS, MUTED, PANEL_H, PANEL_W, epoch_param, epoch_title, finite, last_epoch,
    no_data, state_step, tips,
)
from core.lab.metrics import CATALOGUE

MAX_DOTS = 12   # drawn units in the widest layer: more would blur into a bar at this size
INPUT = "input"
# Pixels between layers, and a panel's widest: past it a deep network's layers close up (its
# dots shrink, its layers' labels give way to one line in the title) rather than run off the
# page. Two panels stand side by side up to SIDE_BY_SIDE_W each (with their legends they fill
# a laptop's column), else one above the other: a 15-layer net's pair ran 1,800 px wide.
LAYER_GAP, MAX_PANEL_W, SIDE_BY_SIDE_W = 46, 2 * PANEL_W, 300
DOT_SIZE = 90       # a dot's area in px², as long as the gap leaves room for it
# A drawn unit's row in its layer's values at the scrubbed epoch: "layer|epoch", as `key` below.
SHOWN_KEY = f"datum.layer + '|' + {EPOCH}"


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
    """Layers as columns of units, lines joining neighbours, coloured per layer at the
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
    width = min(max(200, LAYER_GAP * len(units)), MAX_PANEL_W)
    gap = width / len(units)
    size = min(DOT_SIZE, 0.38 * gap ** 2)   # a dot's diameter at most 0.7 of the gap
    # Where the layers close up, their labels ("256 units" at 10 px) would run into each other.
    closed_up = LAYER_GAP * len(units) > MAX_PANEL_W
    sizes = ": " + " → ".join(_runs_of(labels["label"])) if closed_up else ""
    height = max(PANEL_H, 18 * (nodes["y"].max() - nodes["y"].min() + 3))
    scale_x = alt.Scale(domain=[-0.5, len(units) - 0.5], nice=False)
    scale_y = alt.Scale(domain=[float(nodes["y"].min()) - 1, float(labels["y"].max()) + 0.6],
                        nice=False)
    base = [_mesh(nodes, scale_x, scale_y, width, height)]
    if not sizes:
        base.append(alt.Chart(labels).mark_text(color=MUTED, fontSize=10, baseline="top")
                    .encode(x=alt.X("x:Q"), y=alt.Y("y:Q"), text=alt.Text("label:N")))
    panels = []
    for metric, legend_title, log in _measures(result):
        m = CATALOGUE[metric]
        values = _per_epoch(result, metric, 100.0 if m.share else 1.0, positive=log)
        if values.empty:
            continue
        # One row a layer and epoch, looked up by each drawn unit at the scrubbed epoch (a row
        # per drawn unit and epoch made the spec ten times larger).
        values = values.assign(metric=metric,
                               key=values["layer"] + "|" + values["epoch"].astype(str))
        measured = nodes["layer"].isin(set(values["layer"]))
        # Layers without the measure (the input; the output has no activation) in grey, as
        # their own mark: a continuous colour scale drops rows with no value.
        unmeasured = alt.Chart(nodes[~measured]).mark_circle(
            size=size, color="#cccccc", stroke="#333333", strokeWidth=0.5, opacity=1).encode(
            x=alt.X("x:Q"), y=alt.Y("y:Q"), tooltip=tips("layer:N", "units:Q"))
        domain = [0.0, 100.0] if m.share else [float(values["value"].min()),
                                               float(values["value"].max())]
        marks = alt.Chart(nodes[measured]).transform_calculate(key=SHOWN_KEY).transform_lookup(
            lookup="key", from_=alt.LookupData(
                values[["key", "layer", "epoch", "metric", "value", "step"]], key="key",
                fields=["value", "step"])).transform_filter("isValid(datum.value)").mark_circle(
            size=size, stroke="#333333", strokeWidth=0.5, opacity=1).encode(
            x=alt.X("x:Q"), y=alt.Y("y:Q"),
            color=alt.Color("value:Q", title=legend_title, scale=alt.Scale(
                type="log" if log else "linear", scheme="viridis", domain=domain),
                legend=alt.Legend(labelExpr=LOG_LABELS) if log else alt.Legend()),
            tooltip=tips("layer:N", "units:Q", alt.Tooltip("value:Q", title=m.label,
                                                            format=".3g"), "step:Q"))
        panels.append(alt.layer(*base, unmeasured, marks, title=m.title, width=width,
                                height=height))
    if not panels:
        return no_data(title)
    # One above the other as a one-column concat: Streamlit stretches each part of a vconcat to
    # the page's width, which would leave the lines' image (sized in pixels) behind the dots.
    chart = panels[0] if len(panels) == 1 else alt.concat(
        *panels, columns=len(panels) if width <= SIDE_BY_SIDE_W else 1).resolve_scale(
        color="independent")
    skip = " (skip connections not drawn)" if result.config.model == "residual_mlp" else ""
    return chart.properties(title=epoch_title(
        f"{title} after epoch ",
        f"; one dot = {per_dot} unit{'s' if per_dot > 1 else ''}{sizes}{skip}"),
    ).add_params(epoch_param(result, epoch))


def _runs_of(labels: pd.Series) -> list[str]:
    """The layers' labels with repeats run together: "64 inputs", "15 × 64 units", …"""
    out: list[list] = []
    for label in labels:
        if out and out[-1][1] == label:
            out[-1][0] += 1
        else:
            out.append([1, label])
    return [label if n == 1 else f"{n} × {label}" for n, label in out]


def _measures(result) -> list[tuple[str, str, bool]]:
    """(metric, legend title, log scale) of each panel: the gradient, then the flat share."""
    out = [("out_grad_norm", "‖∂L/∂z‖ (log)", True)]
    if result.flat_metric is not None:
        out.append((result.flat_metric, f"{CATALOGUE[result.flat_metric].label} (%)", False))
    return out


def _mesh(nodes: pd.DataFrame, scale_x: alt.Scale, scale_y: alt.Scale, width: int,
          height: float) -> alt.Chart:
    """Every drawn unit of a layer joined to every drawn unit of the next, as one SVG image
    placed on the chart's scales. A rule mark per line (up to 144 a pair of layers, ~500 in
    each panel) made a stored run's Lab page draw 0.11 s slower in Chromium (median of 21 new
    tabs, interleaved with this on one machine), the Training tab 0.05 s."""
    (x0, x1), (y0, y1) = scale_x.domain, scale_y.domain
    top, bottom = float(nodes["y"].max()), float(nodes["y"].min())
    last = int(nodes["x"].max())
    # The image's size in pixels, spanning the first to the last layer and the top to the
    # bottom drawn unit on the chart's scales; the lines drawn in those pixels.
    w, h = width * last / (x1 - x0), height * (top - bottom) / (y1 - y0)
    px = w / last
    py = h / (top - bottom) if top > bottom else 0.0
    lines = "".join(
        f'<line x1="{xa * px:.1f}" y1="{(top - a.y) * py:.1f}" x2="{(xa + 1) * px:.1f}" '
        f'y2="{(top - b.y) * py:.1f}"/>'
        for xa in range(last) for a in nodes[nodes["x"] == xa].itertuples()
        for b in nodes[nodes["x"] == xa + 1].itertuples())
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.1f}" height="{max(h, 1):.1f}" '
           f'viewBox="0 0 {w:.1f} {max(h, 1):.1f}"><g stroke="{MUTED}" stroke-opacity="0.25" '
           f'stroke-width="0.6">{lines}</g></svg>')
    place = pd.DataFrame({"x": [0.0], "y": [top], "url": ["data:image/svg+xml," + quote(svg)]})
    return alt.Chart(place).mark_image(width=w, height=max(h, 1), align="left", baseline="top",
                                       aspect=False).encode(
        x=alt.X("x:Q", scale=scale_x, axis=None), y=alt.Y("y:Q", scale=scale_y, axis=None),
        url="url:N")
