"""Sweeps: the spec validates like RunConfig, stacked training matches train(), cells are cached.

The independent answer for the stacked engine is the sequential trainer: `train(cfg)` with its
full per-layer recorder. Networks are tiny (depth 2–3, width 16, a few hundred examples) so the
whole file runs in well under a minute on two cores.
"""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core.lab.config import ConfigError, RunConfig
from core.lab.runs import get_run
from core.lab.stacked import CellSummary, batch_groups, train_batched
from core.lab.sweep import MAX_CELLS, SweepSpec, run_sweep
from core.lab.trainer import train
from core.store import RunStore
from core.tools.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = RunConfig(depth=2, width=16, epochs=2, max_train=200, batch_size=32)


def _recorded(result):
    """The sequential run's own numbers, read from its recorder's tables."""
    return {"val_accuracy": result.final("val", "accuracy"),
            "train_loss": result.final("train", "loss"),
            "depth_ratio": result.depth_ratio(), "flat": np.array(result.end_flat(), float)}


# --- the spec ----------------------------------------------------------------------------------
def test_cells_are_row_major_and_values_normalised():
    spec = SweepSpec(TINY, x="lr", x_values=(1, 0.01), y="activation", y_values=("relu", "tanh"))
    assert spec.x_values == (1.0, 0.01) and isinstance(spec.x_values[0], float)
    assert [(c.activation, c.lr) for c in spec.cells()] == [
        ("relu", 1.0), ("relu", 0.01), ("tanh", 1.0), ("tanh", 0.01)]
    assert all(c.depth == 2 and c.width == 16 for c in spec.cells())
    assert spec.shape == (2, 2)


@pytest.mark.parametrize("kwargs,field,words", [
    (dict(x="depth", x_values=(2, 400)), "depth", ["400", "1 to 100"]),
    (dict(y="activation", y_values=("relu", "banana")), "activation", ["banana", "tanh"]),
    (dict(x="bogus", x_values=(1,)), "x", ["bogus", "unknown"]),
    (dict(x="activation", y="activation"), "y", ["different"]),
    (dict(x="depth", x_values=(2, 2)), "depth", ["twice"]),
    (dict(x="depth", x_values=()), "depth", ["at least one"]),
    (dict(x="seed", x_values=tuple(range(9)), y="width", y_values=tuple(range(8, 72, 8))),
     "cells", ["72", str(MAX_CELLS)]),
    (dict(base=RunConfig(model="cnn"), x="depth", x_values=(2, 8)), "depth", ["cnn", "6"]),
])
def test_bad_specs_name_the_setting_and_the_allowed_range(kwargs, field, words):
    kwargs = {"base": TINY, "x": "depth", "x_values": (2,), "y": "activation",
              "y_values": ("relu",), **kwargs}
    with pytest.raises(ConfigError) as err:
        SweepSpec(**kwargs)
    assert err.value.field == field
    for word in words:
        assert word in str(err.value)


def test_url_parameters_round_trip():
    for spec in (SweepSpec(TINY.replace(batch_norm=True), x="clip_norm", x_values=(None, 0.5),
                           y="init", y_values=("he_normal", "orthogonal")),
                 SweepSpec(RunConfig(), x="batch_norm", x_values=(False, True), y="lr",
                           y_values=(1e-4, 0.003))):
        params = spec.to_params()
        assert all(isinstance(v, str) for v in params.values())
        assert SweepSpec.from_params(params) == spec
        assert SweepSpec.from_params_lenient(params) == (spec, [])
    assert SweepSpec().to_params() == {"x": "depth", "xv": "2,4,8", "y": "activation",
                                       "yv": "relu,tanh"}


