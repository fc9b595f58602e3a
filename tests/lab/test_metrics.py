"""The metric catalogue: what the recorder writes and what the charts, doctor and pages call it."""

import math

import pytest

from core.lab import charts

from core.activations import FLAT_FRACTION
from core.lab import compare_charts
from core.lab.config import RunConfig
from core.lab.metrics import (CATALOGUE, LAYER_METRICS, MOST_FLAT, STEP_METRICS, most_flat,
                              power, readable)
from core.lab.trainer import train
from tests.helpers import encodings, texts


@pytest.fixture(scope="module")
def run():
    return train(RunConfig(depth=2, width=8, epochs=1, batch_norm=True, clip_norm=1.0,
                           max_train=200, activation="tanh"))


@pytest.fixture(scope="module")
def relu_run():
    return train(RunConfig(depth=2, width=8, epochs=1, max_train=200))


def test_every_recorded_metric_has_an_entry_and_every_entry_is_recorded(run, relu_run):
    written = set()
    for r in (run, relu_run):
        written |= set(r.layers["metric"]) | (set(r.steps.columns) - {"step", "epoch"})
    assert written == set(CATALOGUE) == set(LAYER_METRICS) | set(STEP_METRICS)


def test_one_word_per_flat_region(run, relu_run):
    # Saturation is for saturating activations; ReLU's zero region is "inactive".
    assert run.flat_metric == "saturation" and relu_run.flat_metric == "inactive"
    assert "inactive" not in set(run.layers.metric)
    assert "saturation" not in set(relu_run.layers.metric)
    linear = train(RunConfig(depth=2, width=8, epochs=1, max_train=100, activation="linear"))
    assert linear.flat_metric is None and linear.end_flat() == []
    assert not {"saturation", "inactive", "dead"} & set(linear.layers.metric)


def test_entries_say_what_they_measure():
    for name, m in CATALOGUE.items():
        assert m.label and m.help.endswith("."), name
        assert format(0.5, m.fmt)  # a valid format spec
        assert not (m.log and m.share), name   # a share is drawn 0–100 %, never on a log axis
    upd = CATALOGUE["update_data_ratio"]
    assert upd.healthy[0] < upd.target < upd.healthy[1] and power(upd.target) == "1e-3"
    assert f"{FLAT_FRACTION:.0%}" in CATALOGUE["saturation"].title


@pytest.mark.parametrize("metric", ["weight_grad_norm", "out_grad_norm"])
def test_line_and_profile_axes_come_from_the_catalogue(run, metric):
    m = CATALOGUE[metric]
    lines = charts.grad_norm_lines(run, metric, 1).to_dict()
    assert m.axis in y_titles(lines) and m.title in texts(lines)
    profile = compare_charts.layer_profile({"A": run, "B": run}, metric, 1).to_dict()
    assert m.axis in y_titles(profile)


def y_titles(spec: dict) -> set[str]:
    return {e.get("title") for e in encodings(spec, "y")}


def test_panel_charts_use_the_catalogue_scale(run):
    panels = {charts.flat_dead: ("saturation", "dead"),
              charts.ratios: ("grad_data_ratio", "update_data_ratio")}
    for build, names in panels.items():
        assert {CATALOGUE[n].axis for n in names} <= y_titles(build(run, 1).to_dict())
    assert CATALOGUE["grad_norm"].axis in texts(charts.clipping(run).to_dict())
    # A share is drawn in percent: the profile's values are the recorded ones × 100.
    profile = compare_charts.layer_profile({"A": run}, "saturation", 1).to_dict()
    values = [v["value"] for d in profile["datasets"].values() for v in d if "value" in v
              and "run" in v]
    assert values and max(values) <= 100


@pytest.mark.parametrize("which", ["run", "relu_run"])
def test_the_headline_share_is_the_highest_hidden_layer_at_the_end(which, request):
    r = request.getfixturevalue(which)
    rows = r.layers[r.layers["metric"] == r.flat_metric]
    last = rows[rows["step"] == rows["step"].max()]
    assert most_flat(r.end_flat()) == pytest.approx(last["value"].max())
    assert math.isnan(most_flat([math.nan, math.nan]))
    assert MOST_FLAT[r.flat_metric].share and "hidden layer" in MOST_FLAT[r.flat_metric].help


def test_readable_numbers_are_decimals_where_a_decimal_reads():
    assert [readable(x) for x in (0.94, 0.85, 0.0012, 4911.7, 12.3)] == [
        "0.94", "0.85", "0.0012", "4,912", "12"]
    assert [readable(x) for x in (1.23e-7, 3.4e5, -2.5e-6)] == ["1.2e-7", "3.4e+5", "-2.5e-6"]
    assert readable(math.nan) == "–" and readable(0.0) == "0"
