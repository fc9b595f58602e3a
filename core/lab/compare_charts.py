"""Overlay charts for two (or more) runs: one colour per run, the same axes for both.

    results = {"A": run_a, "B": run_b}
    loss_accuracy(results, epoch)                 train (solid) and val (dashed) per run
    layer_profile(results, "weight_grad_norm", epoch)   one value per layer at a state, per run
    over_training(results, "weight_grad_norm")    first hidden and last layer over the steps
    total_grad_norm(results)                      pre-clip gradient norm over steps, thresholds
    side_by_side(results, histograms, "weight", epoch)   a single-run chart per run,
                                                  next to each other on shared scales

Same conventions as `core.lab.charts` (non-finite values dropped, log axes drop values ≤ 0, an
empty selection says "no data", epoch e = the state after e epochs); the single-run charts
there serve the side-by-side layout.
"""

from __future__ import annotations

import textwrap
from dataclasses import replace

import altair as alt
import pandas as pd

from core.chart_parts import (
    COUNT_AXIS, LEGEND_BELOW, LOG_AXIS, PANEL_H, PANEL_W, finite, legend_pick, no_data, rule,
    state_step, thin, tips,
)
from core.lab.compare import layer_order
from core.lab.metrics import CATALOGUE, power

RUN_COLORS = ["#4c78a8", "#e45756", "#54a24b", "#b279a2"]   # A blue, B red, …


def _run_color(results: dict, legend: alt.Legend | None = None) -> alt.Color:
    names = list(results)
    return alt.Color("run:N", title="Run", legend=legend or alt.Undefined,
                     scale=alt.Scale(domain=names, range=RUN_COLORS[:len(names)]))


BELOW = alt.Legend(**LEGEND_BELOW)   # as every row of panels (core.chart_parts)


def loss_accuracy(results: dict, epoch: int | None = None):
    """Loss and accuracy per epoch for every run: train solid, validation dashed."""
    df = pd.concat([r.epochs.assign(run=name) for name, r in results.items()], ignore_index=True)
    df = finite(df[df["split"].isin(["train", "val"])], ["value"])
    sel = legend_pick("run")
    panels = []
    titles = {r.loss_title for r in results.values()}
    loss_title = titles.pop() if len(titles) == 1 else "Loss (each run's own)"
    for metric, title in (("loss", loss_title), ("accuracy", "Accuracy (%)")):
        d = df[df["metric"] == metric]
        if d.empty:
            panels.append(no_data(title))
            continue
        if metric == "accuracy":
            d, scale = d.assign(value=d["value"] * 100), alt.Scale(domain=[0, 100])
        else:
            v = d["value"]
            log = (v > 0).all() and v.max() > 100 * v.min()
            scale = alt.Scale(type="log") if log else alt.Scale(zero=False)
        lines = alt.Chart(d).mark_line(point=True).encode(
            x=alt.X("epoch:Q", title="Epoch (0 = at initialisation)", axis=COUNT_AXIS),
            y=alt.Y("value:Q", title=title, scale=scale, axis=LOG_AXIS),
            color=_run_color(results, BELOW),
            strokeDash=alt.StrokeDash("split:N", title="Split", legend=BELOW,
                                      scale=alt.Scale(domain=["train", "val"],
                                                      range=[[1, 0], [5, 3]])),
            opacity=alt.OpacityValue(0.15, condition={"param": sel.name, "value": 1.0}),
            tooltip=tips("run:N", "split:N", "epoch:Q",
                         alt.Tooltip("value:Q", title=metric, format=".4g")))
        if not panels:
            lines = lines.add_params(sel)
        extra = (rule("x", "epoch", epoch, f"epoch {epoch}", upto=d["epoch"].max())
                 if epoch is not None else [])
        # 40 px narrower than the Lab's: the pair and its axes fit a laptop's page (820 px).
        panels.append(alt.layer(lines, *extra, title=title, width=PANEL_W - 40,
                                height=PANEL_H))
    return alt.hconcat(*panels, title="Loss and accuracy per epoch: train solid, validation dashed")


def layer_profile(results: dict, metric: str, epoch: int, *, reference: float | None = None):
    """One value per layer at the state after `epoch`, a line per run (layers input → output),
    on the catalogue's scale (shares as %), with an optional reference rule."""
    m = CATALOGUE[metric]
    log, factor = m.log, 100.0 if m.share else 1.0
    title = f"{m.title} per layer after epoch {epoch}" + (
        f" (rule of thumb ~{power(reference)})" if reference is not None else "")
    parts = []
    for name, r in results.items():
        step = state_step(r.layers, epoch)
        rows = r.layers[(r.layers["metric"] == metric) & (r.layers["step"] == step)]
        parts.append(rows.assign(run=name, value=rows["value"] * factor))
    df = finite(pd.concat(parts, ignore_index=True), ["value"], positive=log)
    if df.empty:
        return no_data(title)
    order = layer_order(results)
    line = alt.Chart(df).mark_line(point=alt.OverlayMarkDef(size=60)).encode(
        x=alt.X("layer:O", sort=order, scale=alt.Scale(domain=order),
                title="Layer (input → output)"),
        y=alt.Y("value:Q", title=m.axis,
                scale=alt.Scale(type="log") if log else alt.Scale(zero=True),
                axis=LOG_AXIS if log else alt.Axis()),
        color=_run_color(results),
        tooltip=tips("run:N", "layer:N", "step:Q", alt.Tooltip("value:Q", format=".4g")))
    extra = rule("y", "value", reference, power(reference)) if reference is not None else []
    return alt.layer(line, *extra, title=title, width=max(PANEL_W, 36 * len(order)),
                     height=PANEL_H)


