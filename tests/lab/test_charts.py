"""Chart builders (core.lab.charts, and every builder's spec at once), checked through the
Vega-Lite spec they produce and the data it carries, on the small real runs of
tests/lab/conftest.py. The histograms and the network diagram have test modules of their own.
"""

import ast
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import chart_parts
from core.lab import charts, histogram_charts
from core.lab.metrics import CATALOGUE
from core.chart_parts import LEGEND_ROWS
from tests.helpers import assert_clean, encodings, rows_with, scrubbed_from, texts, walk

STEP_BUILDERS = ("grad_norm_heatmap", "grad_norm_lines", "flat_dead", "ratios", "clipping",
                 "loss_steps")


def all_specs(runs, spec, name):
    r = runs[name]
    last = int(r.epochs["epoch"].max())
    layer = r.layer_names[0]
    yield from (
        spec(name, "loss_accuracy", last), spec(name, "loss_accuracy"),
        spec(name, "grad_norm_heatmap"), spec(name, "grad_norm_lines"),
        spec(name, "grad_norm_heatmap", "out_grad_norm"),
        spec(name, "grad_norm_lines", "weight_grad_norm", 0),
        spec(name, "gradient_flow", 0), spec(name, "gradient_flow", last),
        spec(name, "histograms", "activation", 0),
        spec(name, "histograms", "weight_grad", last),
        spec(name, "histogram_over_time", "pre_activation", layer),
        spec(name, "flat_dead", 1), spec(name, "ratios", 1),
        spec(name, "clipping"), spec(name, "batch_norm_shift", 0),
        spec(name, "decision_boundary", last), spec(name, "layer_norms"),
        spec(name, "live_training"))


# --- every builder, every run -----------------------------------------------------------------
@pytest.mark.parametrize("name", ["bn", "plain", "diverged", "moons", "sigmoid", "initial",
                                  "stored"])
def test_every_builder_gives_a_clean_spec(runs, spec, name):
    for s in all_specs(runs, spec, name):
        assert s.get("$schema", "").startswith("https://vega.github.io/schema/vega-lite/")
        assert_clean(s)


def test_numbers_read_as_numbers(runs, spec):
    """Every quantitative tooltip field has a format, steps and epochs in whole numbers, and a
    value such as 0.94 as a decimal (d3's "~g"), not 9.4e-01."""
    for s in all_specs(runs, spec, "bn"):
        for tips in encodings(s, "tooltip"):
            for tip in tips if isinstance(tips, list) else [tips]:
                if tip.get("type") == "quantitative":
                    assert "format" in tip, tip
                    if tip["field"] in ("step", "epoch"):
                        assert tip["format"] == ",d"
                    assert "e" not in tip["format"], tip
        step_axes = [x["axis"] for x in encodings(s, "x") if x.get("field") == "step"
                     and x.get("type") == "quantitative" and "axis" in x]
        assert all(a["format"] == "d" and a["tickMinStep"] == 1 for a in step_axes), step_axes


def test_empty_tables_say_no_data(runs, spec):
    # The first snapshot of a live run has no steps yet: charts say so instead of raising.
    for builder in ("grad_norm_heatmap", "clipping", "gradient_flow", "histograms"):
        args = {"gradient_flow": (0,), "histograms": ("activation", 5)}.get(builder, ())
        assert "no data" in texts(spec("initial", builder, *args))


