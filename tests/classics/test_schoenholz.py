"""Schoenholz et al. 2016 on seeds 0-4: the trainable depth follows ξ_c, and nothing well beyond
6ξ_c trains.

To stay small the tests sweep 3 depths (6, 12, 24) × 4 values of σ_w² (0.5, 1, 1.75, 4) with
the classic's training settings for 8 of its 15 epochs, all five seeds' cells of one depth
trained side by side (core.lab.stacked, as the sweep trains them). The classic itself sweeps 4
depths (up to 48) × 10 values for 15 epochs; measured with run_sweep on seeds 0-4: ✓ on every
seed, rank correlation 0.89-0.96, the deepest trained network 48 layers at σ_w² = 1.75 each
time, and every network deeper than 1.5 × 6ξ_c at 6-11% validation accuracy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from core.classics.record import cached_classic_run, get_classic_run, progress
from core.classics.schoenholz2016 import (BASE, SCHOENHOLZ2016, SWEEP, TRAINED, depth_scale,
                                          spec)
from core.lab.stacked import train_batched
from core.lab.sweep import SweepResult

SEEDS = range(5)
DEPTHS = (6, 12, 24)
SIGMA_W2 = (0.5, 1.0, 1.75, 4.0)
EPOCHS = 8


def _sweep(seed: int, accuracy: dict) -> SweepResult:
    """A SweepResult of the small grid whose table holds what the verdict reads."""
    rows = [{"x_value": d, "y_value": s, "val_accuracy": accuracy[d, s]}
            for s in SIGMA_W2 for d in DEPTHS]
    return SweepResult(spec(BASE.replace(seed=seed, epochs=EPOCHS), DEPTHS, SIGMA_W2),
                       pd.DataFrame(rows), pd.DataFrame(), {}, {})


@pytest.fixture(scope="module")
def sweeps() -> dict[int, SweepResult]:
    accuracy: dict = {seed: {} for seed in SEEDS}
    for depth in DEPTHS:
        members = [(seed, s) for seed in SEEDS for s in SIGMA_W2]
        cells = train_batched([BASE.replace(depth=depth, sigma_w2=s, seed=seed, epochs=EPOCHS)
                               for seed, s in members])
        for (seed, s), cell in zip(members, cells):
            accuracy[seed][depth, s] = cell.final("val", "accuracy")
    return {seed: _sweep(seed, accuracy[seed]) for seed in SEEDS}


@pytest.mark.parametrize("seed", SEEDS)
def test_trainable_depth_tracks_xi_c_and_nothing_well_beyond_6_xi_c_trains(sweeps, seed):
    sweep = sweeps[seed]
    verdict = SCHOENHOLZ2016.verdict({SWEEP: sweep})
    assert verdict.reproduced, verdict.sentence
    table = sweep.table
    # An independent reading: each σ_w²'s deepest trained depth, ranked against ξ_c by scipy.
    edge = [table[(table.y_value == s) & (table.val_accuracy >= TRAINED)].x_value.max()
            for s in SIGMA_W2]
    edge = np.nan_to_num(np.array(edge, dtype=float))
    rho = spearmanr(edge, [depth_scale(s) for s in SIGMA_W2]).statistic
    assert f"rank correlation of {rho:.2f} with ξ_c" in verdict.sentence
    beyond = [(d, s) for d in DEPTHS for s in SIGMA_W2 if d > 1.5 * 6 * depth_scale(s)]
    assert beyond == [(12, 0.5), (24, 0.5)]   # 6ξ_c = 7.1 layers; 21.8 at σ_w² = 1
    assert max(table.set_index(["x_value", "y_value"]).val_accuracy[list(beyond)]) < TRAINED
    assert ("Of the 2 networks more than 1.5 × 6ξ_c deep, none trained (the best reached "
            in verdict.sentence)
    assert "; of the 1 between 6ξ_c and that, " in verdict.sentence
    assert "these include 1.75, the value nearest the critical line (1.76)" in verdict.sentence


def test_the_verdict_fails_when_a_network_well_beyond_6_xi_c_trains(sweeps):
    table = sweeps[0].table.copy()
    table.loc[table.y_value == 0.5, "val_accuracy"] = 0.9
    broken = SweepResult(sweeps[0].spec, table, pd.DataFrame(), {}, {})
    verdict = SCHOENHOLZ2016.verdict({SWEEP: broken})
    assert not verdict.reproduced and verdict.mark == "✗"
    assert "Of the 2 networks more than 1.5 × 6ξ_c deep, 2 trained" in verdict.sentence


def test_the_verdict_fails_when_the_edge_runs_against_xi_c(sweeps):
    """Accuracies reversed along σ_w²: the deepest trained network moves away from the
    critical line, and the rank correlation turns negative."""
    table = sweeps[0].table.copy()
    order = {s: r for s, r in zip(SIGMA_W2, reversed(SIGMA_W2))}
    acc = table.set_index(["x_value", "y_value"]).val_accuracy
    table["val_accuracy"] = [acc[d, order[s]] for d, s in zip(table.x_value, table.y_value)]
    verdict = SCHOENHOLZ2016.verdict({SWEEP: SweepResult(sweeps[0].spec, table,
                                                         pd.DataFrame(), {}, {})})
    assert not verdict.reproduced
    assert "not at 1.75, the value nearest the critical line" in verdict.sentence


def test_the_figure_draws_each_cell_s_accuracy_and_the_6_xi_c_line(sweeps):
    sweep = sweeps[0]
    chart = SCHOENHOLZ2016.figure({SWEEP: sweep}).to_dict()
    cells_layer, line_layer = chart["layer"]
    cells = chart["datasets"][cells_layer["data"]["name"]]
    drawn = {(r["depth"], r["sigma_w2"]): r["val_accuracy"] for r in cells}
    table = sweep.table
    assert drawn == {(d, s): a for d, s, a in zip(table.x_value, table.y_value,
                                                  table.val_accuracy)}
    line = chart["datasets"][line_layer["data"]["name"]]
    top = max(r["d_hi"] for r in cells)
    for r in line[::10]:
        assert r["bound"] == pytest.approx(min(6 * depth_scale(r["sigma_w2"]), top))


def test_a_classic_s_sweep_trains_through_the_run_store_with_its_progress():
    """A classic whose run is a sweep: trained (cells stacked) with (share, text) progress,
    then served from the store; two cells of 2 layers, one epoch."""
    small = spec(BASE.replace(epochs=1, max_train=200), (2,), (1.0, 2.0))
    assert cached_classic_run(small) is None
    heard = []
    trained = get_classic_run(small, on_epoch=heard.append)
    assert [share for share, _ in map(progress(small), heard)][-1] == 1.0
    assert trained.timing["cells_trained"] == 2
    again = cached_classic_run(small)
    assert again.timing["cells_from_store"] == 2
    assert list(again.table.val_accuracy) == list(trained.table.val_accuracy)