def test_strict_params_raise_naming_the_field():
    with pytest.raises(ConfigError) as err:
        SweepSpec.from_params({"x": "depth", "xv": "2,banana", "y": "lr", "yv": "0.1"})
    assert err.value.field == "depth" and "banana" in str(err.value)
    with pytest.raises(ConfigError) as err:
        SweepSpec.from_params({"x": "depth", "xv": "2", "y": "lr", "yv": "0.1", "width": "0"})
    assert err.value.field == "width"
    with pytest.raises(ConfigError) as err:
        SweepSpec.from_params({"x": "depth", "xv": "2"})
    assert err.value.field == "y"


def test_lenient_params_keep_what_is_valid_and_say_what_was_dropped():
    spec, warnings = SweepSpec.from_params_lenient(
        {"x": "lr", "xv": "0.1,banana,1000,0.01", "y": "lr", "yv": "1", "depth": "-1",
         "page": "sweep"})
    assert spec.x == "lr" and spec.x_values == (0.1, 0.01)
    assert spec.y == "activation" and spec.base.depth == RunConfig().depth
    text = " ".join(warnings)
    for word in ("banana", "1000", "depth", "same setting"):
        assert word in text
    spec, warnings = SweepSpec.from_params_lenient(
        {"x": "seed", "xv": ",".join(map(str, range(20))), "y": "depth", "yv": "1,2,3,4,5"})
    assert len(spec.cells()) <= MAX_CELLS and any("cells" in w for w in warnings)



def test_long_value_lists_are_cut_to_the_cap_before_any_cell_is_built(monkeypatch):
    """An 18 KB link with 1,500 × 1,500 values built a RunConfig per pair (98 s of CPU) before
    the cut to MAX_CELLS; now each list is cut first, so the work is a few hundred configs."""
    built = []
    check_rules = RunConfig.check_rules
    monkeypatch.setattr(RunConfig, "check_rules", lambda cfg: built.append(1) or check_rules(cfg))
    params = {"x": "seed", "xv": ",".join(map(str, range(1500))),
              "y": "lr", "yv": ",".join(f"{1e-5 * (1 + i):.8f}" for i in range(1500))}
    start = time.process_time()
    spec, warnings = SweepSpec.from_params_lenient(params)
    seconds = time.process_time() - start
    assert len(built) < 1000 and seconds < 5, (len(built), f"{seconds:.3f} s")
    assert spec.x_values == tuple(range(MAX_CELLS)) and spec.y_values == (1e-5,)
    assert f"kept the first {MAX_CELLS} of 1,500 seed values" in warnings[0]
    assert f"kept the first {MAX_CELLS} of 1,500 lr values" in warnings[1]
    assert warnings[2].startswith(f"cells: a sweep has at most {MAX_CELLS} cells")

# --- stacked training against train() ---------------------------------------------------------
def test_a_stacked_group_matches_sequential_train():
    cfgs = [TINY,
            TINY.replace(init="xavier_normal", activation="tanh", seed=1),     # own split
            TINY.replace(dropout=0.2, activation="sigmoid", init="orthogonal"),  # own masks
            TINY.replace(lr=1e-2, bias_init="normal", bias_value=0.1),         # another block
            TINY.replace(optimizer="adamw", weight_decay=0.01, schedule="cosine"),
            TINY.replace(clip_norm=0.5, lr=1e-2),                               # clips alone
            TINY.replace(clip_value=0.01, optimizer="momentum", lr=0.05),
            TINY.replace(eps=1e-2, init="pytorch_default",                       # own ε: a block
                         bias_init="pytorch_default")]
    assert batch_groups(cfgs) == [list(range(len(cfgs)))]
    stacked = train_batched(cfgs)
    for cfg, cell in zip(cfgs, stacked):
        want = _recorded(train(cfg))
        assert cell.config == cfg and cell.source == "stacked" and cell.group_size == len(cfgs)
        # Same init and first batch: the gradients at step 0 agree to float precision.
        assert cell.depth_ratio == pytest.approx(want["depth_ratio"], rel=1e-5)
        assert cell.final("val", "accuracy") == pytest.approx(want["val_accuracy"], abs=0.02)
        assert cell.final("train", "loss") == pytest.approx(want["train_loss"], rel=0.02)
        np.testing.assert_allclose(cell.flat, want["flat"], atol=0.02)
        assert sorted(set(cell.epochs.epoch)) == [0, 1, 2]


