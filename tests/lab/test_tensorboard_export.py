"""A run exported as TensorBoard event files reads back, through TensorBoard's own reader, as the
run's tables: every scalar at its step, every histogram's bins and counts."""

import math

import numpy as np
import pytest
# In the test extra (pyproject.toml), so CI has it: a missing package fails, not skips.
from tensorboard.backend.event_processing import event_accumulator

from core.lab.config import RunConfig
from core.lab.runfile import read_run_file
from core.lab.tensorboard_export import export_tensorboard
from core.lab.trainer import train
from core.tools.cli import main


@pytest.fixture(scope="module")
def run():
    return train(RunConfig(depth=2, width=16, epochs=2, sharpness_every=10))


def _read(log_dir):
    acc = event_accumulator.EventAccumulator(
        str(log_dir), size_guidance={"scalars": 0, "histograms": 0})  # 0: keep every event
    return acc.Reload()


def _same(events, steps, values):
    """(step, value) pairs equal, as float32 (TensorBoard's scalar type)."""
    want = [(int(s), float(np.float32(v))) for s, v in zip(steps, values) if math.isfinite(v)]
    assert [(e.step, e.value) for e in events] == want


def test_scalars_and_histograms_read_back_as_the_runs_tables(run, tmp_path):
    acc = _read(export_tensorboard(run, tmp_path / "tb"))
    tags = acc.Tags()
    for (split, metric), rows in run.epochs.groupby(["split", "metric"]):
        _same(acc.Scalars(f"epoch/{split}/{metric}"), rows.epoch, rows.value)
    for column in ("loss", "grad_norm", "lr", "clipped"):
        _same(acc.Scalars(f"step/{column}"), run.steps.step, run.steps[column])
    assert len(run.sharpness) == 4
    _same(acc.Scalars("step/sharpness"), run.sharpness.step, run.sharpness.sharpness)
    pairs = run.layers.groupby(["metric", "layer"])
    assert len(pairs) > 20
    for (metric, layer), rows in pairs:
        _same(acc.Scalars(f"layers/{metric}/{layer}"), rows.step, rows.value)
    assert len(tags["scalars"]) == len(pairs) + 5 + run.epochs.groupby(["split", "metric"]).ngroups

    snapshots = run.histograms.groupby(["kind", "layer", "epoch"])
    assert len(tags["histograms"]) == run.histograms.groupby(["kind", "layer"]).ngroups
    for (kind, layer, epoch), bins in snapshots:
        bins = bins.sort_values("bin")
        (event,) = [e for e in acc.Histograms(f"histograms/{kind}/{layer}") if e.step == epoch]
        h = event.histogram_value
        assert h.bucket == bins["count"].tolist()
        assert h.bucket_limit == pytest.approx(bins["hi"].tolist(), rel=1e-6)
        assert (h.min, h.max) == pytest.approx((bins["lo"].iloc[0], bins["hi"].iloc[-1]))
        assert h.num == bins["count"].sum()


def test_the_cli_exports_a_run_file(run, tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text(run.to_json())
    assert main(["export-tensorboard", str(path), str(tmp_path / "out")]) == 0
    assert "tensorboard --logdir" in capsys.readouterr().out
    acc = _read(tmp_path / "out")
    # The file's round trip (JSON keeps 17 digits) changes no value TensorBoard holds.
    loaded = read_run_file(path)
    rows = loaded.layers[(loaded.layers.metric == "weight_grad_norm")
                         & (loaded.layers.layer == "hidden1")]
    _same(acc.Scalars("layers/weight_grad_norm/hidden1"), rows.step, rows.value)
    (tmp_path / "bad.json").write_text("{}")
    assert main(["export-tensorboard", str(tmp_path / "bad.json"), str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "x").exists()   # nothing written for a file that is not a run
