"""Best over a learning-rate axis: every cell of a sweep's grid trained at each of a list of
learning rates, and the best lr per cell kept by a stated measure. Saxe et al. 2013 time deep
linear networks this way, searching the lr per depth.

    spec = SweepSpec(RunConfig(activation="linear", bias=False, loss="mse", target_loss=0.05),
                     x="depth", x_values=(2, 4, 8), y="init", y_values=("orthogonal",))
    search = run_lr_search(spec, lrs=(1e-3, 1e-2, 1e-1))
    search.runs        # one row per (cell, lr); `best` marks each cell's pick
    search.best()      # one row per cell

    python -m core sweep --x depth=2,4,8 --y init=orthogonal --best-lr 0.001,0.01,0.1 ...

The measure (BEST_BY): fewest steps to the base's target_loss (core.lab.criterion), then the
lowest final training loss (the last epoch's mean); a diverged run ranks after every other;
of equals, the lr listed first.
Each lr's run is a full Training Lab run, kept in the run store under its own key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from core.budget import refuse_sweep
from core.lab.result import RunResult
from core.lab.runs import get_run, run_estimate
from core.lab.sweep import MAX_CELLS, SweepSpec, normalise_values
from core.lab.trainer import train
from core.settings import ConfigError
from core.store import RunStore

BEST_BY = ("fewest steps to the target loss, then the lowest final training loss; "
           "diverged runs last")


@dataclass
class LrSearchResult:
    """runs: x, y (display strings), row, col, lr, key, status, steps_to_target (<NA> if never
    reached), train_loss, val_accuracy, best (the cell's pick), one row per (cell, lr)."""

    spec: SweepSpec
    lrs: tuple
    runs: pd.DataFrame

    def best(self) -> pd.DataFrame:
        return self.runs[self.runs.best].reset_index(drop=True)


def rank(result: RunResult) -> tuple:
    """BEST_BY as a sort key: smaller is better."""
    steps = result.steps_to_target
    loss = result.final("train", "loss")
    return (result.diverged, math.inf if steps is None else steps,
            loss if math.isfinite(loss) else math.inf)


def run_lr_search(spec: SweepSpec, lrs, *, store: RunStore | None = None,
                  on_progress: Callable[[int, int, str], None] | None = None) -> LrSearchResult:
    """Train (or read from `store`) every cell at every lr; no store: train without storing."""
    if "lr" in (spec.x, spec.y):
        raise ConfigError("lr", "the learning rate is searched per cell; it cannot also be an "
                          "axis of the sweep")
    lrs = normalise_values("lr", lrs)
    cells = spec.cells()
    if len(cells) * len(lrs) > MAX_CELLS:
        raise ConfigError("lr", f"{len(cells)} cells × {len(lrs)} learning rates = "
                          f"{len(cells) * len(lrs)} runs; a sweep has at most {MAX_CELLS}")
    configs = [(i, cell.replace(lr=lr)) for i, cell in enumerate(cells) for lr in lrs]
    refuse_sweep([run_estimate(cfg) for _, cfg in configs])   # before anything trains
    rows = []
    for done, (i, cfg) in enumerate(configs):
        if on_progress:
            on_progress(done, len(configs), f"cell {i + 1}, lr {cfg.lr:g}")
        result = get_run(cfg, store=store) if store is not None else train(cfg)
        rows.append({"x": spec.labels("x")[i % len(spec.x_values)],
                     "y": spec.labels("y")[i // len(spec.x_values)],
                     "row": i // len(spec.x_values), "col": i % len(spec.x_values),
                     "lr": cfg.lr, "key": cfg.key(), "status": result.status,
                     "steps_to_target": result.steps_to_target,
                     "train_loss": result.final("train", "loss"),
                     "val_accuracy": result.final("val", "accuracy"), "rank": rank(result)})
    picks: dict[tuple, int] = {}   # (row, col) -> index of its best run; ties: first listed
    for j, r in enumerate(rows):
        cell = (r["row"], r["col"])
        if cell not in picks or r["rank"] < rows[picks[cell]]["rank"]:
            picks[cell] = j
    runs = pd.DataFrame(rows)
    runs["best"] = runs.index.isin(list(picks.values()))
    runs["steps_to_target"] = runs["steps_to_target"].astype("Int64")
    if on_progress:
        on_progress(len(configs), len(configs), "done")
    return LrSearchResult(spec, lrs, runs.drop(columns="rank"))
