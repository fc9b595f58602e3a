"""The sharpness chart: the top Hessian eigenvalue over steps, against the step size's limit.

    chart = sharpness(result)      # "not measured" when sharpness_every was off (measured(result))

The threshold line is `core.lab.sharpness.thresholds` at each step's learning rate: 2/lr for
plain SGD, (2+2β)/lr with heavy-ball momentum, (2+2β)/((1+2β)·lr) with Nesterov (less SGD's
weight decay). Adaptive optimizers get no line and a subtitle saying why (Cohen et al. 2022).
"""

from __future__ import annotations

import textwrap

import altair as alt
import pandas as pd

from core.chart_parts import (ALERT, COUNT_AXIS, MUTED, SPLITS, finite, no_data, step_panel, thin,
                              tips)
from core.lab.sharpness import criterion, thresholds

TITLE = "Sharpness (top Hessian eigenvalue) against 2/lr"


def measured(result) -> bool:
    """Whether the run has sharpness to draw (core.lab.tabs shows the chart only then)."""
    return not result.sharpness.empty


def sharpness(result) -> alt.LayerChart | alt.Chart:
    """Sharpness and its stability threshold over steps."""
    if not measured(result):
        return no_data(TITLE, "not measured (sharpness_every is off)")
    table = result.sharpness
    points = finite(table, ["sharpness"]).assign(series="sharpness")
    limit = thresholds(result.steps, result.config)
    _, label = criterion(result.config)
    says = ("Above the dashed line a full-batch gradient step of this learning rate is unstable "
            "along the top direction (Cohen et al. 2021); mini-batch SGD can train on above it."
            if limit is not None else f"{label[0].upper()}{label[1:]}.")
    subtitle = textwrap.wrap(says, 100)
    color = alt.Color("series:N", title=None, scale=alt.Scale(
        domain=["sharpness", f"threshold {label}"] if limit is not None else ["sharpness"],
        range=[SPLITS["train"], ALERT]), legend=alt.Legend(orient="top"))
    x = alt.X("step:Q", title="Training step", axis=COUNT_AXIS)
    y = alt.Y("sharpness:Q", title="Top Hessian eigenvalue λ_max")
    layers = []
    if limit is not None:
        rows = thin(pd.DataFrame({"step": limit.index, "sharpness": limit.to_numpy(),
                                  "series": f"threshold {label}"}))
        layers.append(alt.Chart(finite(rows, ["sharpness"])).mark_line(
            strokeDash=[4, 3], strokeWidth=1.5).encode(
            x=x, y=y, color=color, tooltip=tips("step:Q", alt.Tooltip(
                "sharpness:Q", title="threshold", format=".4g"))))
    line = alt.Chart(points).mark_line(point=True, strokeWidth=1.5).encode(
        x=x, y=y, color=color,
        tooltip=tips("step:Q", alt.Tooltip("sharpness:Q", title="λ_max", format=".4g")))
    title = alt.TitleParams(TITLE, subtitle=subtitle, subtitleColor=MUTED)
    return step_panel(line, result, None, title, layers)
