"""The histogram charts (core.lab.histogram_charts), checked through their specs and the data
they carry, on the small real runs of tests/lab/conftest.py."""

import itertools

import pytest

from core import chart_parts
from tests.helpers import rows_with, scrubbed_from, texts


def test_histograms_follow_the_epoch_and_the_network_order(runs, spec):
    r = runs["plain"]
    s = spec("plain", "histograms", "activation", 0)
    scrubbed_from(s, 0, 3)
    bins = rows_with(s, "lo", "hi", "count")
    assert {x["epoch"] for x in bins} == {0, 1, 2, 3}
    h = r.histograms
    assert len(bins) == len(h[h.kind == "activation"])
    first = [x for x in bins if x["epoch"] == 0]
    last = [x for x in bins if x["epoch"] == 3]
    assert {x["kind"] for x in first} == {"activation"}
    assert [x["count"] for x in first] != [x["count"] for x in last]
    facet = spec("plain", "histograms", "activation", 0)["facet"]
    assert facet["sort"] == r.layer_names
    # Only the scrubbed epoch's bars are drawn, over an invisible rule per layer from its
    # smallest to its largest bin edge of any epoch: each panel's value axis spans them all.
    bars, extent = s["spec"]["layer"]
    assert {"filter": f"datum.epoch == {chart_parts.EPOCH}"} in bars["transform"]
    assert extent["transform"] == [{"aggregate": [
        {"op": "min", "field": "lo", "as": "lo"}, {"op": "max", "field": "hi", "as": "hi"}],
        "groupby": ["layer"]}]
    assert extent["mark"]["opacity"] == 0
    assert (extent["encoding"]["x"]["field"], extent["encoding"]["x2"]["field"]) == ("lo", "hi")


def test_a_gradient_histograms_axis_fits_the_epoch_shown(runs, spec):
    """Weight gradients shrink as a run trains: on an axis held for every epoch, a late epoch's
    histogram was a needle. Their panels draw the scrubbed epoch's bars alone, and say so."""
    s = spec("plain", "histograms", "weight_grad", 3)
    scrubbed_from(s, 3, 3)
    (bars,) = s["spec"]["layer"]
    assert {"filter": f"datum.epoch == {chart_parts.EPOCH}"} in bars["transform"]
    assert "the axis fits the epoch shown" in s["title"]["subtitle"]
    assert "axis" not in spec("plain", "histograms", "weight", 3)["title"]["subtitle"]


def test_histogram_over_time_has_every_epoch_of_one_layer(runs, spec):
    s = spec("plain", "histogram_over_time", "pre_activation", "hidden2")
    bins = rows_with(s, "lo", "hi", "count")
    assert {x["layer"] for x in bins} == {"hidden2"}
    assert {x["epoch"] for x in bins} == {0, 1, 2, 3}
    assert all(x["count"] > 0 for x in bins)  # empty bins left blank on the log colour scale


def test_batch_norm_shift(runs, spec):
    assert "Batch norm is off" in texts(spec("plain", "batch_norm_shift", 0))
    s = spec("bn", "batch_norm_shift", 0)
    scrubbed_from(s, 0, 2)
    bins = rows_with(s, "stage", "density")
    assert {x["stage"] for x in bins} == {"before batch norm", "after batch norm"}
    assert {x["layer"] for x in bins} == {"hidden1", "hidden2", "hidden3"}
    assert {x["epoch"] for x in bins} == {0, 1, 2}
    for layer, stage, epoch in itertools.product(
            ("hidden1", "hidden3"), ("before batch norm", "after batch norm"), (0, 2)):
        area = sum(x["density"] * (x["hi"] - x["lo"]) for x in bins
                   if x["layer"] == layer and x["stage"] == stage and x["epoch"] == epoch)
        assert area == pytest.approx(1.0)
