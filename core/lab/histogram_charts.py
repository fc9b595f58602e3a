"""Histogram charts: how a run's values are distributed in each layer, epoch by epoch.

    histograms(result, "activation", epoch)      one small multiple a layer, scrubbed by epoch
    histogram_over_time(result, "activation", "hidden2")   one layer's bins × every epoch
    batch_norm_shift(result, epoch)              each layer before and after batch norm

Built from the run's histogram table: each snapshot has its own equal bins from its smallest to
its largest value (core.lab.recorder), so no value is clamped into another epoch's range. The
conventions of core.lab.charts hold here too (network order, no non-finite rows, "no data").
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from core.chart_parts import (
    BIN_TIPS, LEGEND_BELOW, PANEL_W, SHOWN, SPLITS, ZERO, epoch_param, epoch_title, finite,
    layer_color, no_data, source, tips,
)

# Kinds whose histogram's value axis follows the scrubbed epoch instead of spanning them all: a
# layer's weight gradients shrink over training (the default run's hidden2: ±0.4 at
# initialisation, ±0.02 after epoch 10), and on an axis held for every epoch a late epoch's
# histogram was a single needle. Weights and activations keep theirs: their drift is the story.
AXIS_FOLLOWS_EPOCH = {"weight_grad"}

KIND_LABELS = {
    "pre_norm": "Linear output, before batch norm",
    "pre_activation": "Pre-activation z",
    "activation": "Activation f(z)",
    "weight": "Weight W",
    "weight_grad": "Weight gradient ∇W",
}


def _hist_rows(result, kinds, layer=None) -> pd.DataFrame:
    h = result.histograms
    mask = h["kind"].isin(kinds)
    if layer is not None:
        mask &= h["layer"] == layer
    return finite(h[mask], ["lo", "hi", "count"])


def _facet(df: pd.DataFrame, bars: alt.Chart, result, title: str | dict, *,
           hold_axis: bool = True):
    """Small multiples of `bars` drawn from `df`, one per layer in network order; each layer
    keeps its own value range. Three a row: four, each with its own axes, ran past a laptop's
    page (820 px).

    Each panel's value axis spans every epoch's bins, so a distribution's drift and spread show
    as motion as the epoch is scrubbed (counts rescale per epoch): an invisible rule per layer
    from its smallest to its largest bin edge holds the axis, and only the scrubbed epoch's
    bars are drawn. Drawing every epoch's bars, the others at zero height, held the axis too
    but made ten times the marks (2,200 for five layers, 11 epochs and 40 bins).

    `hold_axis=False`: the axis spans the scrubbed epoch's bins only (AXIS_FOLLOWS_EPOCH)."""
    extent = alt.Chart().transform_aggregate(
        lo="min(lo)", hi="max(hi)", groupby=["layer"]).mark_rule(opacity=0).encode(
        x=alt.X("lo:Q"), x2=alt.X2("hi:Q"))
    return alt.layer(bars, *([extent] if hold_axis else []), data=source(df)).properties(width=170, height=100).facet(
        facet=alt.Facet("layer:O", sort=list(result.layer_names), title=None), columns=3,
        title=title).resolve_scale(x="independent", y="independent")


def _bins_say(df: pd.DataFrame, follows: bool = False) -> str:
    """What a histogram's bins are (core.lab.recorder._hist): each snapshot's own, so no value
    is clamped into another epoch's range; `follows`: and its axis is the shown epoch's."""
    bins = f"{df['bin'].nunique()} equal bins from each snapshot's smallest to largest value"
    return bins + ("; the axis fits the epoch shown (gradients shrink as training goes on)"
                   if follows else "")


def _scrubbed(value: str) -> alt.Chart:
    """The scrubbed epoch's bins, their `value` as `shown`: the bars of `_facet`."""
    return alt.Chart().transform_filter(SHOWN).transform_calculate(shown=f"datum.{value}")


def histograms(result, kind: str, epoch: int | None = None):
    """Per-layer histograms of `kind` (activation, weight, weight_grad, …) after each epoch,
    scrubbed from `epoch`."""
    label = KIND_LABELS.get(kind, kind)
    df = _hist_rows(result, [kind])
    if df.empty:
        return no_data(f"{label}: distribution per layer")
    bars = _scrubbed("count").mark_rect().encode(
        x=alt.X("lo:Q", title=label), x2=alt.X2("hi:Q"), y=alt.Y("shown:Q", title="Count"),
        y2=ZERO, color=layer_color(result, legend=False),
        tooltip=tips("layer:N", "epoch:Q", *BIN_TIPS))
    follows = kind in AXIS_FOLLOWS_EPOCH
    title = {**epoch_title(f"{label}: distribution per layer after epoch "),
             "subtitle": _bins_say(df, follows)}
    return _facet(df, bars, result, title, hold_axis=not follows).add_params(
        epoch_param(result, epoch))


def histogram_over_time(result, kind: str, layer: str):
    """One layer's histogram of `kind` for every epoch: value bins × epoch, colour = count."""
    label = KIND_LABELS.get(kind, kind)
    title = f"{label} of {layer}, epoch by epoch (log colour; blank = empty bin)"
    df = _hist_rows(result, [kind], layer=layer)
    if len(df):
        title, df = [title, _bins_say(df)], df[df["count"] > 0]
    if df.empty:
        return no_data(title)
    return alt.Chart(source(df)).mark_rect().encode(
        x=alt.X("lo:Q", title=label), x2=alt.X2("hi:Q"),
        y=alt.Y("epoch:O", title="Epoch (0 = at initialisation)"),
        color=alt.Color("count:Q", title="Count", scale=alt.Scale(type="log", scheme="viridis")),
        tooltip=tips("epoch:Q", *BIN_TIPS),
    ).properties(title=title, width=2 * PANEL_W,
                 height=min(400, max(120, 14 * df["epoch"].nunique())))


def batch_norm_shift(result, epoch: int | None = None):
    """Per layer, its values before and after batch norm after each epoch, overlaid as
    densities, scrubbed from `epoch`."""
    if not result.config.batch_norm:
        return no_data("Batch norm", "Batch norm is off in this run: nothing to compare.")
    title = "Batch norm: each layer's values before and after normalising"
    df = _hist_rows(result, ["pre_norm", "pre_activation"])
    df = df[df["layer"].isin(set(df["layer"][df["kind"] == "pre_norm"]))] if len(df) else df
    if df.empty:
        return no_data(title)
    # Densities, not counts: the two histograms have different bin widths.
    total = df.groupby(["layer", "kind", "epoch"])["count"].transform("sum")
    stages = {"pre_norm": "before batch norm", "pre_activation": "after batch norm"}
    df = df.assign(density=(df["count"] / (total * (df["hi"] - df["lo"]))).where(total > 0, 0.0),
                   stage=df["kind"].map(stages))
    bars = _scrubbed("density").mark_rect(opacity=0.55).encode(
        x=alt.X("lo:Q", title="Value"), x2=alt.X2("hi:Q"),
        y=alt.Y("shown:Q", title="Density"), y2=ZERO,
        # The legend below the panels: beside three of them it ran 76 px past a laptop's page
        # column (seen in Chromium).
        color=alt.Color("stage:N", title=None, legend=alt.Legend(**LEGEND_BELOW),
                        scale=alt.Scale(domain=list(stages.values()),
                                        range=[SPLITS["val"], SPLITS["train"]])),
        tooltip=tips("layer:N", "stage:N", "epoch:Q", *BIN_TIPS))
    return _facet(df, bars, result, epoch_title(f"{title}, after epoch ")).add_params(
        epoch_param(result, epoch))
