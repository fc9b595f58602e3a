"""He et al. 2015: a 30-layer plain ReLU network stalls with Xavier init and trains with He's."""

from __future__ import annotations

from typing import Mapping

import altair as alt
import pandas as pd

from core import chart_parts
from core.classics.record import Classic, Paper, Verdict
from core.lab.config import RunConfig
from core.tables import EpochRecords

# Plain SGD as in the paper (without its momentum, which made He's runs here vary from 11% to
# 60% over seeds); lr 0.02 is stable for He init at this depth (0.05 diverged on seed 0).
BASE = RunConfig(dataset="digits", depth=30, width=64, activation="relu", optimizer="sgd",
                 lr=0.02, batch_size=32, epochs=30)
CHANCE = 0.1
STALLED_ACCURACY = CHANCE + 0.05   # digits has ten classes
STALLED_LOSS_DROP = 0.02           # a stalled run's validation loss falls by less than 2%
MARGIN = 0.10                      # He must beat Xavier by this much validation accuracy


def configs(seed: int = 0) -> dict[str, RunConfig]:
    return {"Xavier": BASE.replace(init="xavier_normal", seed=seed),
            "He": BASE.replace(init="he_normal", seed=seed)}


def _loss_drop(run: EpochRecords) -> float:
    """Relative fall of the validation loss from initialisation to the last epoch."""
    start = run.at_epoch("val", "loss", 0)
    return (start - run.final("val", "loss")) / start


def verdict(runs: Mapping[str, EpochRecords]) -> Verdict:
    """From the runs' epoch tables alone, so a sweep's stacked cells (core.lab.stacked) serve
    as well as full runs."""
    xavier, he = runs["Xavier"], runs["He"]
    x_acc, h_acc = xavier.final("val", "accuracy"), he.final("val", "accuracy")
    stalled = x_acc <= STALLED_ACCURACY and _loss_drop(xavier) < STALLED_LOSS_DROP
    trains = he.status != "diverged" and h_acc >= x_acc + MARGIN
    return Verdict(stalled and trains,
                   f"After {he.config.epochs} epochs, Xavier init's validation accuracy is "
                   f"{x_acc:.0%} (chance: {CHANCE:.0%}) and its validation loss went "
                   f"{_losses(xavier)}; He init's accuracy is {h_acc:.0%}, its loss went "
                   f"{_losses(he)}.")


def _losses(run: EpochRecords) -> str:
    return f"from {run.at_epoch('val', 'loss', 0):.2f} to {run.final('val', 'loss'):.2f}"


def figure(runs: Mapping[str, EpochRecords]) -> alt.Chart:
    """Validation error per epoch, one line per init (the paper's Fig. 3 plots error by epoch)."""
    rows = []
    for name, run in runs.items():
        acc = run.epochs[(run.epochs.split == "val") & (run.epochs.metric == "accuracy")]
        rows.append(pd.DataFrame({"epoch": acc.epoch, "error": 1 - acc.value, "init": name}))
    return alt.Chart(pd.concat(rows)).mark_line(point=True).encode(
        x=alt.X("epoch:Q", title="Epoch"),
        y=alt.Y("error:Q", title="Validation error", scale=alt.Scale(domain=[0, 1])),
        # The paper's colours: Xavier blue, theirs red.
        color=alt.Color("init:N", title="Init", scale=alt.Scale(
            domain=list(runs), range=[chart_parts.SPLITS["train"], chart_parts.ALERT])),
        tooltip=["init", "epoch", alt.Tooltip("error:Q", format=".1%")],
    ).properties(height=320)


HE2015 = Classic(
    id="he2015",
    title="He et al. 2015: ReLU needs He init at depth 30",
    paper=Paper("Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun", 2015,
                "Delving Deep into Rectifiers: Surpassing Human-Level Performance on ImageNet "
                "Classification",
                "A 30-layer ReLU network initialised with their scheme, N(0, 2/fan_in), "
                "converges, while with Xavier init it completely stalls (its gradients "
                "diminish) and does not converge even given more epochs (their Fig. 3)."),
    setup="Two plain 30-layer ReLU MLPs of 64 units on the 8×8 digits, trained alike with plain "
          "SGD (lr 0.02, batch 32, 30 epochs): one with Xavier init, N(0, 2/(fan_in+fan_out)), "
          "one with He init, N(0, 2/fan_in). Xavier halves the signal's variance at each ReLU "
          "layer, so after 30 layers almost nothing of the input reaches the output.",
    differs=("Their 30-layer net is convolutional and trained on ImageNet; ours is a dense "
             "MLP of 64 units on the 8×8 digits (1,797 images in all).",
             "They trained with SGD with momentum; we train with plain SGD for 30 epochs.",
             "Their Fig. 3 plots top-1 error on ImageNet by epoch; ours plots the error on the "
             "digits' validation split."),
    configs=configs, verdict=verdict, figure=figure,
    figure_caption="Validation error after each epoch (epoch 0: at initialisation).",
)
