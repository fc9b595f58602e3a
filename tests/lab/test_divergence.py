"""Divergence (issue 7): lr = 10 on a 50-layer linear net with a huge init ends "diverged" at its
first non-finite step, and every chart still draws, with gaps.

    SATLAB_OFFLINE=1 python -m pytest tests/test_divergence.py
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from core.lab.config import RunConfig
from core.lab.sweep import SweepSpec, run_sweep


# --- divergence --------------------------------------------------------------------------------
# The runs: learning rate 10 on a 50-layer linear net. With huge weights it overflows in
# its very first forward pass; with orthogonal weights the forward pass is tame and it is the
# first updates that blow up.
DIVERGING = {
    "normal_large": RunConfig(depth=50, activation="linear", init="normal_large",
                              optimizer="sgd", lr=10.0, epochs=3, max_train=256),
    "sigma_w2=100": RunConfig(depth=50, activation="linear", init="mean_field", sigma_w2=100.0,
                              optimizer="sgd", lr=10.0, epochs=3, max_train=256),
    "orthogonal": RunConfig(depth=50, activation="linear", init="orthogonal", optimizer="sgd",
                            lr=10.0, epochs=3, max_train=256),
}


@pytest.fixture(scope="module")
def diverged():
    """name -> the trained run (trained on first use, once per module)."""
    from core.lab.trainer import train

    runs: dict = {}

    def get(name: str):
        if name not in runs:
            runs[name] = train(DIVERGING[name])
        return runs[name]
    return get


def first_bad_step(cfg: RunConfig, max_steps: int = 50) -> tuple[int, str | None]:
    """Train `cfg` with plain torch, step by step, on the trainer's batches; return the first
    step where a recorded value is NaN/inf, and the first layer whose output is (None if the
    outputs were finite). Recorded values: each layer's output (as its float32 sum, the check
    the recorder makes: values whose sum passes 3.4e38 count as overflowed), the loss, and
    each layer's weight-gradient norm."""
    import torch
    import torch.nn.functional as F

    from core.data.datasets import load_splits
    from core.lab.models import build_model

    splits = load_splits(cfg.dataset, seed=cfg.seed, max_train=cfg.max_train)
    model = build_model(cfg, splits.info.input_shape, splits.info.n_classes)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    x_all = torch.as_tensor(splits.x_train)
    y_all = torch.as_tensor(splits.y_train)
    mean, std = torch.as_tensor(splits.mean).float(), torch.as_tensor(splits.std).float()
    gen = torch.Generator().manual_seed(cfg.seed)
    step = 0
    while step < max_steps:
        order = torch.randperm(len(y_all), generator=gen)
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            h = (x_all[idx].float() - mean) / std
            for name, layer in model.layers.items():
                h = layer(h)
                if not torch.isfinite(h.sum()):
                    return step, name
            loss = F.cross_entropy(h, y_all[idx])
            opt.zero_grad()
            loss.backward()
            norms = [torch.linalg.vector_norm(layer.linear.weight.grad)
                     for layer in model.layers.values()]
            if not torch.isfinite(loss) or not all(torch.isfinite(n) for n in norms):
                return step, None
            opt.step()
            step += 1
    raise AssertionError(f"{cfg} stayed finite for {max_steps} steps")


@pytest.mark.parametrize("name", list(DIVERGING))
def test_divergence_is_reported_at_its_first_non_finite_step(diverged, name):
    result = diverged(name)
    assert result.status == "diverged" and result.diverged
    div = result.divergence
    step, layer = first_bad_step(DIVERGING[name])
    assert div["step"] == step
    if layer is not None:
        assert div["layer"] == layer and div["where"] == "output"
    assert f"step {step}" in div["message"]
    # Nothing was recorded after it, and the run stopped in the epoch it happened in.
    assert result.steps["step"].max() == step
    assert result.epochs["epoch"].max() == div["epoch"] < DIVERGING[name].epochs
    # Huge weights overflow in the first forward pass; orthogonal ones only after updates.
    assert (step == 0) == (name != "orthogonal")


def to_spec(chart) -> dict:
    """What a page draws (core.chart_parts.vega_spec where there is one)."""
    from core import chart_parts
    vega_spec = getattr(chart_parts, "vega_spec", None)
    return vega_spec(chart) if vega_spec else chart.to_dict(validate=False)


def spec_rows(spec: dict) -> list[dict]:
    """Every data row in a spec (top-level datasets and inline values)."""
    out = [row for values in spec.get("datasets", {}).values() for row in values]

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("data"), dict):
                out.extend(node["data"].get("values", []))
            for key, child in node.items():
                if key != "datasets":
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)
    walk(spec)
    return out


