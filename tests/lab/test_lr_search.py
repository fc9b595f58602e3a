"""Best over a learning-rate axis (core.lab.lr_search) and the sweep's `--best-lr`."""

import json
import math

import pandas as pd
import pytest

from core.lab.config import RunConfig
from core.lab.lr_search import run_lr_search
from core.lab.stacked import batch_groups
from core.lab.sweep import SweepSpec
from core.settings import ConfigError
from core.store import RunStore
from core.tools.cli import main

# Deep-linear, bias-free, squared error, SGD (Saxe et al.'s setting), small enough to be quick.
LINEAR = RunConfig(activation="linear", bias=False, loss="mse", target_loss=0.07,
                   optimizer="sgd", width=16, max_train=320, batch_size=32, epochs=3,
                   init="orthogonal")
SPEC = SweepSpec(LINEAR, x="depth", x_values=(1, 3), y="init", y_values=("orthogonal",))


def test_each_cell_keeps_the_lr_that_reaches_the_target_first_and_diverged_runs_rank_last(
        tmp_path):
    store = RunStore(tmp_path / "runs.sqlite3")
    search = run_lr_search(SPEC, (0.05, 0.5), store=store)
    runs = search.runs
    assert len(runs) == 4 and runs.groupby(["row", "col"]).best.sum().tolist() == [1, 1]
    for _, cell in runs.groupby(["row", "col"]):
        # The measure recomputed from the table: reached first, then lowest training loss.
        def order(r):
            return (r.status == "diverged",
                    math.inf if pd.isna(r.steps_to_target) else int(r.steps_to_target),
                    r.train_loss if math.isfinite(r.train_loss) else math.inf)
        expected = min(cell.itertuples(), key=order)
        assert cell[cell.best].lr.item() == expected.lr
    # Measured: depth 1 reaches 0.07 at lr 0.5 (step 28); at depth 3 lr 0.5 diverges, so
    # 0.05 (never reaching it) is that cell's best.
    best = search.best().set_index("x")
    assert best.loc["1"].lr == 0.5 and not pd.isna(best.loc["1"].steps_to_target)
    assert best.loc["3"].lr == 0.05
    assert runs.set_index(["x", "lr"]).loc[("3", 0.5)].status == "diverged"
    assert all(key in store for key in runs.key)   # every lr's run kept as a Lab run


def test_lr_cannot_be_both_an_axis_and_searched():
    spec = SweepSpec(LINEAR, x="depth", x_values=(1,), y="lr", y_values=(0.1,))
    with pytest.raises(ConfigError, match="lr"):
        run_lr_search(spec, (0.1, 0.2))


def test_settings_the_stacked_trainer_lacks_train_alone():
    base = RunConfig(depth=2, width=8)
    cfgs = [base, base.replace(seed=1), base.replace(bias=False), base.replace(loss="mse"),
            base.replace(target_loss=0.5)]
    assert batch_groups(cfgs) == [[0, 1], [2], [3], [4]]


def test_cli_best_lr_prints_each_run_and_writes_json(tmp_path, capsys):
    out = tmp_path / "lr.json"
    code = main(["sweep", "--x", "depth=1", "--y", "init=orthogonal", "--activation", "linear",
                 "--no-bias", "--loss", "mse", "--target-loss", "0.07", "--optimizer", "sgd",
                 "--width", "16", "--max-train", "320", "--batch-size", "32", "--epochs", "2",
                 "--best-lr", "0.05,0.5", "--no-store", "--quiet", "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "best learning rate per cell" in text and "steps_to_target" in text
    rows = json.loads(out.read_text())
    assert [r["lr"] for r in rows] == [0.05, 0.5] and sum(r["best"] for r in rows) == 1


def test_cli_best_lr_refuses_other_engines_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--x", "depth=1", "--y", "init=orthogonal", "--best-lr", "0.05,0.5",
              "--jobs", "2", "--no-store", "--quiet"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--best-lr" in err and "--jobs" in err and "Traceback" not in err
