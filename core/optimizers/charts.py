"""Chart builders for the Optimizers page: `core.optimizers.race.race` tables in, Altair charts out.

No Streamlit, no optimisation:

    contour(surface, table, iteration)     the surface (log-spaced colour bands), each
                                           optimizer's path, minima, start, and where each
                                           optimizer is at `iteration`; a click selects a cell
                                           ("start": its centre x and y)
    loss_curves(table, iteration)          loss per iteration on a log axis, a rule at `iteration`

Each optimizer keeps one colour in both charts whichever are enabled (a fixed domain, never a
null scale: Streamlit's browser theming crashes on `"scale": null` colour channels), and a click
on the legend picks optimizers (shift-click for several). Paths are thinned to at most
`chart_parts.MAX_STEPS` points per optimizer so a spec stays small.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from core.chart_parts import ALERT, COUNT_AXIS, LOG_AXIS, LOG_LABELS, MAX_STEPS, fade, finite, \
    legend_pick, no_data, rule, source, tips
from core.optimizers.race import LABELS, RACERS
from core.optimizers.surfaces import Surface, grid

# d3's category10 without its grey (lost on the grey surface) and olive (too faint on white).
COLOURS = dict(zip(RACERS, ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                "#8c564b", "#e377c2", "#17becf"]))
# px: the contour's plot is square, as every window is. With its legend, the contour fits the
# page's left column on a laptop (463 px at a 1280 px window); at 360 px it ran 45 px past it.
SIZE = 310
# Streamlit fits a whole chart, legends and axes included, into its width and height: these
# leave the contour's plot about SIZE × SIZE beside the surface's legend, with the title above
# and the optimizers' legend below.
CONTOUR_W, CONTOUR_H = SIZE + 140, SIZE + 200
LOSS_FLOOR = 1e-12               # a loss below this is drawn at it (tooltips keep the value)
# A diverging optimizer's last loss can be 1e+130; drawn as it is, it flattens every other
# curve. Losses above this factor × the starting loss are drawn at that ceiling.
LOSS_CEILING = 1e8
START_SELECTION = "start"        # the contour's click selection: {"x": …, "y": …} of a cell
# Light greys: the coloured paths stay legible on top, low (near a minimum) is lightest.
SURFACE_SCHEME = {"name": "greys", "extent": [0.0, 0.75]}


def _optimizer_color(table: pd.DataFrame, legend: alt.Legend | None = None) -> alt.Color:
    """The optimizers in `table`, each in its own colour (the same in every chart)."""
    present = [o for o in RACERS if o in set(table["optimizer"])]
    labels = [LABELS[o] for o in present]
    return alt.Color("label:N", title="Optimizer", sort=labels,
                     scale=alt.Scale(domain=labels, range=[COLOURS[o] for o in present]),
                     legend=legend)


def _decades(values: pd.Series) -> list[float]:
    """Whole powers of ten around `values`: a log colour legend then reads 0.001 … 1e+5."""
    return [10.0 ** np.floor(np.log10(values.min()) + 1e-9),
            10.0 ** np.ceil(np.log10(values.max()) - 1e-9)]


def _labelled(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(label=table["optimizer"].map(LABELS))


def thin_paths(table: pd.DataFrame, limit: int = MAX_STEPS) -> pd.DataFrame:
    """At most `limit` evenly spaced iterations per optimizer, keeping each one's first and last."""
    parts = []
    for _, d in table.groupby("optimizer", sort=False):
        if len(d) > limit:
            d = d.iloc[np.unique(np.linspace(0, len(d) - 1, limit).round().astype(int))]
        parts.append(d)
    return pd.concat(parts, ignore_index=True) if parts else table


def at_iteration(table: pd.DataFrame, iteration: int) -> pd.DataFrame:
    """Each optimizer's row at `iteration`, or its last finite row if it stopped before."""
    ok = finite(table, ["x", "y", "loss"])
    ok = ok[ok["iteration"] <= iteration]
    return ok.groupby("optimizer", sort=False).tail(1).reset_index(drop=True)


