"""The shared vocabulary of `core.lab.charts`: constants, data clean-up and chart pieces.

Split from `core.lab.charts` to keep each module readable; the pages use `core.lab.charts` only.
    finite(df, cols)        drop non-finite rows (and ≤ 0 ones, for a log scale)
    thin(df)                at most MAX_STEPS evenly spaced steps
    no_data(title, msg)     the chart shown in place of an empty one
    layer_color(result)     layers coloured in network order, the same in every chart of a run
    state_step(table, e)    the step where the network is in its state after epoch e
    rule(...)               a labelled reference rule, as layers to splice into alt.layer(...)
    layer_panels(...)       per-layer lines over steps, side by side, one legend picking layers
    epoch_param(result, e)  the epoch a chart shows, on a slider under it: scrubbing is client-side
    vega_spec(chart)        the Vega-Lite dict a page draws (no run-time validation, fit-x)
"""

from __future__ import annotations

import json
from typing import NamedTuple

import altair as alt
import numpy as np
import pandas as pd

MAX_STEPS = 600             # distinct steps per chart; beyond this a browser gets sluggish
MAX_FRAME_ROWS = 5000       # Altair's default data-transformer limit (see `source`)
MAX_POINTS = 2000           # data points drawn over a decision boundary
PANEL_W, PANEL_H = 320, 220
# Viridis without its darkest and lightest ends, which vanish on a dark or a light background.
LAYER_SCHEME = {"name": "viridis", "extent": [0.1, 0.9]}
MUTED = "#888888"           # mid grey: legible on Streamlit's light and dark themes alike
ALERT = "#e45756"
SPLITS = {"train": "#4c78a8", "val": "#f58518", "test": "#54a24b"}
ZERO = alt.Y2Datum(0)       # the baseline of histogram bars, drawn as rects from lo to hi
# 1e-4 and 1e+9 rather than 0.0001 and 1,000,000,000; plain labels in between; the minor ticks
# that a log axis leaves unlabelled (empty label) stay so.
LOG_LABELS = ("datum.label && datum.value != 0 && abs(log(abs(datum.value)) / LN10) >= 3.99"
              " ? format(datum.value, '.0e') : datum.label")
LOG_AXIS = alt.Axis(labelExpr=LOG_LABELS)


