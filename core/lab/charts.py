"""Chart builders: a `RunResult`'s tables in, an Altair chart out. No Streamlit, no training.

The app's pages draw these with `st.altair_chart(chart, use_container_width=True)`:

    loss_accuracy(result, epoch)        grad_norm_heatmap(result)       grad_norm_lines(result)
    gradient_flow(result, epoch)        flat_dead(result)               ratios(result)
    clipping(result)                    activation_curve("tanh", preact)
    decision_boundary(result, epoch)
    divergence_rule(result)             # what the step-based charts add when a run blew up
    live_training(result)               # drawn growing while the run trains

The histograms are core.lab.histogram_charts; the network diagram, unit traces and sharpness
have modules of their own beside this one.

Conventions every builder keeps:
  * layers are coloured in network order on a sequential scheme, so depth reads as colour, the
    same layer has the same colour in every chart of a run, and clicking the legend picks layers
    (shift-click for several);
  * non-finite values are dropped (a diverged run shows gaps, never an error), values ≤ 0 are
    dropped before a log scale, and an empty selection gives a chart that says "no data";
  * a scrubbed `epoch` e is the network's state after e epochs (0 = at initialisation). Step s
    sees the weights after s updates, so that state is at the first step of training epoch e+1
    (the last step, for the final epoch): the step-based charts mark it there;
  * a per-epoch chart carries every epoch's rows and shows one through `epoch_param`, a slider
    under the chart starting at `epoch`: scrubbing redraws in the browser, no rerun. Its axes
    span every epoch, so what moves between epochs is visible as motion;
  * long runs are thinned to at most MAX_STEPS evenly spaced steps, so a spec stays small enough
    for a browser.
"""

from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd

from core.activations import curve
from core.chart_parts import (
    ALERT, BIN_TIPS, COUNT_AXIS, LEGEND_BELOW, LOG_AXIS, LOG_LABELS, MAX_POINTS, MUTED, PANEL_H,
    PANEL_W, SHOWN, SPLITS, ZERO, Panel, divergence_layers, epoch_param, epoch_title, finite,
    last_epoch, layer_color, layer_panels, metric_rows, no_data, rule, source, state_step,
    step_panel, thin, tips,
)
from core.chart_parts import loss_accuracy  # noqa: F401 - the Lab's first chart, shared
from core.activations import flat_region
from core.lab.metrics import CATALOGUE, FLAT_WHEN, dead_symbol, power

FLAT_WORDS = {"saturation": "saturated", "inactive": "inactive"}
UPDATE_DATA = CATALOGUE["update_data_ratio"]


def divergence_rule(result) -> alt.LayerChart | None:
    """A vertical rule and label at the step where the run produced NaN/inf; None if it didn't."""
    parts = divergence_layers(result)
    return alt.layer(*parts) if parts else None


# --- training curves --------------------------------------------------------------------------
LIVE_STEPS = 200   # recorded steps a live chart draws: it is rebuilt up to twice a second


def live_training(result):
    """What a run shows while it trains, redrawn after each epoch: the loss per epoch and every
    layer's back-propagated gradient ‖∂L/∂z‖, side by side on one epoch axis that spans the
    whole run, so the curves grow to the right instead of the axes rescaling. Step s sits at
    s / (steps an epoch): the weights after that many epochs of updates."""
    title = f"Training: epoch {result.epochs_done} of {result.config.epochs}"
    domain = alt.Scale(domain=[0, result.config.epochs], nice=False)
    x = alt.X("at:Q", title="Epoch", scale=domain, axis=COUNT_AXIS)
    rows = result.epochs[(result.epochs["metric"] == "loss") & (result.epochs["split"] != "test")]
    losses = finite(rows, ["value"]).assign(at=lambda d: d["epoch"])
    loss = alt.Chart(losses, title=result.loss_title, width=PANEL_W, height=PANEL_H
                     ).mark_line(point=True).encode(
        x=x, y=alt.Y("value:Q", title="Loss", scale=alt.Scale(zero=False)),
        # The legend inside the panel: two outside legends would not fit the Lab's width.
        color=alt.Color("split:N", title=None, legend=alt.Legend(orient="top-right"),
                        scale=alt.Scale(domain=["train", "val"],
                                        range=[SPLITS["train"], SPLITS["val"]])),
        tooltip=tips("split:N", "epoch:Q", alt.Tooltip("value:Q", format=".4g")))
    m = CATALOGUE["out_grad_norm"]
    grads = thin(metric_rows(result, "out_grad_norm", positive=True), LIVE_STEPS)
    per_epoch = int((result.steps["epoch"] == 1).sum()) or 1
    grad = alt.Chart(source(grads.assign(at=grads["step"] / per_epoch)),
                     title=f"{m.title} per layer (log scale)", width=PANEL_W, height=PANEL_H
                     ).mark_line(strokeWidth=1.5).encode(
        x=x, y=alt.Y("value:Q", title=m.symbol or m.label, scale=alt.Scale(type="log"),
                     axis=LOG_AXIS),
        color=layer_color(result),
        tooltip=tips("layer:N", "step:Q", "epoch:Q", alt.Tooltip("value:Q", format=".4g")))
    # Splits and layers are coloured apart: each panel keeps its own legend.
    return alt.hconcat(loss if len(losses) else no_data(result.loss_title),
                       grad if len(grads) else no_data(m.title), title=title
                       ).resolve_scale(color="independent")