def contour(surface: Surface, table: pd.DataFrame, iteration: int | None = None, *,
            cells: int | None = None, title: str | alt.TitleParams | None = None
            ) -> alt.LayerChart:
    """The surface as filled log-spaced contour bands, with every optimizer's path over it."""
    title = title or alt.TitleParams(surface.title, subtitle=f"f(x, y) = {surface.formula}")
    g = grid(surface) if cells is None else grid(surface, cells)
    # Cells are drawn from their centres: four columns ship instead of eight.
    # 2% overlap: abutting rects leave anti-aliasing seams.
    half_w = float(g["x1"].iloc[0] - g["x0"].iloc[0]) / 2 * 1.02
    half_h = float(g["y1"].iloc[0] - g["y0"].iloc[0]) / 2 * 1.02
    g = g[["x", "y", "f", "level"]]
    x_lo, x_hi, y_lo, y_hi = surface.window
    x_scale = alt.Scale(domain=[x_lo, x_hi], nice=False, zero=False)
    y_scale = alt.Scale(domain=[y_lo, y_hi], nice=False, zero=False)
    x, y = alt.X("x:Q", title="x", scale=x_scale), alt.Y("y:Q", title="y", scale=y_scale)
    pick = alt.selection_point(name=START_SELECTION, fields=["x", "y"], on="click",
                               clear="dblclick")
    heat = alt.Chart(g).transform_calculate(
        x0=f"datum.x - {half_w!r}", x1=f"datum.x + {half_w!r}",
        y0=f"datum.y - {half_h!r}", y1=f"datum.y + {half_h!r}").mark_rect().encode(
        x=alt.X("x0:Q", title="x", scale=x_scale), x2=alt.X2("x1:Q"),
        y=alt.Y("y0:Q", title="y", scale=y_scale), y2=alt.Y2("y1:Q"),
        color=alt.Color("level:Q", title="f (log bands)", scale=alt.Scale(
            type="log", scheme=SURFACE_SCHEME, domain=_decades(g["level"])), legend=alt.Legend(
                labelExpr=LOG_LABELS, gradientLength=200)),
        tooltip=tips(alt.Tooltip("x:Q", format=".3f"), alt.Tooltip("y:Q", format=".3f"),
                     alt.Tooltip("f:Q", format=".4g"))).add_params(pick)
    minima = pd.DataFrame(surface.minima, columns=["x", "y"]).assign(label="minimum (f = 0)")
    layers = [heat, alt.Chart(minima).mark_point(
        shape="diamond", size=140, filled=True, fill="white", stroke="#222222", strokeWidth=1.5)
        .encode(x=x, y=y, tooltip=tips("label:N", alt.Tooltip("x:Q", format=".4f"),
                                       alt.Tooltip("y:Q", format=".4f")))]
    paths = finite(table, ["x", "y", "loss"])
    if len(paths):
        start = paths.iloc[[0]][["x", "y"]].assign(label="start")
        layers.append(alt.Chart(start).mark_point(shape="circle", size=220, strokeWidth=2.5,
                                                  color="#222222")
                      .encode(x=x, y=y, tooltip=tips("label:N", alt.Tooltip("x:Q", format=".3f"),
                                                     alt.Tooltip("y:Q", format=".3f"))))
        sel = legend_pick("label")
        shown = _labelled(thin_paths(paths))[["label", "iteration", "x", "y", "loss", "lr"]]
        layers.append(alt.Chart(source(shown)).mark_line(
            strokeWidth=2, clip=True, point=alt.OverlayMarkDef(size=14, filled=True, clip=True))
            .encode(x=x, y=y, order=alt.Order("iteration:Q"),
                    color=_optimizer_color(paths, alt.Legend(orient="bottom", columns=3)),
                    opacity=fade(sel),
                    tooltip=tips("label:N", "iteration:Q", alt.Tooltip("x:Q", format=".4g"),
                                 alt.Tooltip("y:Q", format=".4g"),
                                 alt.Tooltip("loss:Q", format=".4g"),
                                 alt.Tooltip("lr:Q", title="learning rate", format=".3g")))
            .add_params(sel))
        if iteration is not None:
            now = _labelled(at_iteration(paths, iteration))[["label", "iteration", "x", "y",
                                                              "loss"]]
            layers.append(alt.Chart(now).mark_point(
                shape="circle", size=130, filled=True, stroke="#222222", strokeWidth=1.5,
                opacity=1, clip=True).encode(
                x=x, y=y, color=_optimizer_color(paths),
                tooltip=tips("label:N", "iteration:Q", alt.Tooltip("x:Q", format=".4g"),
                             alt.Tooltip("y:Q", format=".4g"),
                             alt.Tooltip("loss:Q", format=".4g"))))
    # The surface's colour and the optimizers' colour are different scales.
    return alt.layer(*layers, title=title, width=CONTOUR_W, height=CONTOUR_H).resolve_scale(
        color="independent")