def finite(df: pd.DataFrame, cols: list[str], *, positive: bool = False) -> pd.DataFrame:
    """Rows whose `cols` are all finite (and > 0 where a log scale will show them), as float64."""
    if df.empty:
        return df
    values = df[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(values).all(axis=1) & ((values > 0).all(axis=1) if positive else True)
    out = df[ok].copy()
    out[cols] = values[ok]  # float32 columns and the store's JSON objects alike
    return out.reset_index(drop=True)


def source(df: pd.DataFrame) -> pd.DataFrame | dict:
    """Data for `alt.Chart`: the frame itself up to Altair's 5,000-row limit, records beyond it.

    Past the default data transformer's limit `to_dict()` raises MaxRowsError, and a deep
    network's long run has 600 steps × 100 layers. Inline records bypass the transformer (they
    are already finite, plain values); smaller frames stay frames, which Streamlit ships
    compactly.
    """
    return df if len(df) <= MAX_FRAME_ROWS else {"values": df.to_dict("records")}


# Steps and epochs are counts: integer ticks only (Vega-Lite would write 0.5 on a short run).
COUNT_AXIS = alt.Axis(format="d", tickMinStep=1)
LEGEND_ROWS = 8   # a layer legend's rows per column: what fits beside a panel (measured)
# A row of two panels is about 750 px wide: with a legend beside it, past a laptop's page
# column (820 px at a 1280 px window, beside the sidebar; measured in Chromium). Such rows put
# their legend below, LEGEND_COLUMNS entries a row.
LEGEND_BELOW = dict(orient="bottom", direction="horizontal")
LEGEND_COLUMNS = 6


def thin(df: pd.DataFrame, limit: int = MAX_STEPS) -> pd.DataFrame:
    """At most `limit` evenly spaced distinct steps, always keeping the first and the last."""
    steps = np.unique(df["step"])
    if len(steps) <= limit:
        return df
    keep = steps[np.unique(np.linspace(0, len(steps) - 1, limit).round().astype(int))]
    return df[df["step"].isin(keep)]


def no_data(title: str, message: str = "no data") -> alt.Chart:
    """Says why there is nothing to draw, in place of an exception or an empty frame."""
    return (alt.Chart(pd.DataFrame({"text": [message]}), title=title, width=PANEL_W, height=120)
            .mark_text(size=14, color=MUTED).encode(text=alt.Text("text:N")))


def layer_color(result, *, legend: bool = True, listed=None, below: bool = False) -> alt.Color:
    """`listed`: the layers the legend names, where a chart draws only some (a legend entry
    without a line reads as a layer with nothing to show); by default all. `below`: the legend
    under the panels, in rows (see LEGEND_BELOW)."""
    # The domain is the whole network, so a layer keeps its colour across charts (even where
    # the output layer has no rows, as for saturation).
    names = list(result.layer_names)
    listed = names if listed is None else [n for n in names if n in set(listed)]
    # Every layer in the legend (Vega-Lite stops at 50 symbols, and cut a 21-layer net's legend
    # at hidden9, the rest below the panel's height): in columns of at most LEGEND_ROWS beside
    # a panel, in rows of LEGEND_COLUMNS below.
    shown = None
    if legend and below:
        shown = alt.Legend(symbolLimit=0, values=listed, **LEGEND_BELOW,
                           columns=min(len(listed), LEGEND_COLUMNS))
    elif legend:
        shown = alt.Legend(symbolLimit=0, columns=-(-len(listed) // LEGEND_ROWS), values=listed)
    return alt.Color("layer:O", sort=names, scale=alt.Scale(domain=names, scheme=LAYER_SCHEME),
                     title="Layer (input → output)", legend=shown)


# Tooltip formats for a number given without one: whole counts with a thousands separator, any
# other quantity to 3 significant digits, as a decimal where one reads (0.94, not 9.4e-01;
# d3's "g" turns exponential below 1e-6 and from 1e3 only past the digits it keeps).
COUNT_FIELDS = {"step", "epoch", "iteration", "t", "d", "row", "col", "query", "key", "count"}
TIP_FORMAT = ".3~g"


# A histogram bin's tooltip: its edges and how many values fell in it.
BIN_TIPS = [alt.Tooltip("lo:Q", title="from", format=".3~g"),
            alt.Tooltip("hi:Q", title="to", format=".3~g"),
            alt.Tooltip("count:Q", title="values", format=",d")]


def tips(*fields) -> list[alt.Tooltip]:
    """Tooltip channels, every quantitative one formatted (COUNT_FIELDS as ",d", the rest as
    TIP_FORMAT) unless it brings its own format.

    Explicit channel objects throughout: for a shorthand string or a plain dict Altair infers
    the class by trying schemas, ~5 ms a channel, which adds up on every scrub of a page."""
    out = []
    for f in fields:
        tip = alt.Tooltip(f) if isinstance(f, str) else f
        shorthand, field = tip["shorthand"], tip["field"]
        name, _, kind = (shorthand if isinstance(shorthand, str)
                         else field if isinstance(field, str) else "").partition(":")
        if (kind == "Q" or tip["type"] == "quantitative") and tip["format"] is alt.Undefined:
            tip["format"] = ",d" if name in COUNT_FIELDS else TIP_FORMAT
        out.append(tip)
    return out


def legend_pick(field: str) -> alt.Parameter:
    return alt.selection_point(fields=[field], bind="legend", name=f"{field}_pick")


def fade(sel: alt.Parameter):
    return alt.OpacityValue(0.12, condition={"param": sel.name, "value": 1.0})


def state_step(table: pd.DataFrame, epoch: int | None) -> int | None:
    """The step where the network is in its state after `epoch` epochs.

    Step s sees the weights after s updates, so the state after e epochs is at the first step of
    training epoch e+1, and the final state at the last step (see core.lab.charts).
    """
    if epoch is None or table.empty:
        return None
    after = table["step"][table["epoch"] == epoch + 1]
    if len(after):
        return int(after.min())
    return int(table["step"].max()) if epoch >= table["epoch"].max() else None


def rule(channel: str, field: str, value: float, label: str, color: str = MUTED, *,
         upto: float | None = None, **text) -> list[alt.Chart]:
    """A dashed reference rule (x: vertical, y: horizontal) and its label at the plot's edge.

    A vertical rule's label goes on its right; given `upto`, the x axis's largest value, on the
    side with room: right of a rule past the middle it ran off the plot, over its last points.

    Returned as layers to splice into a flat `alt.layer(...)`: nested layer charts cost Altair
    a deep copy per level, which made building a panel several times slower.
    """
    if channel == "x" and upto is not None and value > upto / 2:
        text = {"align": "right", "dx": -3, **text}
    base = alt.Chart(pd.DataFrame({field: [value], "label": [label]}))
    pos = {channel: alt.X(f"{field}:Q") if channel == "x" else alt.Y(f"{field}:Q")}
    line = base.mark_rule(color=color, strokeDash=[4, 3], strokeWidth=1.5).encode(
        **pos, tooltip=tips("label:N", f"{field}:Q"))
    edge_px = text.pop("edge", 2)
    edge = {"y": alt.YValue(edge_px)} if channel == "x" else {"x": alt.XValue(edge_px)}
    style = dict(align="left", baseline="top", dx=3) if channel == "x" else dict(
        align="left", baseline="bottom", dx=3, dy=-2)
    label_mark = base.mark_text(color=color, fontSize=11, **{**style, **text})
    return [line, label_mark.encode(**pos, **edge, text=alt.Text("label:N"))]


def divergence_layers(result) -> list[alt.Chart]:
    div = result.divergence
    if not div or div.get("step") is None:
        return []
    # The last step with data: the label goes to its left, below an epoch rule's label.
    return rule("x", "step", int(div["step"]), f"diverged at step {div['step']}", ALERT,
                edge=16, align="right", dx=-3)


EPOCH = "epoch"             # the scrubbed epoch's Vega-Lite parameter (a signal in the browser)
SHOWN = f"datum.epoch == {EPOCH}"   # a transform_filter keeping the scrubbed epoch's rows


def last_epoch(result) -> int:
    return int(result.epochs["epoch"].max()) if len(result.epochs) else 0


def epoch_param(result, epoch: int | None) -> alt.Parameter:
    """The epoch a chart shows, on a range slider drawn under it (starting at `epoch`, the last
    one if None). The chart carries every epoch's rows and filters them by this parameter, so
    scrubbing redraws in the browser without a Streamlit rerun. Each chart is its own Vega view,
    so charts cannot share one: each per-epoch chart has its own slider."""
    last = last_epoch(result)
    start = last if epoch is None else min(max(int(epoch), 0), last)
    return alt.param(name=EPOCH, value=start, bind=alt.binding_range(
        min=0, max=last, step=1, name="This chart at epoch (0 = at initialisation) "))


def epoch_title(before: str, after: str = "") -> dict:
    """A title naming the scrubbed epoch (Vega-Lite evaluates it as the slider moves)."""
    return {"text": {"expr": f"{json.dumps(before)} + {EPOCH} + {json.dumps(after)}"}}


def epoch_rule(result) -> list[alt.Chart]:
    """The "after epoch e" rule of every epoch's state (see `state_step`), showing the scrubbed
    one; its label on the side with room (as `step_panel`'s fixed rule)."""
    steps = [(e, state_step(result.steps, e)) for e in range(last_epoch(result) + 1)]
    df = pd.DataFrame([(e, s, f"after epoch {e}") for e, s in steps if s is not None],
                      columns=[EPOCH, "step", "label"])
    if df.empty:
        return []
    df["right"] = df["step"] > result.steps["step"].max() / 2
    base = alt.Chart(df).transform_filter(SHOWN)
    x = alt.X("step:Q")
    line = base.mark_rule(color=MUTED, strokeDash=[4, 3], strokeWidth=1.5).encode(
        x=x, tooltip=tips("label:N", "step:Q"))
    # One label mark, its side read from each row: a mark a side left one of them with no row
    # at every epoch, and Vega warned of an infinite extent for its empty data.
    label = base.mark_text(
        color=MUTED, fontSize=11, baseline="top",
        align=alt.ExprRef("datum.right ? 'right' : 'left'"),
        dx=alt.ExprRef("datum.right ? -3 : 3")).encode(
        x=x, y=alt.YValue(2), text=alt.Text("label:N"))
    return [line, label]


def step_panel(chart, result, epoch: int | None, title: str, extras=(), *,
               scrubbed: bool = False) -> alt.LayerChart:
    """A step-based panel: reference layers under the data, epoch and divergence rules over it.

    `scrubbed`: the rule follows the chart's `epoch_param` (declared by the caller) instead of
    standing at `epoch`."""
    layers = [*extras, chart]
    if scrubbed:
        layers += epoch_rule(result)
    elif (step := state_step(result.steps, epoch)) is not None:
        layers += rule("x", "step", step, f"after epoch {epoch}",
                       upto=result.steps["step"].max())
    layers += divergence_layers(result)
    # Sizes and title as arguments: `.properties()` validates them, a copy, ~15 ms a call.
    return alt.layer(*layers, title=title, width=PANEL_W, height=PANEL_H)


class Panel(NamedTuple):
    """One per-layer line panel over steps (see `layer_panels`)."""

    metric: str
    title: str
    y_title: str
    log: bool = True
    factor: float = 1.0               # 100 turns a fraction into percent
    domain: list | None = None
    extras: tuple = ()                # reference layers drawn under the lines


def metric_rows(result, metric: str, *, positive: bool, factor: float = 1.0) -> pd.DataFrame:
    rows = result.layers[result.layers["metric"] == metric][["step", "epoch", "layer", "value"]]
    rows = finite(rows, ["value"], positive=positive)
    return thin(rows.assign(value=rows["value"] * factor))


def layer_panels(result, panels: list[Panel], epoch: int | None, title: str, columns: int = 2):
    """Per-layer lines over steps, panels side by side (`columns` to a row, so a row fits the
    Lab's page), one legend picking layers in all; with an `epoch`, a rule at the scrubbed
    epoch's state, on a slider starting there."""
    sel = legend_pick("layer")
    out, declared = [], False
    rows = [metric_rows(result, p.metric, positive=p.log, factor=p.factor) for p in panels]
    # The legend names the layers some panel draws (saturation has no output layer); the
    # colours stay the whole network's.
    color = layer_color(result, below=len(panels) > 1,
                        listed=set().union(*(set(df["layer"]) for df in rows)))
    for p, df in zip(panels, rows):
        if df.empty:
            out.append(no_data(p.title))
            continue
        scale = (alt.Scale(type="log") if p.log else alt.Scale(domain=p.domain) if p.domain
                 else alt.Scale(zero=False))
        # Points as well when steps are few: a line through a single step would be invisible.
        few = df["step"].nunique() <= 40
        chart = alt.Chart(source(df)).mark_line(strokeWidth=1.5, point=few).encode(
            x=alt.X("step:Q", title="Training step", axis=COUNT_AXIS),
            y=alt.Y("value:Q", title=p.y_title, scale=scale, axis=LOG_AXIS),
            color=color, opacity=fade(sel),
            tooltip=tips("layer:N", "step:Q", "epoch:Q", alt.Tooltip("value:Q", format=".4g")))
        if not declared:
            # Declared on one panel and referred to by the others: one legend drives them all,
            # and Altair does not warn about a duplicated parameter.
            chart, declared = chart.add_params(sel), True
        out.append(step_panel(chart, result, epoch, p.title, p.extras, scrubbed=epoch is not None))
    if len(out) == 1:
        chart = out[0].properties(title=title)
    elif len(out) <= columns:
        chart = alt.hconcat(*out, title=title)
    else:
        chart = alt.vconcat(*(alt.hconcat(*out[i:i + columns])
                              for i in range(0, len(out), columns)), title=title)
    return chart if epoch is None else chart.add_params(epoch_param(result, epoch))


def vega_spec(chart: alt.TopLevelMixin) -> dict:
    """The chart's Vega-Lite spec, ready for a page (app_pages/kit/charts.spec_dict).

    The builders' specs are schema-validated by the test suite, so the app skips Altair's
    run-time validation (~150 ms a chart). Streamlit stretches a single or layered chart by
    fitting all of it, title and axes included, into the spec's height, which squashed a
    220 px panel to ~60 px of plot (measured in Chromium); fitting the width alone keeps the
    height. Concatenated and faceted charts keep their own sizes (Vega-Lite fits only single
    and layered views).
    """
    # Per-epoch charts carry every epoch's rows so that they scrub in the browser: a deep run's
    # histograms pass Altair's 5,000-row guard (meant for an accidental big DataFrame), while
    # what a run records is bounded by core.budget.MAX_LAYER_ROWS.
    with alt.data_transformers.disable_max_rows():
        spec = chart.to_dict(validate=False)
    if "mark" in spec or "layer" in spec:
        spec.setdefault("autosize", {"type": "fit-x", "contains": "padding"})
    elif "hconcat" in spec or "concat" in spec:
        # What Vega-Lite makes of Streamlit's default for them ("fit", which it warns about in
        # the browser's console, on most pages, and then replaces with this).
        spec.setdefault("autosize", {"type": "pad", "contains": "padding"})
    return spec


def loss_accuracy(result, epoch: int | None = None):
    """Loss and accuracy per epoch of any family's result (its tidy `epochs` table): train and val lines, test as a point; a rule at `epoch`."""
    df = finite(result.epochs, ["value"])
    sel = legend_pick("split")
    color = alt.Color("split:N", title="Split", legend=alt.Legend(**LEGEND_BELOW),
                      scale=alt.Scale(domain=list(SPLITS), range=list(SPLITS.values())))
    panels, declared = [], False
    # The Lab's runs name their loss (RunResult.loss_title); the other families' is cross-entropy.
    loss_title = getattr(result, "loss_title", "Loss (cross-entropy)")
    for metric, title in (("loss", loss_title), ("accuracy", "Accuracy (%)")):
        d = df[df["metric"] == metric] if len(df) else df
        if d.empty:
            panels.append(no_data(title))
            continue
        if metric == "accuracy":
            d, scale = d.assign(value=d["value"] * 100), alt.Scale(domain=[0, 100])
        else:  # a log axis only when the loss spans orders of magnitude (an exploding run)
            v = d["value"]
            log = (v > 0).all() and v.max() > 100 * v.min()
            scale = alt.Scale(type="log") if log else alt.Scale(zero=False)
        base = alt.Chart(d).encode(
            x=alt.X("epoch:Q", title="Epoch (0 = at initialisation)", axis=COUNT_AXIS),
            y=alt.Y("value:Q", title=title, scale=scale, axis=LOG_AXIS),
            color=color, opacity=fade(sel),
            tooltip=tips("split:N", "epoch:Q", alt.Tooltip("value:Q", title=metric, format=".4g")))
        lines = base.transform_filter(alt.datum.split != "test").mark_line(point=True)
        if not declared:
            lines, declared = lines.add_params(sel), True
        # The test point once there is one (after the last epoch): while a run trains, an empty
        # layer made Vega warn of an infinite extent in the browser's console.
        test = ([base.transform_filter(alt.datum.split == "test").mark_point(
            shape="diamond", size=90, filled=True)] if (d["split"] == "test").any() else [])
        layers = [lines, *test, *(rule("x", "epoch", epoch, f"epoch {epoch}",
                                       upto=d["epoch"].max()) if epoch is not None else [])]
        panels.append(alt.layer(*layers, title=title, width=PANEL_W, height=PANEL_H))
    return alt.hconcat(*panels, title="Loss and accuracy per epoch (test: after the last epoch)")