def test_batch_norm_and_residual_groups_match_sequential_train():
    cfgs = [TINY.replace(batch_norm=True, model="residual_mlp", depth=3, seed=s,
                         activation=a) for s, a in ((0, "relu"), (2, "gelu"))]
    for cfg, cell in zip(cfgs, train_batched(cfgs)):
        want = _recorded(train(cfg))
        assert cell.depth_ratio == pytest.approx(want["depth_ratio"], rel=1e-4)
        assert cell.final("val", "accuracy") == pytest.approx(want["val_accuracy"], abs=0.03)


def test_a_diverging_member_does_not_spoil_its_neighbours():
    base = TINY.replace(depth=3, optimizer="sgd", lr=0.1, epochs=2)
    bad = base.replace(activation="linear", init="normal_large")
    good = [base.replace(activation="tanh", init="xavier_normal"),
            base.replace(activation="relu", seed=3)]
    cells = train_batched([good[0], bad, good[1]])
    alone = train(bad)
    assert alone.diverged  # the premise: this one blows up on its own
    assert cells[1].status == "diverged"
    assert cells[1].diverged_step == alone.divergence["step"]
    assert all(math.isnan(s) for s in cells[1].flat)
    for cfg, cell in zip(good, (cells[0], cells[2])):
        want = _recorded(train(cfg))
        assert cell.status == "completed"
        assert cell.final("val", "accuracy") == pytest.approx(want["val_accuracy"], abs=0.02)
        assert cell.final("train", "loss") == pytest.approx(want["train_loss"], rel=0.02)