@pytest.mark.parametrize("module", [charts, histogram_charts, chart_parts])
def test_charts_do_not_import_streamlit(module):
    tree = ast.parse(Path(module.__file__).read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert names and not [n for n in names if n and n.split(".")[0] == "streamlit"]


# --- gradients --------------------------------------------------------------------------------
def test_heatmap_has_one_finite_positive_row_per_layer_and_step(runs, spec):
    r = runs["bn"]
    s = spec("bn", "grad_norm_heatmap")
    cells = rows_with(s, "layer", "step", "value", "step_end")
    table = r.layers[r.layers.metric == "weight_grad_norm"]
    table = table[np.isfinite(table.value) & (table.value > 0)]
    assert len(cells) == len(table) == len({(c["layer"], c["step"]) for c in cells})
    assert all(c["value"] > 0 and c["step_end"] > c["step"] for c in cells)
    y = [e for e in encodings(s, "y") if e.get("field") == "layer"]
    assert y and y[0]["sort"] == r.layer_names  # input layer at the top
    assert [e for e in encodings(s, "color") if e.get("field") == "value"][0]["scale"]["type"] \
        == "log"


def test_lines_colour_layers_in_network_order_and_toggle_from_the_legend(runs, spec):
    r = runs["plain"]
    s = spec("plain", "grad_norm_lines")
    color = [e for e in encodings(s, "color") if e.get("field") == "layer"][0]
    assert color["sort"] == color["scale"]["domain"] == r.layer_names
    assert color["scale"]["scheme"]["name"] == "viridis"
    params = [p for n in walk(s) if isinstance(n, dict) for p in n.get("params", [])]
    assert any(p.get("bind") == "legend" and p["select"]["fields"] == ["layer"] for p in params)
    assert {e["scale"].get("type") for e in encodings(s, "y") if e.get("field") == "value"} \
        == {"log"}


def test_epoch_rule_sits_at_the_first_step_after_that_epoch(runs, spec):
    r = runs["plain"]
    s = spec("plain", "grad_norm_lines", "weight_grad_norm", 0)
    scrubbed_from(s, 0, 3)
    rules = rows_with(s, "step", "label")
    for epoch in (0, 1):
        first = int(r.steps.step[r.steps.epoch == epoch + 1].min())
        assert [x["step"] for x in rules if x["label"] == f"after epoch {epoch}"] == [first]


def test_the_epoch_rules_label_is_one_mark_whose_side_each_row_says(runs, spec):
    """One label mark, aligned by its row's `right`: a mark a side left one with no row at
    every epoch, and Vega warned of an infinite extent (seen in Chromium's console)."""
    r = runs["plain"]
    s = spec("plain", "grad_norm_lines", "weight_grad_norm", 0)
    labels = [n for n in walk(s) if isinstance(n, dict) and isinstance(n.get("mark"), dict)
              and n["mark"]["type"] == "text" and "label" in json.dumps(n.get("encoding"))
              and n["mark"].get("baseline") == "top"]
    assert len(labels) == 1
    assert labels[0]["mark"]["align"] == {"expr": "datum.right ? 'right' : 'left'"}
    rows = rows_with(s, "step", "label", "right")
    half = r.steps["step"].max() / 2
    assert rows and all(x["right"] == (x["step"] > half) for x in rows)
    assert {x["right"] for x in rows} == {False, True}   # this run has labels on both sides


def test_gradient_flow_carries_the_state_after_every_epoch(runs, spec):
    r = runs["bn"]
    recorded = r.layers.drop_duplicates("step")
    expected = {0: 0, 1: int(recorded.step[recorded.epoch == 2].min()),
                2: int(recorded.step.max())}  # epoch 2 is the last: its final recorded step
    s = spec("bn", "gradient_flow", 1)
    scrubbed_from(s, 1, 2)
    bars = rows_with(s, "statistic", "value")
    assert {b["epoch"]: b["step"] for b in bars} == expected
    seen = []
    for epoch, step in expected.items():
        for metric in ("weight_grad_mean_abs", "weight_grad_max_abs"):
            want = r.layers[(r.layers.step == step) & (r.layers.metric == metric)]
            got = {b["layer"]: b["value"] for b in bars
                   if b["metric"] == metric and b["epoch"] == epoch}
            assert list(got) == r.layer_names
            assert np.allclose([got[n] for n in want.layer], want.value, rtol=1e-6)
        seen.append(sorted(b["value"] for b in bars if b["epoch"] == epoch))
    assert seen[0] != seen[1] != seen[2]
    # The log axis spans every epoch's bars: scrubbing moves the bars, not the axis. It starts
    # at the power of ten below the smallest, so that bar has a height (it had none).
    y = [e for e in encodings(s, "y") if e.get("field") == "value"][0]
    values = [b["value"] for b in bars]
    bottom, top = y["scale"]["domain"]
    assert top == max(values) and bottom < min(values) <= 10 * bottom
    assert math.log10(bottom) == round(math.log10(bottom))
    # One legend says which bar is which: colour and opacity of one field, neither hidden.
    legend = {k: e for k, e in s["encoding"].items()
              if isinstance(e, dict) and e.get("field") == "statistic"}
    assert set(legend) == {"color", "opacity"}
    assert all(e.get("legend", {}) is not None for e in legend.values())
    assert legend["opacity"]["sort"] == legend["color"]["scale"]["domain"]   # else Vega-Lite warns


def test_gradient_flow_of_a_diverged_run_shows_its_last_finite_step(runs, spec):
    """The state after the last epoch of a diverged run has only NaN gradients: its bars are
    those of the last step with finite ones (their step says so)."""
    r = runs["diverged"]
    last = int(r.epochs["epoch"].max())
    s = spec("diverged", "gradient_flow", last)
    bars = [b for b in rows_with(s, "statistic", "value") if b["epoch"] == last]
    finite_steps = r.layers[(r.layers.metric == "weight_grad_mean_abs")
                            & np.isfinite(r.layers.value)].step
    assert {b["step"] for b in bars} == {int(finite_steps.max())}
    assert int(finite_steps.max()) < r.divergence["step"]


def test_layer_norms_are_every_layers_forward_and_backward_size_at_step_0(runs, spec):
    r = runs["diverged"]
    bars = rows_with(spec("diverged", "layer_norms"), "statistic", "value")
    for metric in ("preact_std", "out_grad_norm", "weight_grad_norm"):
        got = {b["layer"]: b["value"] for b in bars if b["metric"] == metric}
        want = r.at_step(metric, 0)
        assert list(got) == list(want.index) == r.layer_names, metric
        assert np.allclose(list(got.values()), want.values, rtol=1e-6), metric
    # A linear net at σ_w² = 4: the forward signal grows layer by layer from input to output,
    # and the back-propagated gradient from output to input.
    forward = r.at_step("preact_std", 0).values
    backward = r.at_step("out_grad_norm", 0).values
    assert (np.diff(forward) > 0).all() and (np.diff(backward) < 0).all()


def test_step_axes_are_integer_and_layer_legends_list_every_layer(runs, spec):
    """A short run's step axis must not read 0.5; a deep net's legend used to stop at hidden9
    (Vega-Lite drops what does not fit beside the panel)."""
    r = runs["diverged"]
    for builder in STEP_BUILDERS:
        s = spec("diverged" if builder != "flat_dead" else "plain", builder)   # linear: no panel
        # The data layers' axes (a rule layered over them has none of its own).
        steps = [x for x in encodings(s, "x") if x.get("field") == "step" and "title" in x]
        assert steps and all(x["axis"]["format"] == "d" for x in steps), builder
    legends = [c["legend"] for c in encodings(spec("diverged", "grad_norm_lines"), "color")
               if c.get("field") == "layer"]
    assert legends
    for legend in legends:
        assert legend["symbolLimit"] == 0
        assert legend["columns"] * LEGEND_ROWS >= len(r.layer_names) > LEGEND_ROWS


# --- saturation, ratios, clipping -------------------------------------------------------------
def test_a_sigmoid_run_draws_each_layers_mean_activation(runs, spec):
    # Glorot & Bengio's asymptote: a layer's mean activation shows it before its units count as
    # saturated, so sigmoid runs get a third panel, with σ(0) = 0.5 marked.
    s = spec("sigmoid", "flat_dead", 1)
    assert CATALOGUE["act_mean"].axis in {e.get("title") for e in encodings(s, "y")}
    assert "0.5 = σ(0)" in {v["label"] for v in rows_with(s, "label")}
    r = runs["sigmoid"]
    means = r.layer_metric("act_mean")
    drawn = rows_with(s, "layer", "step", "value")
    for layer, value in means.iloc[-1].items():
        assert any(v["layer"] == layer and v["step"] == means.index[-1]
                   and v["value"] == pytest.approx(value) for v in drawn), layer
    plain = spec("plain", "flat_dead", 1)   # tanh: no such panel
    assert "0.5 = σ(0)" not in {v["label"] for v in rows_with(plain, "label")}


def test_a_layer_legend_names_only_the_layers_drawn(runs, spec):
    """Saturation and dead units have no output layer: the legend named "output" beside panels
    with no output line. The colours keep the whole network's domain, so a layer's colour is
    the same as in the charts that draw the output layer (the ratios do)."""
    r = runs["plain"]
    for builder in ("flat_dead", "ratios"):
        s = spec("plain", builder, 1)
        drawn = {v["layer"] for v in rows_with(s, "layer", "step", "value")}
        colors = [c for c in encodings(s, "color") if c.get("field") == "layer"]
        assert colors, builder
        for c in colors:
            assert c["scale"]["domain"] == r.layer_names
            assert c["legend"]["values"] == [n for n in r.layer_names if n in drawn], builder
        assert ("output" in drawn) == (builder == "ratios")


def test_saturation_and_dead_are_percentages(runs, spec):
    r = runs["plain"]
    s = spec("plain", "flat_dead", 1)
    got = sorted((v["layer"], v["step"], v["value"])
                 for v in rows_with(s, "layer", "step", "value"))
    table = r.layers[r.layers.metric.isin(["saturation", "dead"])]
    want = sorted(zip(table.layer, table.step, 100 * table.value.astype(float)))
    assert [g[:2] for g in got] == [w[:2] for w in want]
    assert np.allclose([g[2] for g in got], [w[2] for w in want])
    assert 0 <= min(g[2] for g in got) and max(g[2] for g in got) <= 100
    assert max(g[2] for g in got) > 1  # percent, not a fraction: this tanh net saturates a bit
    assert "output" not in {g[0] for g in got}  # the output layer has no activation
    # The probe set is the first 1,024 training examples, here all 400 (max_train).
    assert "Dead (flat for all 400 probe examples)" in {t.get("title") for t in walk(s)
                                                         if isinstance(t, dict)}
    assert all(e["scale"]["domain"] == [0, 100] for e in encodings(s, "y")
               if e.get("field") == "value")


def test_ratios_have_the_rule_of_thumb_and_the_healthy_band(runs, spec):
    s = spec("bn", "ratios")
    labelled = rows_with(s, "value", "label")
    assert any(x["value"] == 1e-3 and "rule of thumb" in x["label"] for x in labelled)
    assert any(x["value"] == 1e-4 and x.get("high") == 1e-2 and "healthy" in x["label"]
               for x in labelled)
    assert {e["scale"].get("type") for e in encodings(s, "y")
            if e.get("field") == "value" and "scale" in e} == {"log"}


def test_clipping_threshold_and_trigger_rate(runs, spec):
    r = runs["bn"]
    s = spec("bn", "clipping")
    assert [x["grad_norm"] for x in rows_with(s, "grad_norm", "label")] == [r.config.clip_norm]
    rate = {x["epoch"]: x["rate"] for x in rows_with(s, "epoch", "rate")}
    expected = r.steps.groupby("epoch").clipped.mean() * 100
    assert rate == pytest.approx(expected.to_dict())
    assert all(0 <= v <= 100 for v in rate.values())


def test_loss_steps_draws_every_finite_loss_and_gradient_norm_of_the_steps_table(runs, spec):
    for name in ("plain", "diverged"):
        steps = runs[name].steps
        s = spec(name, "loss_steps")
        loss = {x["step"]: x["loss"] for x in rows_with(s, "step", "loss")}
        norm = {x["step"]: x["grad_norm"] for x in rows_with(s, "step", "grad_norm")}
        finite = steps[np.isfinite(steps.loss.astype(float))]
        assert loss == pytest.approx(dict(zip(finite.step, finite.loss.astype(float)))), name
        positive = steps[np.isfinite(steps.grad_norm.astype(float)) & (steps.grad_norm > 0)]
        assert norm == pytest.approx(dict(zip(positive.step, positive.grad_norm.astype(float))))
    assert "no data" in texts(spec("initial", "loss_steps"))  # no step recorded yet


def test_clipping_off_or_by_value_says_so(runs, spec):
    s = spec("plain", "clipping")
    assert "clipping is off" in texts(s)
    assert rows_with(s, "step", "grad_norm") and not rows_with(s, "grad_norm", "label")
    r = runs["plain"]
    by_value = dataclasses.replace(r, config=r.config.replace(clip_value=0.5))
    assert "±0.5" in texts(charts.clipping(by_value).to_dict())


def test_diverged_run_marks_the_divergence_on_step_charts(runs, spec):
    step = runs["diverged"].divergence["step"]
    for builder in STEP_BUILDERS:
        s = spec("diverged", builder)
        assert_clean(s)
        if builder == "flat_dead":   # a linear network: no flat region, and the chart says so
            assert "a linear network has no flat region" in texts(s)
            continue
        marks = [x for x in rows_with(s, "step", "label") if "diverged" in x["label"]]
        assert marks and {x["step"] for x in marks} == {step}, builder
    assert charts.divergence_rule(runs["bn"]) is None
    assert "diverged" not in texts(spec("bn", "grad_norm_lines"))


def test_diverged_loss_drops_the_nan_epochs(runs, spec):
    s = spec("diverged", "loss_accuracy", 3)
    losses = [x for x in rows_with(s, "split", "value") if x["metric"] == "loss"]
    assert losses and all(math.isfinite(x["value"]) for x in losses)


# --- activations and the playground -----------------------------------------------------------
def _regions(s):
    return sorted({(x["z0"], x["z1"]) for x in rows_with(s, "z0", "z1")})  # text repeats one


def test_activation_curve_shades_the_saturated_regions():
    (left, right) = _regions(charts.activation_curve("tanh").to_dict())
    assert left[0] == -6 and -2.2 < left[1] < -2.05
    assert 2.05 < right[0] < 2.2 and right[1] == 6
    (relu,) = _regions(charts.activation_curve("relu").to_dict())
    assert relu[0] == -6 and -0.05 < relu[1] <= 0
    assert _regions(charts.activation_curve("linear").to_dict()) == []
    s = charts.activation_curve("sigmoid").to_dict()
    assert {x["series"] for x in rows_with(s, "z", "value")} == {"f(z)", "f′(z)"}
    assert "6% of max" in json.dumps(rows_with(s, "z0", "label"))
    # The flat region is named in the subtitle, not written into the plot over its axis.
    for name, word in (("sigmoid", "saturated"), ("relu", "inactive")):
        for small in (False, True):
            s = charts.activation_curve(name, small=small).to_dict()
            assert word in s["title"]["subtitle"]
            marks = [n["mark"] for n in walk(s) if isinstance(n, dict) and "mark" in n]
            assert "text" not in {m if isinstance(m, str) else m["type"] for m in marks}
    assert charts.activation_curve("tanh", small=True).to_dict()["title"]["text"] == "tanh"


def test_activation_curve_overlays_a_layer_and_widens_to_cover_it(runs):
    h = runs["plain"].histograms
    pre = h[(h.layer == "hidden1") & (h.kind == "pre_activation") & (h.epoch == 0)]
    s = charts.activation_curve("tanh", pre).to_dict()
    assert_clean(s)
    assert sum(x["share"] for x in rows_with(s, "lo", "share")) == pytest.approx(100)
    z = [x["z"] for x in rows_with(s, "z", "series")]
    assert min(z) <= min(-6, pre.lo.min()) + 1e-9 and max(z) >= max(6, pre.hi.max()) - 1e-9
    wide = pre.assign(lo=pre.lo * 10, hi=pre.hi * 10)
    z = [x["z"] for x in rows_with(charts.activation_curve("tanh", wide).to_dict(), "z", "series")]
    assert min(z) == pytest.approx(wide.lo.min()) and max(z) == pytest.approx(wide.hi.max())


def test_decision_boundary(runs, spec):
    r = runs["moons"]
    s0, s3 = spec("moons", "decision_boundary", 0), spec("moons", "decision_boundary", 3)
    grid0, grid3 = rows_with(s0, "x", "y", "p"), rows_with(s3, "x", "y", "p")
    assert len(grid0) == len(grid3) == 64 * 64
    assert all(0 <= x["p"] <= 1 for x in grid0 + grid3)
    assert [x["p"] for x in grid0] != [x["p"] for x in grid3]
    points = rows_with(s3, "x", "y", "label", "split")
    assert {x["split"] for x in points} == {"train", "test"}
    assert len(points) == (r.points.split != "val").sum()
    heat = [e for e in encodings(s3, "color") if e.get("field") == "p"][0]
    assert heat["scale"] == {"domain": [0, 0.5, 1], "range": charts.FIELD_COLOURS}
    assert "only 2-D" in texts(spec("bn", "decision_boundary", 1))
    # A square at equal x and y scales, drawn at its own size (not fitted into a strip).
    assert s3["width"] == s3["height"] and s3["autosize"] == {"type": "pad"}
    x_dom, y_dom = (next(e["scale"]["domain"] for e in encodings(s3, c) if "scale" in e)
                    for c in ("x", "y"))
    assert x_dom[1] - x_dom[0] == pytest.approx(y_dom[1] - y_dom[0])
    # Points outlined in white, so a red point reads on the red region.
    marks = [m for m in walk(s3) if isinstance(m, dict) and m.get("type") == "point"]
    assert marks and all(m["stroke"] == "white" and m["strokeWidth"] >= 1 for m in marks)


def test_loss_accuracy(runs, spec):
    r = runs["bn"]
    s = spec("bn", "loss_accuracy", 1)
    values = rows_with(s, "split", "metric", "value")
    acc = [x["value"] for x in values if x["metric"] == "accuracy"]
    assert acc and 1 < max(acc) <= 100  # percent
    test = [x for x in values if x["split"] == "test"]
    assert {x["epoch"] for x in test} == {r.config.epochs}
    assert {x["epoch"] for x in rows_with(s, "epoch", "label")} == {1}
    assert not rows_with(spec("bn", "loss_accuracy"), "epoch", "label")


def test_a_training_runs_loss_chart_has_no_empty_test_layer(runs):
    """While a run trains it has no test row yet (test: after the last epoch). A layer for it,
    empty, made Vega warn of an infinite extent in Chromium's console."""
    def test_layers(result) -> int:
        return sum(1 for n in walk(charts.loss_accuracy(result).to_dict()) if isinstance(n, dict)
                   and {"filter": "(datum.split === 'test')"} in n.get("transform", []))
    r = runs["bn"]
    training = dataclasses.replace(r, epochs=r.epochs[r.epochs.split != "test"])
    assert test_layers(r) == 2 and test_layers(training) == 0   # one a panel, or none


def test_long_deep_runs_are_thinned_and_still_serialise(runs):
    # 3,000 steps × 12 layers and 150 epochs of histograms: past Altair's 5,000-row limit for
    # frames (MaxRowsError) and past what a browser draws smoothly. Synthetic, so it is quick.
    names = [f"hidden{i}" for i in range(1, 12)] + ["output"]
    steps = np.arange(3000)
    n = len(steps) * len(names)
    layers = pd.DataFrame({"step": np.repeat(steps, len(names)),
                           "epoch": np.repeat(steps // 20 + 1, len(names)),
                           "layer": np.tile(names, len(steps)), "metric": "weight_grad_norm",
                           "value": np.linspace(1e-3, 1.0, n)})
    step_table = pd.DataFrame({"step": steps, "epoch": steps // 20 + 1, "loss": 1.0,
                               "grad_norm": 1.0 + steps, "clipped": 0.0, "lr": 0.1})
    hist = pd.DataFrame({"epoch": np.repeat(np.arange(150), 40), "layer": "hidden1",
                         "kind": "activation", "bin": np.tile(np.arange(40), 150),
                         "lo": np.tile(np.arange(40.0), 150),
                         "hi": np.tile(np.arange(1.0, 41), 150), "count": 1.0})
    long = dataclasses.replace(runs["plain"], layer_names=names, layers=layers, steps=step_table,
                               histograms=hist)
    cells = rows_with(charts.grad_norm_heatmap(long).to_dict(), "layer", "step", "value")
    drawn = sorted({c["step"] for c in cells})
    assert len(drawn) <= chart_parts.MAX_STEPS and (drawn[0], drawn[-1]) == (0, 2999)
    assert len(cells) == len(drawn) * len(names) > chart_parts.MAX_FRAME_ROWS
    lines = rows_with(charts.grad_norm_lines(long, epoch=3).to_dict(), "layer", "step", "value")
    assert len(lines) == len(cells)
    norm = rows_with(charts.clipping(long).to_dict(), "step", "grad_norm")
    assert len(norm) <= chart_parts.MAX_STEPS
    bins = rows_with(histogram_charts.histogram_over_time(long, "activation", "hidden1").to_dict(),
                     "lo")
    assert len(bins) == 150 * 40


def test_the_live_chart_grows_on_an_axis_of_the_whole_run(runs, spec):
    """While a run trains: the loss per epoch and every layer's ‖∂L/∂z‖ on one epoch axis that
    already spans all epochs, step s at s / (steps an epoch)."""
    run = runs["plain"]
    s = spec("plain", "live_training")
    assert all(e["scale"]["domain"] == [0, run.config.epochs] for e in encodings(s, "x"))
    per_epoch = math.ceil(run.dataset["n_train"] / run.config.batch_size)
    grads = rows_with(s, "layer", "at")
    wide = run.layer_metric("out_grad_norm")
    assert len(grads) == wide.size
    for row in grads:
        assert row["at"] == pytest.approx(row["step"] / per_epoch)
        assert row["value"] == pytest.approx(wide.loc[row["step"], row["layer"]])
    losses = rows_with(s, "split", "at")
    assert sorted({r["split"] for r in losses}) == ["train", "val"]
    assert len(losses) == 2 * run.config.epochs + 1    # val at init, then train and val
    assert "epoch 3 of 3" in texts(s)


def test_no_chart_asks_vega_lite_for_a_fit_it_cannot_do(runs):
    """Streamlit gives a stretched chart without `autosize` the type "fit", which Vega-Lite
    supports for single and layered views only: for a concatenated chart it warned in the
    browser's console (on most pages) and padded it. The page's spec (chart_parts.vega_spec)
    says "pad" itself, so what Streamlit sends is what Vega-Lite draws, and nothing warns."""
    from streamlit.elements.vega_charts import _prepare_vega_lite_spec

    from core.chart_parts import vega_spec
    from tests.lab.conftest import BUILDERS
    r = runs["bn"]
    last = int(r.epochs["epoch"].max())
    built = [("ratios", (1,)), ("flat_dead", (1,)), ("clipping", ()),
             ("histograms", ("weight", last)), ("loss_accuracy", (last,)),
             ("grad_norm_lines", ()), ("gradient_flow", (0,)), ("batch_norm_shift", (0,))]
    concatenated = 0
    for name, args in built:
        spec = vega_spec(BUILDERS[name](r, *args))
        sent = _prepare_vega_lite_spec(spec, use_container_width=True)
        fits = "mark" in sent or "layer" in sent
        assert fits or sent["autosize"]["type"] != "fit", (name, sent["autosize"])
        concatenated += "hconcat" in spec or "concat" in spec
    assert concatenated >= 2
