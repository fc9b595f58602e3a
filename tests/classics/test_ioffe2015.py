"""Ioffe & Szegedy 2015: the verdict holds on seeds 0-4, fails on a pair that shows no
difference, and the figure draws the runs' own traces.

To stay small the runs here train on 1,200 of the offline MNIST subset's images for 5 epochs
(100 steps; the classic's own: 3,500 images, 590 steps), about 1 s a run. Measured on seeds 0-4
of this config: with BN 80% validation accuracy at step 25 or 50, without it not within the 100
steps (45-56% at the end); drift 0.15-0.17 with BN, 0.42-0.68 without.
"""

from __future__ import annotations

import pytest

from core.classics.ioffe2015 import IOFFE2015, drift, steps_to_accuracy, traced_unit
from core.lab.trainer import train

SEEDS = range(5)
SMALL = dict(max_train=1200, epochs=5)


@pytest.fixture(scope="module")
def runs():
    """{seed: {"without BN": run, "with BN": run}}"""
    return {seed: {name: train(cfg.replace(**SMALL))
                   for name, cfg in IOFFE2015.configs(seed).items()} for seed in SEEDS}


@pytest.mark.parametrize("seed", SEEDS)
def test_batch_norm_trains_faster_and_its_sigmoid_inputs_drift_less_on_every_seed(runs, seed):
    pair = runs[seed]
    verdict = IOFFE2015.verdict(pair)
    assert verdict.reproduced, verdict.sentence
    plain, bn = pair["without BN"], pair["with BN"]
    # An independent reading of the validation trace: BN's accuracy halfway through is higher.
    halfway = {n: r.val_trace.set_index("step").val_accuracy.loc[50] for n, r in pair.items()}
    assert halfway["with BN"] >= 0.8 > halfway["without BN"]
    assert drift(bn) <= 0.5 * drift(plain)
    assert f"reached 80% at step {steps_to_accuracy(bn)}, without it not within its 100 " \
           "steps" in verdict.sentence


def test_with_batch_norm_the_traced_input_starts_standardised(runs):
    """At step 0 batch norm's output is (z − mean)/std over the batch (γ = 1, β = 0), so a
    unit's 15th, 50th and 85th percentiles over 60 examples sit near the standard normal's
    −1.04, 0, 1.04 (the input is not exactly normal: a loose tolerance)."""
    for seed in SEEDS:
        start = traced_unit(runs[seed]["with BN"]).iloc[0]
        assert start.to_numpy() == pytest.approx([-1.04, 0.0, 1.04], abs=0.4)


def test_the_verdict_fails_when_both_sides_use_batch_norm(runs):
    bn = runs[0]["with BN"]
    verdict = IOFFE2015.verdict({"without BN": bn, "with BN": bn})
    assert not verdict.reproduced and verdict.mark == "✗"


def test_the_figure_draws_accuracy_and_each_net_s_percentiles_from_the_runs(runs):
    pair = runs[0]
    spec = IOFFE2015.figure(pair).to_dict()
    top, bottom = spec["vconcat"]
    plain, bn = bottom["hconcat"]
    acc_rows = spec["datasets"][top["data"]["name"]]   # Altair lifts a lone panel's data
    for name, run in pair.items():
        drawn = [r["val_accuracy"] for r in acc_rows if r["net"] == name]
        assert drawn == pytest.approx(run.val_trace.val_accuracy.tolist())
    for panel, name in ((plain, "without BN"), (bn, "with BN")):
        rows = spec["datasets"][panel["data"]["name"]]
        table = traced_unit(pair[name])
        last = {r["percentile"]: r["value"] for r in rows if r["step"] == table.index.max()}
        assert last == pytest.approx({"15th": table.iloc[-1][15.0], "50th": table.iloc[-1][50.0],
                                      "85th": table.iloc[-1][85.0]})