def lab_charts(result) -> dict:
    """Every chart of the Training Lab's tabs (core.lab.tabs), at the first and the last epoch, for
    the first and the last hidden layer."""
    from core.lab.tabs import TABS
    last = int(result.epochs["epoch"].max())
    out = {}
    for chart in (c for tab in TABS.values() for c in tab):
        for e in sorted({0, last}):
            for layer in (result.layer_names[0], result.layer_names[-2]):
                name = f"{chart.build.__name__}{chart.args(e, layer)}"
                if name not in out:
                    out[name] = chart.build(result, *chart.args(e, layer))
    return out


@pytest.mark.parametrize("name", list(DIVERGING))
def test_every_lab_chart_of_a_diverged_run_draws_with_gaps(diverged, name):
    result = diverged(name)
    for chart_name, chart in lab_charts(result).items():
        spec = to_spec(chart)
        json.dumps(spec, allow_nan=False)   # strict JSON: no NaN or inf reaches the browser
        for row in spec_rows(spec):
            for key, value in row.items():
                assert value is not None, (chart_name, key, row)
                if isinstance(value, float):
                    assert math.isfinite(value), (chart_name, key, row)


def test_diverged_lines_keep_every_finite_value_and_drop_the_rest(diverged):
    # Gaps, not blanks: the orthogonal run has finite steps before it blew up, and each of
    # them is drawn; a layer's non-finite or zero values (a log axis) are what is left out.
    from core.lab import charts
    result = diverged("orthogonal")
    rows = result.layers[result.layers["metric"] == "weight_grad_norm"]
    finite = rows[np.isfinite(rows["value"].astype(float)) & (rows["value"] > 0)]
    assert 0 < len(finite) < len(rows)
    drawn = [r for r in spec_rows(to_spec(charts.grad_norm_lines(result)))
             if "layer" in r and "value" in r]
    assert sorted((r["step"], r["layer"]) for r in drawn) == \
        sorted(zip(finite["step"], finite["layer"]))
    marks = [r for r in spec_rows(to_spec(charts.grad_norm_lines(result)))
             if "diverged" in str(r.get("label", ""))]
    assert {r["step"] for r in marks} == {result.divergence["step"]}


@pytest.mark.parametrize("name", ["orthogonal", "normal_large"])
def test_compare_charts_draw_a_diverged_run(diverged, name):
    from core.lab import compare_charts
    from core.lab.compare import outcomes
    from core.lab.trainer import train

    pair = {"A": diverged(name), "B": train(RunConfig(depth=2, width=16, epochs=1,
                                                      max_train=256))}
    table = outcomes(pair).set_index("run")
    assert table["diverged"].tolist() == [True, False]
    assert table.loc["A", "diverged_at_step"] == pair["A"].divergence["step"]
    built = [compare_charts.loss_accuracy(pair, 1), compare_charts.over_training(pair),
             compare_charts.total_grad_norm(pair), compare_charts.update_ratio_profile(pair, 1)]
    built += [compare_charts.layer_profile(pair, m, e) for m in
              ("weight_grad_norm", "out_grad_norm", "act_std", "grad_data_ratio", "drift")
              for e in (0, 1)]
    built += [compare_charts.layer_profile(pair, m, 0)
              for m in ("saturation", "dead")]
    for chart in built:
        spec = to_spec(chart)
        json.dumps(spec, allow_nan=False)
        assert all(v is not None and (not isinstance(v, float) or math.isfinite(v))
                   for row in spec_rows(spec) for v in row.values())


def test_sweep_heatmaps_draw_diverged_cells():
    from core.lab import sweep_charts
    # The stacked trainer (core/lab/stacked.py) on the runs: a big learning rate or huge
    # weights diverge; the heatmaps still draw.
    spec = SweepSpec(RunConfig(depth=50, activation="linear", optimizer="sgd", epochs=1,
                               max_train=256), x="lr", x_values=(0.001, 10.0),
                     y="init", y_values=("orthogonal", "normal_large"))
    sweep = run_sweep(spec, use_store=False)
    assert sweep.table.set_index(["x", "y"])["diverged"].to_dict() == {
        ("0.001", "orthogonal"): False, ("10.0", "orthogonal"): True,
        ("0.001", "normal_large"): True, ("10.0", "normal_large"): True}
    for metric in sweep_charts.HEATMAPS:
        chart = sweep_charts.heatmap(sweep.table, metric, x_title="lr", y_title="init")
        spec = to_spec(chart)
        json.dumps(spec, allow_nan=False)
        cells = [r for r in spec_rows(spec) if "key" in r and "label" in r]
        assert len(cells) == 4
        for r in cells:
            # A diverged cell reads NaN; its colour is its value where that is finite (the
            # gradient ratio at initialisation), grey where it is not.
            assert (r["label"] == "NaN") == r["diverged"]
            # A linear network has no flat region: its share is no number, and says so.
            no_share = metric == "flat_max" and r["flat_metric"] is None
            assert (r["value"] is None and (r["diverged"] or no_share)) or math.isfinite(
                r["value"])
            assert not no_share or r["label"] in ("–", "NaN")
