"""The metric catalogue: what the recorder writes and what the charts, doctor and pages call it."""

import math

import pytest

from core.lab import charts

from core.activations import SATURATION_FRACTION
from core.lab import compare_charts
from core.lab.config import RunConfig
from core.lab.metrics import CATALOGUE, LAYER_METRICS, MOST_SATURATED, STEP_METRICS, most_saturated, \
    power
from core.lab.trainer import train
from tests.helpers import encodings, texts


@pytest.fixture(scope="module")
def run():
    return train(RunConfig(depth=2, width=8, epochs=1, batch_norm=True, clip_norm=1.0,
                           max_train=200))


def test_every_recorded_metric_has_an_entry_and_every_entry_is_recorded(run):
    written = set(run.layers["metric"]) | (set(run.steps.columns) - {"step", "epoch"})
    assert written == set(CATALOGUE) == set(LAYER_METRICS) | set(STEP_METRICS)


def test_entries_say_what_they_measure():
    for name, m in CATALOGUE.items():
        assert m.label and m.help.endswith("."), name
        assert format(0.5, m.fmt)  # a valid format spec
        assert not (m.log and m.share), name   # a share is drawn 0–100 %, never on a log axis
    upd = CATALOGUE["update_data_ratio"]
    assert upd.healthy[0] < upd.target < upd.healthy[1] and power(upd.target) == "1e-3"
    assert f"{SATURATION_FRACTION:.0%}" in CATALOGUE["saturation"].title


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
    panels = {charts.saturation_dead: ("saturation", "dead"),
              charts.ratios: ("grad_data_ratio", "update_data_ratio")}
    for build, names in panels.items():
        assert {CATALOGUE[n].axis for n in names} <= y_titles(build(run, 1).to_dict())
    assert CATALOGUE["grad_norm"].axis in texts(charts.clipping(run).to_dict())
    # A share is drawn in percent: the profile's values are the recorded ones × 100.
    profile = compare_charts.layer_profile({"A": run}, "saturation", 1).to_dict()
    values = [v["value"] for d in profile["datasets"].values() for v in d if "value" in v
              and "run" in v]
    assert values and max(values) <= 100


def test_most_saturated_is_the_highest_hidden_layer_at_the_end(run):
    sat = run.layers[run.layers["metric"] == "saturation"]
    last = sat[sat["step"] == sat["step"].max()]
    assert most_saturated(run.end_saturation()) == pytest.approx(last["value"].max())
    assert math.isnan(most_saturated([math.nan, math.nan]))
    assert MOST_SATURATED.share and "hidden layer" in MOST_SATURATED.help