def flat_profile(results: dict, epoch: int):
    """`layer_profile` of the flat share each run has: saturation (sigmoid, tanh), inactive
    (ReLU family), or both side by side when A and B differ in that."""
    kinds = [k for k in ("saturation", "inactive") if any(r.flat_metric == k
                                                            for r in results.values())]
    if not kinds:
        return no_data("Saturated or inactive units per layer", "linear networks have no "
                       "flat region")
    profiles = [layer_profile(results, k, epoch) for k in kinds]
    return profiles[0] if len(profiles) == 1 else alt.hconcat(*profiles)


def over_training(results: dict, metric: str = "weight_grad_norm"):
    """The first hidden layer and the last layer over the steps, per run (log axis): the gap
    between the two lines of a run is its vanishing (or exploding) factor."""
    m = CATALOGUE[metric]
    title = f"{m.title}: first hidden layer (solid) and last layer (dashed) over training"
    parts = []
    for name, r in results.items():
        first, last = r.layer_names[0], r.layer_names[-1]
        rows = r.layers[(r.layers["metric"] == metric) & r.layers["layer"].isin([first, last])]
        parts.append(thin(rows).assign(
            run=name, role=rows["layer"].map({first: "first hidden", last: "last"})))
    df = finite(pd.concat(parts, ignore_index=True), ["value"], positive=True)
    if df.empty:
        return no_data(title)
    return alt.Chart(df, title=title, width=2 * PANEL_W, height=PANEL_H).mark_line().encode(
        x=alt.X("step:Q", title="Training step", axis=COUNT_AXIS),
        y=alt.Y("value:Q", title=m.axis, scale=alt.Scale(type="log"), axis=LOG_AXIS),
        color=_run_color(results),
        strokeDash=alt.StrokeDash("role:N", title="Layer", scale=alt.Scale(
            domain=["first hidden", "last"], range=[[1, 0], [5, 3]])),
        detail="layer:N",
        tooltip=tips("run:N", "layer:N", "step:Q", alt.Tooltip("value:Q", format=".3~g")))


def total_grad_norm(results: dict):
    """The whole gradient's norm before clipping, per step and run, with each run's threshold."""
    grad_norm = CATALOGUE["grad_norm"]
    title = f"{grad_norm.axis}, dashed: each run's clip threshold"
    df = pd.concat([thin(r.steps).assign(run=name) for name, r in results.items()],
                   ignore_index=True)
    df = finite(df, ["grad_norm"], positive=True)
    if df.empty:
        return no_data(title)
    lines = alt.Chart(df).mark_line().encode(
        x=alt.X("step:Q", title="Training step", axis=COUNT_AXIS),
        y=alt.Y("grad_norm:Q", title=f"{grad_norm.symbol} before clipping (log)",
                scale=alt.Scale(type="log"),
                axis=LOG_AXIS),
        color=_run_color(results),
        tooltip=tips("run:N", "step:Q", alt.Tooltip("grad_norm:Q", format=".3~g"),
                     alt.Tooltip("clipped:Q", title="clipped (0/1)")))
    thresholds = pd.DataFrame([{"run": name, "value": r.config.clip_norm}
                               for name, r in results.items() if r.config.clip_norm])
    layers = [lines]
    if len(thresholds):
        layers.append(alt.Chart(thresholds).mark_rule(strokeDash=[6, 4]).encode(
            y=alt.Y("value:Q"), color=_run_color(results),
            tooltip=tips("run:N", alt.Tooltip("value:Q", title="clip_norm"))))
    return alt.layer(*layers, title=title, width=2 * PANEL_W, height=PANEL_H)


def update_ratio_profile(results: dict, epoch: int):
    """update:data per layer with Karpathy's rule of thumb as a reference."""
    return layer_profile(results, "update_data_ratio", epoch,
                         reference=CATALOGUE["update_data_ratio"].target)