# --- gradients --------------------------------------------------------------------------------
def grad_norm_heatmap(result, metric: str = "weight_grad_norm"):
    """Layers (input at top) × steps, coloured by the metric on a log scale."""
    m = CATALOGUE[metric]
    title = f"{m.title} per layer over training (log colour)"
    df = metric_rows(result, metric, positive=True)
    if df.empty:
        return no_data(title)
    # Each cell reaches to the next recorded step, so sparse recording leaves no holes.
    steps = np.unique(df["step"])
    gap = int(np.median(np.diff(steps))) if len(steps) > 1 else 1
    df["step_end"] = df["step"].map(dict(zip(steps, [*steps[1:], steps[-1] + gap])))
    heat = alt.Chart(source(df)).mark_rect().encode(
        x=alt.X("step:Q", title="Training step", axis=COUNT_AXIS, scale=alt.Scale(nice=False)),
        x2=alt.X2("step_end:Q"),
        y=alt.Y("layer:O", sort=list(result.layer_names), title="Layer (input at top)"),
        color=alt.Color("value:Q", title=m.symbol or m.label, scale=alt.Scale(
            type="log", scheme="viridis"), legend=alt.Legend(labelExpr=LOG_LABELS)),
        tooltip=tips("layer:N", "step:Q", "epoch:Q", alt.Tooltip("value:Q", title=metric)))
    layers = [heat, *divergence_layers(result)]
    height = min(600, max(120, 22 * df["layer"].nunique()))
    return alt.layer(*layers, title=title, width=2 * PANEL_W, height=height)


def grad_norm_lines(result, metric: str = "weight_grad_norm", epoch: int | None = None):
    """One line per layer over steps on a log axis; rule at the state after `epoch`."""
    return layer_panels(result, [metric_panel(metric)], epoch,
                        f"{CATALOGUE[metric].title} per layer over training (log scale)")


def gradient_flow(result, epoch: int | None = None):
    """Mean and max |∇W| per layer at the state after each epoch (the classic plot_grad_flow),
    scrubbed from `epoch`; the log axis spans every epoch's bars.

    A diverged run's later states have no finite gradient: their bars are the last step that
    has (the tooltip's step says which)."""
    stats = {"weight_grad_max_abs": "max |∇W|", "weight_grad_mean_abs": "mean |∇W|"}
    rows = finite(result.layers[result.layers["metric"].isin(stats)], ["value"], positive=True)
    frames = []
    for e in range(last_epoch(result) + 1):
        step = state_step(result.layers, e)
        before = rows if step is None else rows[rows["step"] <= step]
        if len(before):
            frames.append(before[before["step"] == before["step"].max()].assign(epoch=e))
    title = epoch_title("Gradient flow after epoch ", ": mean and max |∇W| per layer")
    if not frames:
        return no_data("Gradient flow: mean and max |∇W| per layer")
    df = pd.concat(frames, ignore_index=True)
    df = df.assign(statistic=df["metric"].map(stats),
                   front=(df["metric"] == "weight_grad_mean_abs").astype(int))
    labels = list(stats.values())
    # A bar on a log axis rises from the axis's bottom: at the smallest value it had no height
    # (a layer's mean bar vanished, seen in Chromium). The axis starts at the power of ten below.
    bottom = 10 ** math.floor(math.log10(float(df["value"].min())))
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("layer:O", sort=list(result.layer_names), title="Layer (input → output)"),
        # Overlaid, not stacked: the faint max bar behind, the solid mean bar in front.
        y=alt.Y("value:Q", stack=None, axis=LOG_AXIS, title="|∇W| of the layer's weights (log)",
                scale=alt.Scale(type="log", domain=[bottom, float(df["value"].max())])),
        # Colour and opacity of one field make one legend, each entry as its bars are drawn
        # (`legend=None` on either removed it), below the bars (beside them, Compare's pair ran
        # past a laptop's column). The opacity is sorted as the colour: unsorted, Vega-Lite
        # warned against opacity on a discrete field.
        color=alt.Color("statistic:N", title="Statistic", legend=alt.Legend(**LEGEND_BELOW),
                        scale=alt.Scale(domain=labels, range=["#4c9f9f", "#3b5ba5"])),
        opacity=alt.Opacity("statistic:N", sort=labels,
                            scale=alt.Scale(domain=labels, range=[0.45, 1.0])),
        order=alt.Order("front:Q"),
        tooltip=tips("layer:N", "statistic:N", alt.Tooltip("value:Q", format=".4g"), "step:Q"),
    ).transform_filter(SHOWN).add_params(epoch_param(result, epoch)).properties(
        title=title, width=max(PANEL_W, 40 * df["layer"].nunique()), height=PANEL_H)


