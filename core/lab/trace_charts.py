"""The Lab's charts of three optional records, each drawn only for a run that has it:

    val_trace(result)              validation loss and accuracy every eval_every steps
    unit_percentiles(result, "hidden2")   15th/50th/85th percentiles of a layer's traced units'
                                   pre-activations over steps (core.lab.unit_trace), the form of
                                   Ioffe & Szegedy 2015's Fig. 1(b, c)
    act_percentile(result)         each hidden layer's 98th activation percentile over steps,
                                   as Glorot & Bengio 2010's Figs. 2-3 follow it

`has_val_trace(result)`, `has_unit_traces(result)` and `has_act_percentiles(result)` say whether
a run has them (core.lab.tabs shows each chart only then).
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from core.chart_parts import (COUNT_AXIS, LOG_AXIS, PANEL_H, SPLITS, finite, layer_color,
                              no_data, source, step_panel, thin, tips)
from core.lab.config import VAL_TRACE_EXAMPLES

VAL_TITLE = "Validation loss and accuracy every {every} steps"
UNIT_TITLE = "Traced units of {layer}: percentiles of the pre-activation over each batch"
UNIT_PANEL_W = 200   # three units' panels side by side fit the Lab's page (two of PANEL_W do)
PERCENTILE_ORDER = ["85th", "50th", "15th"]   # top to bottom, as the lines lie
ACT_TITLE = "98th percentile of each hidden layer's activations"


def has_val_trace(result) -> bool:
    return not result.val_trace.empty


def has_unit_traces(result) -> bool:
    return not result.unit_preacts.empty


def has_act_percentiles(result) -> bool:
    return not result.act_percentiles.empty


def val_trace(result) -> alt.HConcatChart | alt.Chart:
    """Two panels over steps: the validation loss and accuracy on the fixed subset."""
    every = result.config.eval_every
    title = VAL_TITLE.format(every=every)
    if not has_val_trace(result):
        return no_data(title, "not measured (eval_every is off)")
    x = alt.X("step:Q", title="Training step (0 = at initialisation)", axis=COUNT_AXIS)
    panels = []
    for column, panel_title in (("val_loss", f"Validation {result.loss_title.lower()}"),
                                ("val_accuracy", "Validation accuracy (%)")):
        rows = thin(finite(result.val_trace[["step", column]], [column]))
        if rows.empty:
            panels.append(no_data(panel_title))
            continue
        if column == "val_accuracy":
            rows = rows.assign(val_accuracy=rows[column] * 100)
            scale = alt.Scale(domain=[0, 100])
        else:  # a log axis only when the loss spans orders of magnitude (as loss_accuracy)
            v = rows[column]
            log = (v > 0).all() and v.max() > 100 * v.min()
            scale = alt.Scale(type="log") if log else alt.Scale(zero=False)
        # Points too when they are few: a line through a single step is invisible.
        points = alt.OverlayMarkDef(color=SPLITS["val"]) if len(rows) <= 40 else False
        line = alt.Chart(rows).mark_line(point=points, color=SPLITS["val"],
                                         strokeWidth=1.5).encode(
            x=x, y=alt.Y(f"{column}:Q", title=panel_title, scale=scale, axis=LOG_AXIS),
            tooltip=tips("step:Q", alt.Tooltip(f"{column}:Q", title=panel_title,
                                               format=".4g")))
        panels.append(step_panel(line, result, None, panel_title))
    n_val = min(VAL_TRACE_EXAMPLES, int(result.dataset.get("n_val", VAL_TRACE_EXAMPLES)))
    subtitle = (f"Measured each time on the same {n_val:,} validation examples (the "
                "validation split's first); step t is the network after t updates.")
    return alt.hconcat(*panels, title=alt.TitleParams(title, subtitle=subtitle))


def unit_rows(result, layer: str) -> pd.DataFrame:
    """step, unit, percentile ("15th", ...), value: the layer's traced units, finite rows only."""
    rows = result.unit_preacts[result.unit_preacts["layer"] == layer]
    rows = finite(rows, ["value"])
    return rows.assign(percentile=rows["percentile"].map(lambda p: f"{float(p):.0f}th"),
                       unit=rows["unit"].astype(int))


def unit_percentiles(result, layer: str | None) -> alt.HConcatChart | alt.Chart:
    """One panel per traced unit of `layer`, its 15th, 50th and 85th percentiles over steps, all
    on one y scale so that units compare at a glance."""
    title = UNIT_TITLE.format(layer=layer)
    rows = unit_rows(result, layer) if has_unit_traces(result) else pd.DataFrame()
    if rows.empty:
        return no_data(title, f"no traced units recorded for {layer}")
    rows = thin(rows)
    y_scale = alt.Scale(domain=[float(rows["value"].min()), float(rows["value"].max())],
                        zero=False)
    color = alt.Color("percentile:N", title="Percentile", sort=PERCENTILE_ORDER,
                      scale=alt.Scale(domain=PERCENTILE_ORDER, scheme="viridis"))
    panels = []
    for unit in sorted(rows["unit"].unique()):
        one = rows[rows["unit"] == unit]
        line = alt.Chart(source(one)).mark_line(strokeWidth=1.2).encode(
            x=alt.X("step:Q", title="Training step", axis=COUNT_AXIS),
            y=alt.Y("value:Q", title="Pre-activation z", scale=y_scale),
            color=color,
            tooltip=tips("percentile:N", "step:Q", alt.Tooltip("value:Q", format=".3f")))
        panel = step_panel(line, result, None, f"unit {unit}")
        panels.append(panel.properties(width=UNIT_PANEL_W, height=PANEL_H))
    subtitle = ("A few fixed units of the layer, drawn from the run's seed; z is the input to "
                "the activation (after batch norm, where there is one), its percentiles over "
                "the recorded step's training batch.")
    return alt.hconcat(*panels, title=alt.TitleParams(title, subtitle=subtitle))


def act_percentile(result) -> alt.LayerChart | alt.Chart:
    """One line a hidden layer over steps: the 98th percentile of its activations over the
    recorded step's batch and all its units, where the upper tail of a saturating layer shows
    (Glorot & Bengio's sigmoid top layer: its 98th percentile falls towards 0 with the mean)."""
    if not has_act_percentiles(result):
        return no_data(ACT_TITLE, "not measured (percentile_traces is off)")
    rows = thin(finite(result.act_percentiles, ["value"]))
    if rows.empty:
        return no_data(ACT_TITLE)
    line = alt.Chart(source(rows)).mark_line(strokeWidth=1.5).encode(
        x=alt.X("step:Q", title="Training step", axis=COUNT_AXIS),
        y=alt.Y("value:Q", title="Activation, 98th percentile", scale=alt.Scale(zero=False)),
        color=layer_color(result, listed=rows["layer"].unique()),
        tooltip=tips("layer:N", "step:Q", alt.Tooltip("value:Q", title="98th percentile",
                                                      format=".3f")))
    return step_panel(line, result, None, ACT_TITLE)