def test_a_group_too_big_for_memory_trains_in_parts_with_the_same_results(monkeypatch):
    cfgs = [TINY.replace(epochs=1, seed=s) for s in (0, 1, 2)]
    whole = train_batched(cfgs)
    monkeypatch.setattr("core.lab.stacked.MAX_DATA_BYTES", 1)   # one split on the device at a time
    seen = []
    parts = train_batched(cfgs, on_epoch=seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0
    for a, b in zip(whole, parts):
        assert a.config == b.config and b.group_size == 1
        assert a.final("val", "accuracy") == b.final("val", "accuracy")
        assert a.depth_ratio == pytest.approx(b.depth_ratio, rel=1e-5)


def test_groups_split_on_shape_and_cnns_train_alone():
    cfgs = [TINY.replace(depth=d, activation=a) for d in (2, 3) for a in ("relu", "tanh")]
    cfgs.append(TINY.replace(model="cnn", width=4))
    assert batch_groups(cfgs) == [[0, 1], [2, 3], [4]]


# --- running a sweep: cache, progress, table ---------------------------------------------------
def test_cells_are_cached_and_a_lab_run_is_reused(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite3")
    spec = SweepSpec(TINY, x="init", x_values=("he_normal", "xavier_normal"),
                     y="lr", y_values=(1e-3, 1e-2))
    lab = get_run(spec.cells()[3], store=store)   # the Training Lab ran this cell already
    calls = []
    first = run_sweep(spec, store=store, on_progress=lambda *a: calls.append(a))
    t = first.table
    assert list(t.columns[:7]) == ["x", "y", "x_value", "y_value", "row", "col", "key"]
    assert first.timing["cells_trained"] == 3 and first.timing["cells_from_store"] == 1
    assert first.timing["groups"] == [3]
    assert t.from_store.tolist() == [False, False, False, True]
    assert t.batched.tolist() == [True, True, True, False]
    assert t.val_accuracy.iloc[3] == lab.final("val", "accuracy")
    assert t.depth_ratio.iloc[3] == pytest.approx(lab.depth_ratio())
    assert calls[-1][:2] == (4, 4) and all(b == 4 for _, b, _ in calls)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)   # progress never goes back
    assert first.config(t.key.iloc[0]) == spec.cells()[0]
    assert first.grid("val_accuracy").shape == (2, 2)

    again = run_sweep(spec, store=store)
    assert again.timing["cells_trained"] == 0 and again.table.from_store.all()
    cols = ["key", "val_accuracy", "train_loss", "depth_ratio", "flat_mean", "diverged"]
    assert again.table[cols].equals(t[cols])
    assert again.epochs.equals(first.epochs)

    # Opening a stacked cell in the Lab trains it in full; from then on the sweep shows that run.
    opened = get_run(spec.cells()[0], store=store)
    third = run_sweep(spec, store=store)
    assert third.timing["cells_trained"] == 0 and not third.table.batched.iloc[0]
    assert third.table.val_accuracy.iloc[0] == opened.final("val", "accuracy")


def test_sequential_mode_trains_full_lab_runs(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite3")
    spec = SweepSpec(TINY.replace(epochs=1), x="seed", x_values=(0, 1), y="depth",
                     y_values=(2,))
    result = run_sweep(spec, store=store, batched=False)
    assert not result.table.batched.any() and result.timing["groups"] == []
    for cfg in spec.cells():
        assert cfg.key() in store   # a full RunResult, which the Lab opens without training


def test_summary_round_trips_through_its_dict():
    cell = train_batched([TINY.replace(epochs=1), TINY.replace(epochs=1, seed=1)])[0]
    back = CellSummary.from_dict(json.loads(json.dumps(cell.to_dict())))
    assert back.config == cell.config and back.out_grad_norms == cell.out_grad_norms
    assert back.epochs.equals(cell.epochs)


# --- the command line --------------------------------------------------------------------------
def test_cli_sweep_prints_grids_and_writes_json(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    code = main(["sweep", "--x", "depth=2,3", "--y", "activation=relu,tanh", "--width", "16",
                 "--epochs", "1", "--max-train", "100", "--no-store", "--quiet",
                 "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    for words in ("validation accuracy", "log10 depth ratio", "inactive", "← depth",
                  "4 cells: 4 trained (4 stacked in 2 group(s) [2, 2]"):
        assert words in text
    assert len([line for line in text.splitlines() if line.startswith("tanh")]) == 3
    data = json.loads(out.read_text())
    assert len(data["cells"]) == 4 and data["spec"]["xv"] == "2,3"
    assert {c["y"] for c in data["cells"]} == {"relu", "tanh"}


@pytest.mark.parametrize("args,words", [
    (["--x", "depth=2,400", "--y", "activation=relu"], ["depth", "1 to 100"]),
    (["--x", "depth", "--y", "activation=relu"], ["SETTING=V1,V2"]),
    (["--x", "lr=0.1", "--y", "lr=1"], ["different"]),
    (["--x", "depth=2", "--y", "activation=relu", "--width", "0"], ["width"]),
    (["--x", "colour=red", "--y", "activation=relu"], ["colour", "unknown"]),
])
def test_cli_sweep_bad_input_is_one_line_and_status_2(args, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for word in words:
        assert word in err


def test_cli_sweep_bad_input_from_a_shell():
    proc = subprocess.run([sys.executable, "-m", "core", "sweep", "--x", "depth=2,400", "--y",
                           "activation=relu"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ})
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("python -m core: error: depth: 400 is out of range: must be "
                                   "an integer from 1 to 100")


def test_an_axis_a_link_cannot_sweep_gets_one_short_message():
    """The message lists every axis one can sweep; quoting 40 characters of what the link asked
    made it 402 characters with the longest axis in use (the fuzz test's limit is 400)."""
    from core.lab.sweep import AXES, axis_problems
    longest = max(AXES, key=len)
    problems = axis_problems({"x": "9" * 60, "y": "depth"}, {"x": longest, "y": "depth"})
    assert len(problems) == 1 and len(problems[0]) < 400, problems
    assert problems[0].startswith("`x=" + "9" * 20 + "…`") and ", ".join(AXES) in problems[0]