# Forward: the signal's size entering each activation; backward: the gradient at each layer's
# output and on its weights. One above the other, they show where a run's scale grows or shrinks.
LAYER_NORMS = {"forward": ("Forward: the signal", ("preact_std",)),
               "backward": ("Backward: the gradient", ("out_grad_norm", "weight_grad_norm"))}


def layer_norms(result, step: int = 0):
    """Per-layer forward (std of z) and backward (‖∂L/∂z‖, ‖∇W‖) sizes at one step, as bars on
    a log axis: the whole network at initialisation (step 0), even for a run that diverged at
    its first update and has no curve to show."""
    title = f"Every layer at step {step}" + (" (at initialisation)" if step == 0 else "")
    rows = finite(result.layers[result.layers["step"] == step], ["value"], positive=True)
    panels = []
    for panel_title, metrics in LAYER_NORMS.values():
        df = rows[rows["metric"].isin(metrics)]
        if df.empty:
            panels.append(no_data(panel_title))
            continue
        names = [CATALOGUE[m].symbol or CATALOGUE[m].label for m in metrics]
        df = df.assign(statistic=df["metric"].map(dict(zip(metrics, names))))
        panels.append(alt.Chart(df, title=panel_title).mark_bar().encode(
            x=alt.X("layer:O", sort=list(result.layer_names), title="Layer (input → output)"),
            xOffset=alt.XOffset("statistic:N", sort=names),
            y=alt.Y("value:Q", stack=None, scale=alt.Scale(type="log"), axis=LOG_AXIS,
                    title=" and ".join(names) + " (log)" if len(names) > 1 else
                    f"{CATALOGUE[metrics[0]].label} (log)"),
            color=alt.Color("statistic:N", title="Measure", sort=names,
                            scale=alt.Scale(domain=names, range=["#3b5ba5", "#e0a040"][:len(names)]
                                            if len(names) > 1 else ["#4c9f9f"])),
            tooltip=tips("layer:N", "statistic:N", alt.Tooltip("value:Q", format=".4g"),
                         "step:Q"),
        ).properties(width=2 * PANEL_W, height=PANEL_H))
    return alt.vconcat(*panels, title=title).resolve_scale(color="independent")


def loss_steps(result):
    """The training loss and the total gradient norm at every step: what a run without
    per-epoch records (a watched loop's, core.watch) shows in place of `loss_accuracy`."""
    grad_norm = CATALOGUE["grad_norm"]
    panels = []
    for column, title, y_title, log in (
            ("loss", "Training loss per step", "Loss", False),
            ("grad_norm", grad_norm.axis, f"{grad_norm.symbol} (log)", True)):
        # Only this column: the other's NaN would reach the spec.
        df = thin(finite(result.steps[["step", "epoch", column]], [column], positive=log))
        if df.empty:
            panels.append(no_data(title))
            continue
        line = alt.Chart(df).mark_line(strokeWidth=1.2, color=SPLITS["train"]).encode(
            x=alt.X("step:Q", title="Training step", axis=COUNT_AXIS),
            y=alt.Y(f"{column}:Q", title=y_title, axis=LOG_AXIS if log else alt.Axis(),
                    scale=alt.Scale(type="log") if log else alt.Scale(zero=False)),
            tooltip=tips("step:Q", alt.Tooltip(f"{column}:Q", format=".4g")))
        panels.append(step_panel(line, result, None, title))
    return alt.hconcat(*panels, title="Training, step by step")