def loss_curves(table: pd.DataFrame, iteration: int | None = None, *,
                title: str = "Loss per iteration (log; the minimum is 0)"
                ) -> alt.LayerChart | alt.Chart:
    """Every optimizer's loss f(x, y) per iteration on a log axis; diverged ones end in ✕."""
    d = finite(table, ["loss"], positive=True)
    if d.empty:
        return no_data(title, "no optimizer selected" if table.empty else "no positive loss")
    start = d.loc[d["iteration"] == 0, "loss"]
    ceiling = LOSS_CEILING * max(float(start.max()) if len(start) else 1.0, 1.0)
    d = _labelled(thin_paths(d)).assign(shown=lambda t: t["loss"].clip(LOSS_FLOOR, ceiling))
    sel = legend_pick("label")
    clipped = [f"below {LOSS_FLOOR:.0e}" if (d["loss"] < LOSS_FLOOR).any() else "",
               f"above {ceiling:.0e}" if (d["loss"] > ceiling).any() else ""]
    y_title = "Loss f(x, y)" + (f" ({' and '.join(c for c in clipped if c)} drawn at the edge)"
                                if any(clipped) else "")
    base = alt.Chart(source(d[["label", "iteration", "loss", "shown", "lr"]])).encode(
        x=alt.X("iteration:Q", title="Iteration", axis=COUNT_AXIS),
        y=alt.Y("shown:Q", title=y_title, scale=alt.Scale(type="log"), axis=LOG_AXIS),
        # Two a row: three ran past the chart's right edge on a laptop, cut off (seen in Chromium).
        color=_optimizer_color(d, alt.Legend(orient="bottom", columns=2)), opacity=fade(sel),
        tooltip=tips("label:N", "iteration:Q", alt.Tooltip("loss:Q", format=".4g"),
                     alt.Tooltip("lr:Q", title="learning rate", format=".3g")))
    layers = [base.mark_line(strokeWidth=1.8).add_params(sel)]
    blown = table[table["diverged"]]
    if len(blown):
        # The last finite loss of each diverged optimizer, marked where its curve ends.
        at = dict(zip(blown["optimizer"], blown["iteration"]))
        last = d[d["optimizer"].isin(at)].groupby("optimizer").tail(1)
        last = last.assign(note=[f"diverged at iteration {at[o]}" for o in last["optimizer"]])
        layers.append(alt.Chart(last).mark_point(shape="cross", size=160, filled=True,
                                                 color=ALERT, strokeWidth=1).encode(
            x=alt.X("iteration:Q"), y=alt.Y("shown:Q"),
            tooltip=tips("label:N", "note:N", alt.Tooltip("loss:Q", format=".4g"))))
    if iteration is not None:
        layers += rule("x", "iteration", iteration, f"iteration {iteration}",
                       upto=d["iteration"].max())
    # Legend below, as on the contour: beside it, it takes a third of a half-width column.
    return alt.layer(*layers, title=title, width=SIZE + 60, height=SIZE)
