"""Heatmaps of a sweep: one cell per configuration, the grid's axes are the swept settings.

    heatmap(result.table, "val_accuracy", x_title="depth", y_title="activation")
    HEATMAPS  the three the Sweep page draws, with their titles and scales

Each heatmap carries a point selection named "cell" over the cell's `key`, so a page drawing it
with `on_select="rerun"` learns which run was clicked. Diverged cells are hatched grey with
"NaN" written in them: a result, not a hole.
"""

from __future__ import annotations

import math
import textwrap
from typing import NamedTuple

import altair as alt
import numpy as np
import pandas as pd

from core.chart_parts import MUTED, PANEL_H, PANEL_W, no_data, tips
from core.lab.metrics import DEPTH_RATIO, MOST_FLAT

SELECTION = "cell"
TITLE_CHARS = 28   # a title line's characters: what a third of a 1280 px page holds (16 px bold)


class Heatmap(NamedTuple):
    title: str
    legend: str
    fmt: str          # the number written in each cell
    scheme: str
    domain: tuple | None = None
    mid: float | None = None


HEATMAPS = {
    "val_accuracy": Heatmap("Final validation accuracy", "accuracy", ".0%", "viridis", (0, 1)),
    "log_depth_ratio": Heatmap(
        f"{DEPTH_RATIO.label} {DEPTH_RATIO.symbol}, log₁₀ (0 = balanced; < 0 vanishing, "
        "> 0 exploding)", "log₁₀ ratio", "+.1f", "redblue", None, 0.0),
    "flat_max": Heatmap("", "share", MOST_FLAT["saturation"].fmt, "orangered", (0, 1)),
}


def flat_title(table: pd.DataFrame) -> str:
    """The flat-share heatmap's title: saturation, inactive, or both when the sweep mixes
    activation families (each cell shows the one its activation has)."""
    present = set(table["flat_metric"]) if "flat_metric" in table else set()
    kinds = [k for k in MOST_FLAT if k in present] or ["saturation"]
    if len(kinds) == 1:
        return MOST_FLAT[kinds[0]].title
    return "Max saturated (sigmoid, tanh) or inactive (ReLU family) share (end)"


def prepare(table: pd.DataFrame) -> pd.DataFrame:
    """The sweep table plus what the heatmaps show: log₁₀ of the depth ratio."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = pd.to_numeric(table["depth_ratio"], errors="coerce").to_numpy(dtype=float)
        log = np.where(ratio > 0, np.log10(ratio), np.nan)
    return table.assign(log_depth_ratio=log)


def heatmap(table: pd.DataFrame, metric: str, *, x_title: str, y_title: str,
            x_order: list[str] | None = None, y_order: list[str] | None = None) -> alt.LayerChart:
    """One metric over the grid; cells clickable (selection "cell" → the cell's key)."""
    m = HEATMAPS[metric]
    if metric == "flat_max":
        m = m._replace(title=flat_title(table))
    if table.empty:
        return no_data(m.title)
    df = prepare(table)
    values = pd.to_numeric(df[metric], errors="coerce")
    df = df.assign(value=values.where(np.isfinite(values)),
                   label=[_label(v, m.fmt, bool(d)) for v, d in zip(values, df["diverged"])])
    n_x, n_y = df["x"].nunique(), df["y"].nunique()
    # Every tick label (Vega-Lite drops overlapping ones by default), level while they fit.
    x = alt.X("x:N", title=x_title, sort=x_order, axis=alt.Axis(
        labelAngle=0 if n_x <= 5 else -40, labelOverlap=False, labelLimit=90))
    y = alt.Y("y:N", title=y_title, sort=y_order,
              axis=alt.Axis(labelOverlap=False, labelLimit=90))
    pick = alt.selection_point(name=SELECTION, fields=["key"], on="click", clear="dblclick")
    if m.mid is not None:  # symmetric around the midpoint: equal colour for 10× and 1/10×
        span = float(np.nanmax(np.abs(df["value"] - m.mid))) if df["value"].notna().any() else 1
        lo, hi = m.mid - max(span, 1), m.mid + max(span, 1)
        scale = alt.Scale(scheme=m.scheme, domain=[lo, hi], reverse=True)
        # Text goes white where the diverging scheme is dark: its far ends.
        dark = (df["value"] - m.mid).abs() > 0.6 * (hi - m.mid)
    else:
        lo, hi = m.domain
        scale = alt.Scale(scheme=m.scheme, domain=[lo, hi])
        position = (df["value"] - lo) / (hi - lo)
        # viridis is dark at its low end, orangered at its high end
        dark = position < 0.45 if m.scheme == "viridis" else position > 0.6
    df = df.assign(ink=np.where(dark.fillna(False), "white", "black"))
    cells = alt.Chart(df).mark_rect(stroke=MUTED, strokeWidth=0.5).encode(
        x=x, y=y,
        color=alt.condition("isValid(datum.value)",
                            alt.Color("value:Q", title=m.legend, scale=scale,
                                      # Below the grid: three heatmaps side by side
                                      # keep their width for the cells.
                                      legend=alt.Legend(format=m.fmt.lstrip("+"),
                                                        orient="bottom", direction="horizontal",
                                                        gradientLength=160)),
                            alt.value("#bbbbbb")),
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.55)),
        tooltip=tips(alt.Tooltip("x:N", title=x_title), alt.Tooltip("y:N", title=y_title),
                     alt.Tooltip("val_accuracy:Q", title="val accuracy", format=".1%"),
                     alt.Tooltip("depth_ratio:Q", title=DEPTH_RATIO.label.lower(),
                                 format=".2~g"),
                     alt.Tooltip("flat_metric:N", title="flat region"),
                     alt.Tooltip("flat_max:Q", title="max share (end)",
                                 format=MOST_FLAT["saturation"].fmt),
                     alt.Tooltip("diverged:N", title="diverged"),
                     alt.Tooltip("batched:N", title="trained in a stacked group"),
                     alt.Tooltip("key:N", title="run key")),
    ).add_params(pick)
    text = alt.Chart(df).mark_text(fontSize=12).encode(
        # Not a `scale=None` colour channel: Streamlit's chart theming fails on a null scale.
        x=x, y=y, text=alt.Text("label:N"),
        color=alt.condition("datum.ink === 'white'", alt.value("white"), alt.value("black")))
    # The title wrapped to the column a third of the page gives it, with no limit: Vega-Lite
    # cut it with "…" at the plot's width. Cells tall enough to read their number: ~44 px a row.
    title = alt.TitleParams(textwrap.wrap(m.title, TITLE_CHARS), anchor="start", limit=0)
    return alt.layer(cells, text, title=title, width=max(PANEL_W * 2 // 3, 56 * n_x),
                     height=max(PANEL_H * 3 // 4, 44 * n_y))


def _label(value: float, fmt: str, diverged: bool) -> str:
    if diverged:
        return "NaN"
    if value is None or not math.isfinite(value):
        return "–"
    text = format(value, fmt)
    # A value that rounds to zero reads "0.0", not "-0.0" or "+0.0".
    return text.lstrip("+-") if not any(c in "123456789" for c in text) else text