def clipping(result):
    """Total gradient norm (before clipping) over steps, the threshold, how often it clipped."""
    cfg = result.config
    title = (f"Gradient clipping: total norm clipped to {cfg.clip_norm:g}" if cfg.clip_norm
             else f"Gradient clipping: each element clipped to ±{cfg.clip_value:g}"
             if cfg.clip_value else "Gradient clipping is off: total gradient norm shown")
    grad_norm = CATALOGUE["grad_norm"]
    norm_title = grad_norm.axis
    cols = ["step", "epoch", "grad_norm", "clipped"]  # only these: no NaN loss in the spec
    steps = finite(result.steps[cols], cols[2:])
    df = thin(steps[steps["grad_norm"] > 0])  # > 0: a log axis
    if df.empty:
        norm = no_data(norm_title)
    else:
        line = alt.Chart(df).mark_line(strokeWidth=1.2, color=SPLITS["train"]).encode(
            x=alt.X("step:Q", title="Training step", axis=COUNT_AXIS),
            y=alt.Y("grad_norm:Q", title=f"{grad_norm.symbol} before clipping (log)", axis=LOG_AXIS,
                    scale=alt.Scale(type="log")),
            tooltip=tips("step:Q", "epoch:Q", alt.Tooltip("grad_norm:Q", format=".4g"),
                         "clipped:Q"))
        extras = rule("y", "grad_norm", cfg.clip_norm, f"clip threshold {cfg.clip_norm:g}",
                      ALERT) if cfg.clip_norm else []
        norm = step_panel(line, result, None, norm_title, extras)
    if not (cfg.clip_norm or cfg.clip_value):
        return norm.properties(title=title)
    rate_title = "Clipped steps per epoch"
    if steps.empty:
        return alt.hconcat(norm, no_data(rate_title), title=title)
    rate = steps.groupby("epoch", as_index=False)["clipped"].mean()
    bars = alt.Chart(rate.assign(rate=rate["clipped"] * 100)).mark_bar(color=ALERT).encode(
        x=alt.X("epoch:O", title="Epoch", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("rate:Q", title="Clipped steps (%)", scale=alt.Scale(domain=[0, 100])),
        tooltip=tips("epoch:Q", alt.Tooltip("rate:Q", title="% of steps clipped", format=".1f")),
    ).properties(title=rate_title, width=PANEL_W * 2 // 3, height=PANEL_H)
    return alt.hconcat(norm, bars, title=title)


# --- saturation and scale ---------------------------------------------------------------------
def flat_dead(result, epoch: int | None = None):
    """Saturated (sigmoid, tanh) or inactive (ReLU family) and dead units (%) per layer over
    steps, and each layer's mean activation (a sigmoid layer driven to an asymptote shows there
    before its units count as saturated)."""
    kind = result.flat_metric
    if kind is None:
        return no_data("Saturated, inactive and dead units per layer",
                       "a linear network has no flat region")
    dead = metric_panel("dead")._replace(
        title=f"{CATALOGUE['dead'].label} {dead_symbol(result.probe_examples)}")
    panels = [metric_panel(kind), dead]
    if result.config.activation == "sigmoid":
        # On sigmoid's whole range, so a drift towards an asymptote reads as one.
        panels.append(metric_panel("act_mean", tuple(rule("y", "value", 0.5, "0.5 = σ(0)")))
                      ._replace(domain=[0, 1]))
    return layer_panels(result, panels, epoch, f"{FLAT_WORDS[kind].capitalize()} and dead "
                        "units per layer" + (", and the mean activation" if len(panels) > 2
                                              else ""))


def ratios(result, epoch: int | None = None):
    """grad:data and update:data per layer over steps (log), with the usual healthy band."""
    (low, high), target = UPDATE_DATA.healthy, UPDATE_DATA.target
    band = alt.Chart(pd.DataFrame({"value": [low], "high": [high], "label": [
        f"usual healthy range ({power(low)} … {power(high)})"]}))
    # The band's label at the plot's left edge, as the rule's: anchored at the right edge
    # (PANEL_W) it stuck out of the narrower panels of Compare's side-by-side layout.
    extras = (band.mark_rect(color=SPLITS["test"], opacity=0.13).encode(
                  y=alt.Y("value:Q"), y2=alt.Y2("high:Q"), tooltip=tips("label:N")),
              band.mark_text(color=MUTED, align="left", baseline="bottom", dx=3, dy=-3,
                             fontSize=11).encode(y=alt.Y("value:Q"), x=alt.XValue(0),
                                                 text=alt.Text("label:N")),
              *rule("y", "value", target, f"{power(target)}: Karpathy's rule of thumb"))
    return layer_panels(result, [metric_panel("grad_data_ratio"),
                                 metric_panel("update_data_ratio", extras)],
                        epoch, "How big the gradients and the updates are next to the weights")


def metric_panel(metric: str, extras: tuple = ()) -> Panel:
    """A per-layer panel of a catalogue metric: its title, axis and scale."""
    m = CATALOGUE[metric]
    return Panel(metric, m.title, m.axis, log=m.log, factor=100.0 if m.share else 1.0,
                 domain=[0, 100] if m.share else None, extras=extras)


# --- activations and the toy playground -------------------------------------------------------
def _runs(z: np.ndarray, mask: np.ndarray, label: str) -> pd.DataFrame:
    """Contiguous runs of True in `mask` as intervals [z0, z1]."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return pd.DataFrame({"z0": z[starts], "z1": z[ends], "label": label})


def activation_curve(name: str, preact: pd.DataFrame | None = None, *, small: bool = False):
    """f(z), f′(z) and the flat regions (shaded, named in the subtitle: a label inside the plot
    overprinted a small multiple's axis); optionally one layer's pre-activation histogram.
    `small`: a small multiple titled by the name alone, legend below."""
    hist = finite(preact, ["lo", "hi", "count"]) if preact is not None else pd.DataFrame()
    lo, hi = -6.0, 6.0
    if not hist.empty:  # widen the curve to wherever the layer's units are
        lo, hi = min(lo, float(hist["lo"].min())), max(hi, float(hist["hi"].max()))
    c = curve(name, np.linspace(lo, hi, 481))
    lines = finite(pd.concat([pd.DataFrame({"z": c["z"], "value": c["f"], "series": "f(z)"}),
                              pd.DataFrame({"z": c["z"], "value": c["df"], "series": "f′(z)"})]),
                   ["z", "value"])
    kind = flat_region(name)
    regions = _runs(c["z"], c["flat"], f"{FLAT_WORDS[kind]}: {FLAT_WHEN}" if kind else "")
    layers = []
    if not regions.empty:
        z_tips = [alt.Tooltip(f"{end}:Q", format=".2f") for end in ("z0", "z1")]
        layers.append(alt.Chart(regions).mark_rect(color=ALERT, opacity=0.12).encode(
            x=alt.X("z0:Q"), x2=alt.X2("z1:Q"), tooltip=tips("label:N", *z_tips)))
    layers.append(alt.Chart(lines).mark_line(strokeWidth=2).encode(
        x=alt.X("z:Q", title="Pre-activation z", scale=alt.Scale(domain=[lo, hi], nice=False)),
        y=alt.Y("value:Q", title="f(z) and f′(z)"),
        color=alt.Color("series:N", title=None, scale=alt.Scale(
            domain=["f(z)", "f′(z)"], range=[SPLITS["train"], SPLITS["val"]]),
                        legend=alt.Legend(orient="bottom") if small else alt.Undefined),
        tooltip=tips(alt.Tooltip("z:Q", format=".2f"), "series:N",
                     alt.Tooltip("value:Q", format=".4g"))))
    shaded = (f"shaded: {FLAT_WORDS[kind]}" + ("" if small else f", {FLAT_WHEN}") if kind
              else "no flat region")
    if small:
        return alt.layer(*layers).properties(
            title=alt.TitleParams(name, subtitle=shaded, subtitleColor=ALERT),
            width=PANEL_W, height=180)
    title = f"{name}: f(z), its slope f′(z), and where it is flat"
    chart = alt.layer(*layers)
    if not hist.empty:
        total = hist["count"].sum()
        hist = hist.assign(share=hist["count"] / total * 100 if total > 0 else 0.0)
        bars = alt.Chart(hist).mark_rect(color=MUTED, opacity=0.45).encode(
            x=alt.X("lo:Q"), x2=alt.X2("hi:Q"), y2=ZERO,
            y=alt.Y("share:Q", title="Layer's pre-activations (% per bin)",
                    axis=alt.Axis(orient="right")),
            tooltip=tips(*BIN_TIPS[:2],
                         alt.Tooltip("share:Q", title="% of values", format=".2f")))
        # Its own (right) axis: the bars fill the plot's height, the curve keeps its units.
        chart = alt.layer(bars, chart).resolve_scale(y="independent")
        title += ", with a layer's pre-activations (grey)"
    return chart.properties(title=alt.TitleParams(title, subtitle=shaded, subtitleColor=ALERT),
                            width=2 * PANEL_W, height=PANEL_H + 40)


FIELD_COLOURS = ["#ef9a86", "#f7f7f7", "#8fbfe0"]   # P(class 1) = 0, 0.5, 1


def decision_boundary(result, epoch: int, size: int = 380):
    """P(class 1) over the 2-D input plane at `epoch`, with the train and test points on top:
    a `size` px square at equal x and y scales, the legends below it (so two fit side by side)."""
    title = f"Decision boundary after epoch {epoch}: P(class 1)"
    grid = result.boundary
    grid = finite(grid[grid["epoch"] == epoch], ["x", "y", "p"]) if len(grid) else grid
    if grid.empty:
        return no_data(title, "no decision boundary here: only 2-D toy datasets have one")
    # Cells centred on the grid points, reaching 0.6 of a grid spacing each way: neighbours
    # overlap by a pixel or so, so no anti-aliased seam draws a white grid over the field.
    half = {c: float(np.median(np.diff(np.unique(grid[c])))) * 0.6 if grid[c].nunique() > 1
            else 0.05 for c in ("x", "y")}
    grid = grid.assign(x0=grid["x"] - half["x"], x1=grid["x"] + half["x"],
                       y0=grid["y"] - half["y"], y1=grid["y"] + half["y"])
    xs, ys = ([float(grid[f"{c}0"].min()), float(grid[f"{c}1"].max())] for c in ("x", "y"))
    # Equal units on both axes: the shorter extent widened to the longer, about its centre (the
    # trainer's grid is square already; a stored grid of another shape keeps its aspect).
    span = max(xs[1] - xs[0], ys[1] - ys[0])
    xs, ys = ([(a + b - span) / 2, (a + b + span) / 2] for a, b in (xs, ys))
    below = {"orient": "bottom", "direction": "horizontal"}
    # Opaque: translucent cells darken where they overlap.
    heat = alt.Chart(source(grid)).mark_rect().encode(
        x=alt.X("x0:Q", title="x₁", scale=alt.Scale(domain=xs, nice=False)), x2=alt.X2("x1:Q"),
        y=alt.Y("y0:Q", title="x₂", scale=alt.Scale(domain=ys, nice=False)), y2=alt.Y2("y1:Q"),
        color=alt.Color("p:Q", title="P(class 1)", legend=alt.Legend(**below, gradientLength=90),
                        # Pale ends of red–blue: the points, in its deep ends, stand out.
                        scale=alt.Scale(domain=[0, 0.5, 1], range=FIELD_COLOURS)),
        tooltip=tips(*(alt.Tooltip(f"{c}:Q", format=f) for c, f in
                       (("x", ".2f"), ("y", ".2f"), ("p", ".2f")))))
    pts = result.points
    if len(pts):
        pts = finite(pts[pts["split"].isin(["train", "test"])], ["x", "y", "label"])
    layers = [heat]
    if not pts.empty:
        pts = pts.sample(min(len(pts), MAX_POINTS), random_state=0)
        pts = pts.assign(cls="class " + pts["label"].astype(int).astype(str))
        # A white outline: a class-0 (red) point reads on the red region as on the blue one.
        layers.append(alt.Chart(pts).mark_point(filled=True, size=34, stroke="white",
                                                strokeWidth=1.0, opacity=1).encode(
            x=alt.X("x:Q"), y=alt.Y("y:Q"),
            # The two ends of the heatmap's red–blue scheme: class 0 red, class 1 blue.
            fill=alt.Fill("cls:N", title="Class", legend=alt.Legend(**below), scale=alt.Scale(
                domain=["class 0", "class 1"], range=["#b2182b", "#2166ac"])),
            # No legend: the page says circles are training points, triangles test points
            # (three legends in a row were wider than the square).
            shape=alt.Shape("split:N", legend=None, scale=alt.Scale(
                domain=["train", "test"], range=["circle", "triangle-up"])),
            tooltip=tips("cls:N", "split:N", alt.Tooltip("x:Q", format=".2f"),
                         alt.Tooltip("y:Q", format=".2f"))))
    # A fixed size (autosize "pad"): fitting the width to a page column would stretch the
    # square back into a strip.
    return alt.layer(*layers).resolve_scale(color="independent").properties(
        title=title, width=size, height=size, autosize=alt.AutoSizeParams(type="pad"))