# Side by side, each panel is narrowed until its plot is at most this wide, so a pair of
# panels fits a laptop's page beside the sidebar: 820 px at 1280 px wide, less two y axes and a
# legend (~250 px with update:data's wide ticks; at 245 px its legend ran 17 px past); and a
# panel title longer than TITLE_CHARS is wrapped to that plot's width.
PAIR_PLOT = 230
# Each small multiple has its own axes: three a row for each run drew the pair 975 px wide,
# past a 940 px column (seen in Chromium: the histograms of Weights & ratios).
PAIR_COLUMNS = 2
TITLE_CHARS = 40


def side_by_side(results: dict, build, *args):
    """`build(result, *args)` for each run, panel by panel: each row holds one panel of every
    run, on shared x, y and colour scales (a 1e-6 and a 0.3 gradient no longer look alike; a
    layer keeps its colour in both, each run's chart being built over every run's layers in
    network order). Panels of one run that measure different things (a forward and a backward
    norm) stay in different rows, on scales of their own. A faceted panel (histograms) keeps
    each layer's own range."""
    order = layer_order(results)
    charts = {name: build(replace(r, layer_names=order), *args) for name, r in results.items()}
    first = next(iter(charts.values()))
    title = getattr(first, "title", alt.Undefined)
    shared = dict(x="shared", y="shared", color="shared")
    rows = []
    for panels in zip(*(_panels(c) for c in charts.values())):
        rows.append(alt.hconcat(*(
            alt.vconcat(_narrow(panel), title=f"Run {name}").resolve_scale(**shared)
            for name, panel in zip(charts, panels))).resolve_scale(**shared))
    stacked = rows[0] if len(rows) == 1 else alt.vconcat(*rows).resolve_scale(
        x="independent", y="independent", color="independent")
    _keep_params(stacked, charts.values())
    return stacked.properties(title=title) if title is not alt.Undefined and len(rows) > 1 \
        else stacked


def _keep_params(stacked, charts) -> None:
    """Give the pair the parameters its panels read. A chart of several panels holds them at
    its top (Altair lifts them there), which the panels taken out of it leave behind: the page
    then fails with 'Unrecognized signal name' (seen in Chromium). One of each name serves
    both runs: the epoch slider moves A and B together, and a legend pick's views are both
    runs' (picking a layer in one highlights it in both)."""
    kept = {p.name: p for p in _params(stacked)}
    for chart in charts:
        for param in _params(chart):
            if param.name not in kept:
                kept[param.name] = param.copy()
            elif isinstance(getattr(param, "views", None), list):
                kept[param.name].views = list(dict.fromkeys([*kept[param.name].views,
                                                             *param.views]))
    stacked.params = list(kept.values())


def _params(chart) -> list:
    params = getattr(chart, "params", alt.Undefined)
    return list(params) if isinstance(params, list) else []


def _views(chart) -> tuple[list, str | None]:
    """A chart's sub-views and how they are laid out: "concat" (side by side or stacked),
    "facet" (one inner view in columns), None for a single or layered view."""
    for part in ("hconcat", "vconcat", "concat"):
        children = getattr(chart, part, alt.Undefined)
        if isinstance(children, list):
            return children, "concat"
    inner = getattr(chart, "spec", alt.Undefined)
    if inner is not alt.Undefined and not isinstance(inner, dict):
        return [inner], "facet"
    return [], None


def _panels(chart) -> list:
    """The chart's panels in reading order: every single, layered or faceted view in it."""
    children, how = _views(chart)
    if how != "concat":
        return [chart]
    return [panel for child in children for panel in _panels(child)]


def _width(view) -> float:
    """A panel's plot width: its own, or a facet's inner width times its columns."""
    children, how = _views(view)
    if how == "facet":
        columns = getattr(view, "columns", alt.Undefined)
        return _width(children[0]) * (columns if isinstance(columns, int) else 1)
    width = getattr(view, "width", alt.Undefined)
    if isinstance(width, (int, float)):
        return width
    return max([0, *(_width(layer) for layer in getattr(view, "layer", None) or [])])


def _narrow(panel):
    """The panel at most PAIR_PLOT wide (its views' widths scaled alike), small multiples at
    most PAIR_COLUMNS a row, and its title wrapped, in place (a freshly built chart)."""
    columns = getattr(panel, "columns", alt.Undefined)
    if _views(panel)[1] == "facet" and isinstance(columns, int) and columns > PAIR_COLUMNS:
        panel.columns = PAIR_COLUMNS
    title = getattr(panel, "title", alt.Undefined)
    if isinstance(title, str) and len(title) > TITLE_CHARS:
        panel.title = textwrap.wrap(title, TITLE_CHARS)
    width = _width(panel)
    factor = min(1.0, PAIR_PLOT / width) if width else 1.0
    _scale(panel, factor)
    return panel


def _scale(view, factor: float) -> None:
    width = getattr(view, "width", alt.Undefined)
    if isinstance(width, (int, float)):
        view.width = max(40, int(width * factor))
    for child in _views(view)[0] + (getattr(view, "layer", None) or []):
        _scale(child, factor)
